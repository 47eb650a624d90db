"""Distributed throughput: the same job as 1 process and as N processes (DDP), the same global batch.

Each round runs both through the real job path (queued, supervised worker, torchrun for N ranks), alternating so that
machine noise hits both alike. Prints tokens/s (the trainer's, counted over all ranks), the job's wall time from start
to finish (process start-up, model loading and rank rendezvous included) and their ratios N / 1.

On a CPU-only machine the N processes share its cores (gloo): expect a ratio below 1; on N GPUs, near N.

    python bench/distributed.py [--processes 2] [--rounds 2] [--steps 40] [--global-batch 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "assets" / "samples" / "text-generation.jsonl"


def run_job(home: Path, processes: int, steps: int, global_batch: int) -> tuple[float, float]:
    """(tokens/s, wall seconds) of one job."""
    from modelforge.config import JobConfig
    from modelforge.engine import Engine
    from modelforge.settings import Settings

    engine = Engine.create(Settings(home=home))
    config = JobConfig(
        name=f"bench-{processes}",
        dataset=str(DATA),
        training={
            "max_steps": steps, "batch_size": global_batch // processes, "learning_rate": 3e-3, "eval_split": 0,
            "save_steps": steps * 10, "logging_steps": 5,
        },
        evaluation={"compare_base": False},
        distributed={"num_processes": processes},
    )
    job = engine.runner.wait(engine.submit(config).id)
    if job.status != "completed":
        raise SystemExit(f"job of {processes} process(es) failed: {job.error}")
    return job.final_metrics["tokens_per_second"], (job.finished_at - job.started_at).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--global-batch", type=int, default=16)
    args = parser.parse_args()
    if args.global_batch % args.processes:
        raise SystemExit("--global-batch must be a multiple of --processes")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from modelforge.demo_model import ensure_demo_model
    from modelforge.settings import Settings

    models = Settings.from_env().models_dir  # the demo model is built once and reused
    ensure_demo_model(models)
    results: dict[int, list[tuple[float, float]]] = {1: [], args.processes: []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_number in range(args.rounds):
            for processes in results:
                home = Path(scratch) / f"home-{round_number}-{processes}"
                home.mkdir()
                (home / "models").symlink_to(models, target_is_directory=True)
                results[processes].append(run_job(home, processes, args.steps, args.global_batch))
                rate, wall = results[processes][-1]
                print(f"round {round_number + 1}, {processes} process(es): {rate:.0f} tok/s, {wall:.1f} s", flush=True)
    (one_rate, one_wall), (many_rate, many_wall) = (
        (statistics.median(r for r, _ in runs), statistics.median(w for _, w in runs)) for runs in results.values()
    )
    print(f"1 process:    {one_rate:.0f} tok/s, {one_wall:.1f} s wall")
    print(f"{args.processes} processes:  {many_rate:.0f} tok/s, {many_wall:.1f} s wall "
          f"(global batch {args.global_batch}, {args.steps} steps, {os.cpu_count()} CPU cores)")
    print(f"ratio {args.processes}/1: tokens/s {many_rate / one_rate:.2f}x, wall time {many_wall / one_wall:.2f}x")


if __name__ == "__main__":
    main()
