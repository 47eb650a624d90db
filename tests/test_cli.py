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
        ("dataset: {data}\nstrategy: dpo", None, "strategy: dpo is not available"),
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


def test_jobs_lists_nothing_on_a_fresh_home(settings):
    result = run_cli("jobs", settings=settings)
    assert result.returncode == 0 and "no jobs yet" in result.stdout
