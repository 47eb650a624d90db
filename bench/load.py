"""Many users at once: 20 gradio_client sessions browse, validate and submit against one app while a job trains.

Starts `python app.py` on a scratch home (loopback only) and a training job through the CLI; once it trains, every
session makes the same bounded round of calls (the History table, the saved datasets, the job status, a Validate of
the bundled sample and one Start training). Prints p50/p99 latency per endpoint and overall, and the errors (target:
0). The jobs the sessions queued are cancelled at the end.

    python bench/load.py [--sessions 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from app_responsiveness import ROOT, free_port, start_server, stop

SAMPLE = ROOT / "assets" / "samples" / "text-generation.jsonl"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def session(client, rounds: int, barrier: threading.Barrier, latencies: dict, errors: list, lock: threading.Lock):
    from gradio_client import handle_file

    calls = [
        ("/history", lambda: client.predict(api_name="/history")),
        ("/dataset_list", lambda: client.predict(api_name="/dataset_list")),
        ("/job_status", lambda: client.predict(api_name="/job_status")),
        ("/dataset_validate", lambda: client.predict(
            handle_file(str(SAMPLE)), "", "text-generation", None, "", 512, None, None, None,
            api_name="/dataset_validate",
        )),
    ]
    barrier.wait()
    for round_number in range(rounds):
        plan = calls + ([("/start_training", lambda: client.predict(dataset=str(SAMPLE), api_name="/start_training"))]
                        if round_number == 0 else [])
        for name, call in plan:
            started = time.perf_counter()
            try:
                result = call()
                failed = _refusal(name, result)
            except Exception as exc:  # what a user would see as an error toast
                failed = f"{type(exc).__name__}: {exc}"
            with lock:
                latencies[name].append((time.perf_counter() - started) * 1000)
                if failed:
                    errors.append(f"{name}: {failed}"[:300])


def _refusal(name: str, result) -> str | None:
    """The text of a result that a user would read as an error, else None."""
    first = result[0] if isinstance(result, (list, tuple)) else result
    text = first if isinstance(first, str) else ""
    if name == "/dataset_validate" and not text.startswith("### ✅ Valid"):
        return text
    if name == "/start_training" and not str(result).startswith("Queued job"):
        return str(result)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of browsing and validating per session")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="modelforge-load-"))
    env = {**os.environ, "MODELFORGE_HOME": str(scratch / "home"), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    config = scratch / "job.yaml"
    config.write_text(json.dumps({
        "name": "load-training", "dataset": str(SAMPLE),
        "training": {"max_steps": 2000, "batch_size": 16, "eval_split": 0, "save_steps": 5000},
    }))
    port = free_port()
    server, _ = start_server([sys.executable, "app.py", "--port", str(port)], port, env)
    trainer = subprocess.Popen([sys.executable, "-m", "modelforge", "train", str(config)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    sys.path.insert(0, str(ROOT))
    from gradio_client import Client, handle_file

    from modelforge import store
    from modelforge.db import Job, init_database
    from modelforge.settings import Settings

    init_database(Settings(home=scratch / "home"))
    try:
        # Untimed warm-up: the first Validate builds the demo model's tokenizer, the job loads and starts training.
        Client(url, verbose=False).predict(handle_file(str(SAMPLE)), "", "text-generation", None, "", 512, None, None,
                                           None, api_name="/dataset_validate")
        deadline = time.monotonic() + 600
        while not Job.select().where(Job.id == 1, Job.stage == "training", Job.step > 0).exists():
            if time.monotonic() > deadline or trainer.poll() is not None:
                raise SystemExit("the training job never started training")
            time.sleep(0.5)

        latencies, errors, lock = defaultdict(list), [], threading.Lock()
        barrier = threading.Barrier(args.sessions + 1)
        clients = [Client(url, verbose=False, httpx_kwargs={"timeout": 120}) for _ in range(args.sessions)]  # untimed
        threads = [threading.Thread(target=session, args=(client, args.rounds, barrier, latencies, errors, lock))
                   for client in clients]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        training = Job.get_by_id(1).stage == "training"
        queued = Job.select().where(Job.id != 1).count()
        output_dirs = {job.output_dir for job in Job.select()}
    finally:
        stop(server)  # its runner would start the queued jobs
        for job in Job.queued():
            store.finish(job.id, "cancelled", error="Cancelled by bench/load.py.")
        subprocess.run([sys.executable, "-m", "modelforge", "cancel", "1"], cwd=ROOT, env=env, capture_output=True)
        trainer.wait(timeout=300)

    everything = [value for values in latencies.values() for value in values]
    print(f"{args.sessions} sessions x {args.rounds} rounds in {wall:.1f} s, "
          f"{'the job still training' if training else 'the job ended during the calls'}; "
          f"{queued} jobs queued by the sessions, {len(output_dirs)} distinct output folders for {queued + 1} jobs")
    print(f"{'endpoint':<20} {'calls':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for name, values in sorted(latencies.items()):
        print(f"{name:<20} {len(values):>5} {statistics.median(values):>8.0f} {percentile(values, 0.99):>8.0f}")
    print(f"{'all':<20} {len(everything):>5} {statistics.median(everything):>8.0f} {percentile(everything, 0.99):>8.0f}")
    print(f"errors: {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")


if __name__ == "__main__":
    main()
