"""The command line, run as a user runs it: a separate process, its exit code and what it prints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, settings, timeout=300):
    env = {**os.environ, "MODELFORGE_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "modelforge", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def good_data(tmp_path):
    rows = [{"input": f"word {i}", "output": f"mapped {i}"} for i in range(12)]
    return write(tmp_path / "good.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.parametrize(
    "config, data, expected",
    [
        ("task: poetry\ndataset: {data}", None, "task: must be one of text-generation, chat, summarization or extractive-qa"),
        ("dataset: {tmp}/missing.jsonl", None, "file not found"),
        ("dataset: {tmp}/bad.jsonl", '{{"input": "a", "output": "b"}}\n{{"input": "c", "output": \n', "line 2"),
        ("dataset: {tmp}/nofield.jsonl", '{{"input": "a"}}\n{{"input": "b"}}\n', "output"),
        ("dataset: {data}\ntraining: {{batch_size: 0}}", None, "training.batch_size"),
        ("dataset: {data}\nstrategy: dpo", None, "no column for chosen"),
    ],
)
def test_bad_configs_and_datasets_fail_with_one_clear_error(config, data, expected, tmp_path, good_data, settings):
    if data is not None:
        name = config.split("{tmp}/")[1].split()[0]
        write(tmp_path / name, data.format())
    config_file = write(tmp_path / "config.yaml", config.format(tmp=tmp_path, data=good_data))
    result = run_cli("train", str(config_file), settings=settings)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_config_file_and_unknown_job(tmp_path, settings):
    result = run_cli("train", str(tmp_path / "nope.yaml"), settings=settings)
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = run_cli("show", "42", settings=settings)
    assert result.returncode == 2 and "No job with id 42" in result.stderr
    result = run_cli("eval", "42", settings=settings)
    assert result.returncode == 2 and "No job with id 42" in result.stderr


def test_eval_of_a_config_scores_its_model_alone(tmp_path, settings):
    data = write(tmp_path / "rows.jsonl", '{"input": "red blue", "output": "red blue"}\n{"input": "cat", "output": "dog"}\n')
    config = write(tmp_path / "base.yaml", f"dataset: {data}\n")
    result = run_cli("eval", str(config), "--dataset", str(data), "--json", settings=settings)
    assert result.returncode == 0, result.stderr[-3000:]
    scored = json.loads(result.stdout)
    assert scored["rows"] == 2 and scored["metrics"]["exact_match"] == {"base": 50.0, "tuned": None}  # it repeats
    assert [example["tuned"] for example in scored["examples"]] == [None, None]


def test_jobs_lists_nothing_on_a_fresh_home(settings):
    result = run_cli("jobs", settings=settings)
    assert result.returncode == 0 and "no jobs yet" in result.stdout


def _split_mapping_rows(path: Path) -> tuple[list[dict], list[dict]]:
    """Hold out every fifth row whose words all appear in the rows kept for training."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train, held_out = [], []
    for index, row in enumerate(rows):
        (held_out if index % 5 == 4 else train).append(row)
    seen = {word for row in train for word in row["input"].split()}
    train += [row for row in held_out if not set(row["input"].split()) <= seen]
    held_out = [row for row in held_out if set(row["input"].split()) <= seen]
    return train, held_out


def _exact_match(model, tokenizer, rows) -> float:
    from modelforge.prediction import generate_reply

    hits = sum(generate_reply(model, tokenizer, row["input"]) == row["output"] for row in rows)
    return hits / len(rows)


def test_lora_sft_through_the_cli_learns_an_unseen_word_mapping(tmp_path, settings, demo_model_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge import store
    from modelforge.db import Job, init_database

    train, held_out = _split_mapping_rows(ROOT / "assets" / "samples" / "text-generation.jsonl")
    assert len(held_out) >= 10
    data = write(tmp_path / "train.jsonl", "".join(json.dumps(row) + "\n" for row in train))
    config = write(
        tmp_path / "mapping.yaml",
        f"name: mapping\ndataset: {data}\n"
        "training: {max_steps: 80, batch_size: 16, learning_rate: 3.0e-3, eval_split: 0.1, save_steps: 40, logging_steps: 5}\n",
    )
    result = run_cli("train", str(config), "--set", "training.seed=1", settings=settings)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job 1" in result.stdout and "completed" in result.stdout

    init_database(settings)
    job = Job.get_by_id(1)
    output_dir = Path(job.output_dir)
    assert str(output_dir) in result.stdout
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "modelforge.yaml", "metrics.json", "train.log"):
        assert (output_dir / name).exists(), name
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert job.final_metrics == metrics and metrics["steps"] == 80 and "eval_loss" in metrics
    # The same held-out rows, scored for the base model before training and the tuned model after it.
    table = metrics["evaluation"]["metrics"]
    assert metrics["evaluation"]["rows"] == metrics["evaluation"]["generated_rows"] >= 10
    assert table["exact_match"]["tuned"] >= 80 and table["exact_match"]["base"] <= 20
    assert table["rougeL"]["tuned"] > table["rougeL"]["base"] + 0.5
    assert table["perplexity"]["tuned"] < table["perplexity"]["base"] / 10
    example = metrics["evaluation"]["examples"][0]
    assert set(example) == {"input", "expected", "base", "tuned"}
    points = store.metric_points(job.id)
    losses = [p.loss for p in points if p.loss is not None]
    assert len(losses) >= 10 and losses[-1] < losses[0] / 4
    assert any(p.eval_loss is not None for p in points)

    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), output_dir).eval()
    assert _exact_match(model, tokenizer, train) >= 0.95
    assert _exact_match(model, tokenizer, held_out) >= 0.90

    # `eval` scores the saved adapter against its base on any dataset, here the rows never trained on.
    held_out_file = write(tmp_path / "held-out.jsonl", "".join(json.dumps(row) + "\n" for row in held_out))
    result = run_cli("eval", "1", "--dataset", str(held_out_file), "--json", settings=settings)
    assert result.returncode == 0, result.stderr[-3000:]
    scored = json.loads(result.stdout)
    assert scored["rows"] == len(held_out)
    assert scored["metrics"]["exact_match"]["tuned"] >= 90 and scored["metrics"]["exact_match"]["base"] <= 20
    assert json.loads((output_dir / "evaluation-held-out.json").read_text()) == scored


def test_demo_model_builds_each_kind_once_and_prints_its_folder(settings, demo_qa_path):
    result = run_cli("demo-model", "--kind", "qa", settings=settings)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == demo_qa_path.resolve()
    assert run_cli("demo-model", "--kind", "vision", settings=settings).returncode == 2
