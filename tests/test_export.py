"""Export: a LoRA job merged into its base is a plain transformers model that answers exactly as base + adapter."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelforge import export, store
from modelforge.db import Job

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "red blue green"  # the demo base repeats it; tuned_job's adapter answers something else


def greedy(model, tokenizer) -> str:
    from modelforge.prediction import generate_reply

    return generate_reply(model, tokenizer, PROMPT)


def test_merged_model_loads_with_plain_transformers_and_answers_like_base_plus_adapter(
    tuned_job, engine, demo_model_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stages = []
    # As the web app does it: `python -m modelforge export JOB --merged` in a child process, its stages relayed.
    folder = engine.export_merged(tuned_job.id, progress=lambda fraction, message: stages.append((fraction, message)))

    assert folder == Path(tuned_job.output_dir) / "merged"
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not (folder / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(demo_model_path).chat_template
    base_tokenizer = AutoTokenizer.from_pretrained(demo_model_path)
    base_answer = greedy(AutoModelForCausalLM.from_pretrained(demo_model_path), base_tokenizer)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), tuned_job.output_dir)
    adapter_answer = greedy(adapted, base_tokenizer)
    assert adapter_answer != base_answer  # the adapter matters, so equal answers below prove the merge
    assert greedy(merged, tokenizer) == adapter_answer

    fractions = [fraction for fraction, _ in stages]
    assert fractions == sorted(fractions) and stages[-1] == (1.0, f"merged model saved to {folder}")
    assert (0.6, "merging the adapter into the base weights") in stages

    stages.clear()  # a second export reuses the folder: a completed job's adapter never changes
    assert export.merge_job(tuned_job, engine.settings, progress=lambda *stage: stages.append(stage)) == folder
    assert stages == [(1.0, f"already merged: {folder}")]


def test_a_qlora_job_is_merged_into_the_unquantized_base(tuned_job, engine):
    from modelforge.config import JobConfig

    config = JobConfig.from_json(tuned_job.config).model_copy(update={"strategy": "qlora", "quantization": "4bit"})
    store.update(tuned_job.id, config=config.to_json())

    folder = export.merge_job(store.get_job(tuned_job.id), engine.settings)

    saved = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in saved and saved["dtype"] == "float32"


def test_too_little_free_disk_space_is_a_clear_error_before_anything_is_written(tuned_job, engine, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**6, 10**6))
    with pytest.raises(export.ExportError, match=r"Not enough free disk space to merge job #\d+: the merged model "
                       r"needs about [\d.]+ MB .* only 1.0 MB is free\. Free some space"):
        export.merge_job(tuned_job, engine.settings)
    assert [p.name for p in Path(tuned_job.output_dir).iterdir() if "merged" in p.name] == []


def test_a_merge_finished_meanwhile_by_another_export_is_kept(tuned_job, engine, monkeypatch):
    rename = os.rename

    def another_export_finishes_first(source, target):
        shutil.copytree(source, target)
        rename(source, target)

    monkeypatch.setattr(os, "rename", another_export_finishes_first)
    folder = export.merge_job(tuned_job, engine.settings)
    assert (folder / "model.safetensors").is_file()
    assert [p.name for p in Path(tuned_job.output_dir).iterdir() if "merged" in p.name] == ["merged"]


@pytest.fixture
def full_job(engine, demo_model_path):
    """A completed full fine-tune: its folder is a whole model (the demo model stands in for it)."""
    from modelforge.config import JobConfig

    output_dir = engine.settings.runs_dir / "full"
    shutil.copytree(demo_model_path, output_dir)
    config = JobConfig(name="full", dataset="assets/samples/animals.jsonl", lora=None, output_dir=str(output_dir))
    return Job.create(name="full", config=config.to_json(), status="completed", output_dir=str(output_dir))


def run_cli(*args, settings):
    env = {**os.environ, "MODELFORGE_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "modelforge", "export", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


def test_export_command_shows_the_adapter_and_refuses_what_cannot_be_merged(finished_job, full_job, settings):
    adapter = run_cli(str(finished_job.id), settings=settings)
    assert adapter.returncode == 0 and adapter.stdout.strip() == finished_job.output_dir
    assert "a LoRA adapter: add --merged" in adapter.stderr

    full = run_cli(str(full_job.id), "--merged", settings=settings)
    assert full.returncode == 2
    assert f"error: Job #{full_job.id} is a full fine-tune: there is no adapter to merge" in full.stderr
    assert full_job.output_dir in full.stderr

    store.update(finished_job.id, status="failed")
    for args, expected in (((str(finished_job.id), "--merged"), "is failed: only a completed job"),
                           (("999",), "No job with id 999")):
        result = run_cli(*args, settings=settings)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_progress_lines_printed_by_the_child_are_read_back():
    line = export.progress_line(0.4, "loading the base model")
    assert line == "[ 40%] loading the base model"
    assert export.parse_progress_line(line + "\n") == (0.4, "loading the base model")
    assert export.parse_progress_line("Loading weights: 100%|███| 38/38") is None


def test_the_child_process_error_reaches_the_web_app_as_its_message(full_job, engine):
    with pytest.raises(export.ExportError) as error:
        engine.export_merged(full_job.id)
    assert str(error.value) == (
        f"Job #{full_job.id} is a full fine-tune: there is no adapter to merge, its folder already holds the "
        f"complete model: {full_job.output_dir}"
    )
