"""Web app start-up and responsiveness.

1. Time from process start to the page being served: `python app.py` vs a minimal Gradio Blocks app,
   alternating, each in a fresh process (target: ModelForge <= 1.3x the minimal app).
2. The UI's response time to an event while a job trains in a worker (target: median <= 300 ms).

    python bench/app_responsiveness.py [--rounds 3] [--calls 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINIMAL_APP = (
    "import gradio as gr, sys\n"
    "with gr.Blocks() as demo:\n"
    "    gr.Markdown('hello')\n"
    "demo.launch(server_name='127.0.0.1', server_port=int(sys.argv[1]))\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_served(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} was not served within {timeout} s")


def start_server(command: list[str], port: int, env: dict) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_served(f"http://127.0.0.1:{port}/", process)
    return process, time.perf_counter() - started


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="modelforge-bench-"))
    env = {**os.environ, "MODELFORGE_HOME": str(scratch / "home"), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    minimal = scratch / "minimal_app.py"
    minimal.write_text(MINIMAL_APP)

    ours, baseline = [], []
    for _ in range(args.rounds):
        port = free_port()
        process, seconds = start_server([sys.executable, "app.py", "--port", str(port)], port, env)
        stop(process)
        ours.append(seconds)
        port = free_port()
        process, seconds = start_server([sys.executable, str(minimal), str(port)], port, env)
        stop(process)
        baseline.append(seconds)
    ratio = statistics.median(ours) / statistics.median(baseline)
    print(f"start to page served: modelforge {statistics.median(ours):.2f} s, minimal Blocks "
          f"{statistics.median(baseline):.2f} s, ratio {ratio:.2f}x (target <= 1.3x)")

    # Responsiveness while a job trains: the CLI trains in its own worker; the app only reads the database.
    config = scratch / "job.yaml"
    config.write_text(json.dumps({
        "name": "bench-ui", "dataset": str(ROOT / "assets" / "samples" / "text-generation.jsonl"),
        "training": {"max_steps": 400, "batch_size": 16, "eval_split": 0, "save_steps": 1000},
    }))
    port = free_port()
    server, _ = start_server([sys.executable, "app.py", "--port", str(port)], port, env)
    trainer = subprocess.Popen([sys.executable, "-m", "modelforge", "train", str(config)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from gradio_client import Client

        sys.path.insert(0, str(ROOT))
        from modelforge.db import Job, init_database
        from modelforge.settings import Settings

        init_database(Settings(home=scratch / "home"))
        deadline = time.monotonic() + 300
        while not Job.select().where(Job.stage == "training", Job.step > 0).exists():
            if time.monotonic() > deadline or trainer.poll() is not None:
                raise SystemExit("the training job never started training")
            time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        latencies = []
        for _ in range(args.calls):
            started = time.perf_counter()
            client.predict(api_name="/history")
            latencies.append((time.perf_counter() - started) * 1000)
        training = Job.select().where(Job.stage == "training").exists()
    finally:
        trainer.terminate()
        trainer.wait(timeout=60)
        subprocess.run([sys.executable, "-m", "modelforge", "cancel", "1"], cwd=ROOT, env=env, capture_output=True)
        stop(server)
    print(f"event response while training ({'still training' if training else 'job ended during the calls'}): "
          f"median {statistics.median(latencies):.0f} ms, p90 {sorted(latencies)[int(0.9 * len(latencies)) - 1]:.0f} ms "
          f"over {len(latencies)} calls (target median <= 300 ms)")


if __name__ == "__main__":
    main()
