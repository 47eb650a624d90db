"""Training throughput: ModelForge's SFT job vs a plain TRL SFTTrainer script on the same model and data.

Both train the built-in demo model with the same LoRA hyperparameters on the same rows, each in a fresh
process, alternating so that machine noise hits both alike. ModelForge's figure is its real job path
(queued, supervised worker, progress written to the database). Prints tokens/s of each and their ratio.

    python bench/train_throughput.py [--rounds 3] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "assets" / "samples" / "text-generation.jsonl"


def run_modelforge(home: Path, steps: int, batch_size: int, learning_rate: float) -> float:
    from modelforge.config import JobConfig
    from modelforge.engine import Engine
    from modelforge.settings import Settings

    engine = Engine.create(Settings(home=home))
    config = JobConfig(
        name="bench",
        dataset=str(DATA),
        training={
            "max_steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "eval_split": 0,
            "save_steps": steps * 10, "logging_steps": 5,
        },
    )
    job = engine.runner.wait(engine.submit(config).id)
    if job.status != "completed":
        raise SystemExit(f"ModelForge job failed: {job.error}")
    return job.final_metrics["tokens_per_second"]


def run_plain(model: Path, output: Path, steps: int, batch_size: int, learning_rate: float) -> float:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "plain_trl_sft.py"), "--model", str(model), "--data", str(DATA),
         "--output", str(output), "--steps", str(steps), "--batch-size", str(batch_size),
         "--learning-rate", str(learning_rate)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["tokens_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from modelforge.demo_model import ensure_demo_model
    from modelforge.settings import Settings

    models = Settings.from_env().models_dir  # the demo model is built once and reused
    model = ensure_demo_model(models)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        ours, plain = [], []
        for round_number in range(args.rounds):
            home = scratch / f"home-{round_number}"
            home.mkdir()
            (home / "models").symlink_to(models, target_is_directory=True)
            ours.append(run_modelforge(home, args.steps, args.batch_size, args.learning_rate))
            plain.append(run_plain(model, scratch / f"plain-{round_number}", args.steps, args.batch_size, args.learning_rate))
            print(f"round {round_number + 1}: modelforge {ours[-1]:.0f} tok/s, plain TRL {plain[-1]:.0f} tok/s", flush=True)
    ours_median, plain_median = statistics.median(ours), statistics.median(plain)
    print(f"median tokens/s: modelforge {ours_median:.0f}, plain TRL {plain_median:.0f}, "
          f"ratio {ours_median / plain_median:.2f}x")


if __name__ == "__main__":
    main()
