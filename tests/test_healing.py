"""Runs that heal: out of memory (a simulated memory limit inside the real training loop) retries with half the batch,
a loss that blows up (a learning rate far too high) stops with a checkpoint and a diagnosis. Real worker processes."""

import pytest
import yaml

from modelforge import run_folder, store
from modelforge.config import JobConfig
from modelforge.training.healing import FAULT_OOM_BATCH, FAULT_OOM_STEP
from modelforge.training.worker import OUT_OF_MEMORY_HINT


def _config(dataset, **training):
    settings = dict(max_steps=12, batch_size=8, learning_rate=3e-3, save_steps=5, logging_steps=1, eval_split=0)
    settings.update(training)
    return JobConfig(name="healing", dataset=str(dataset), training=settings, evaluation={"compare_base": False})


def test_out_of_memory_retries_from_the_checkpoint_with_half_the_batch(app_client, engine, mapping_dataset, monkeypatch):
    monkeypatch.setenv(FAULT_OOM_STEP, "7")  # from step 7 on, a batch of more than 4 rows does not fit
    monkeypatch.setenv(FAULT_OOM_BATCH, "4")
    job = engine.runner.wait(engine.submit(_config(mapping_dataset["train"])).id)

    assert job.status == "completed", job.error
    assert job.step == 12
    note = ("Out of memory at step 7: retried with batch_size 8 -> 4 and gradient_accumulation 1 -> 2 "
            "(effective batch 8), resumed from checkpoint-5.")
    assert job.final_metrics["healing"] == [note]
    stored = engine.job_config(job).training  # what History shows
    assert (stored.batch_size, stored.gradient_accumulation) == (4, 2)
    saved = yaml.safe_load((run_folder.log_path(job).parent / "modelforge.yaml").read_text())["training"]
    assert (saved["batch_size"], saved["gradient_accumulation"]) == (4, 2)
    log = run_folder.log_path(job).read_text()
    assert "simulated out of memory" in log and note in log and "resuming from" in log and "checkpoint-5" in log
    steps = [point.step for point in store.metric_points(job.id) if point.loss is not None]
    assert steps[-1] == 12 and 6 in steps  # the first try logged up to step 6, the retry from 6 on

    app_client.predict(api_name="/history")  # the page refreshes its list of jobs
    summary, config_shown, *_ = app_client.predict([f"#{job.id} healing"], api_name="/history_inspect")
    assert f"♻️ {note}" in summary.replace("\\", "")
    assert "batch_size: 4" in config_shown and "gradient_accumulation: 2" in config_shown


def test_out_of_memory_fails_with_the_hint_when_the_retry_is_off(engine, mapping_dataset, monkeypatch):
    monkeypatch.setenv(FAULT_OOM_STEP, "2")
    monkeypatch.setenv(FAULT_OOM_BATCH, "4")
    job = engine.runner.wait(engine.submit(_config(mapping_dataset["train"], retry_out_of_memory=False)).id)
    assert job.status == "failed" and job.error == OUT_OF_MEMORY_HINT
    assert engine.job_config(job).training.batch_size == 8


def test_an_exploding_loss_stops_with_a_checkpoint_and_a_diagnosis(engine, mapping_dataset):
    config = _config(mapping_dataset["train"], learning_rate=0.9, warmup_ratio=0, scheduler="constant", max_steps=40,
                     save_steps=1000)
    job = engine.runner.wait(engine.submit(config).id)

    assert job.status == "failed"
    assert job.error.startswith("Stopped at step ") and "the loss became NaN or infinite" in job.error
    assert "lower training.learning_rate (0.9 -> 0.09)" in job.error
    stopped_at = int(job.error.split()[3].rstrip(":"))
    assert stopped_at < 40
    checkpoint = run_folder.last_checkpoint(run_folder.log_path(job).parent)
    assert checkpoint is not None and checkpoint.name == f"checkpoint-{stopped_at}"
    assert f"Checkpoint: {checkpoint}." in job.error
    from safetensors.torch import load_file

    weights = load_file(checkpoint / "adapter_model.safetensors")
    assert all(bool(value.isfinite().all()) for value in weights.values())  # the last good weights, not NaN ones


def test_with_the_loss_guard_off_the_same_run_trains_to_the_end(engine, mapping_dataset):
    config = _config(mapping_dataset["train"], learning_rate=0.9, warmup_ratio=0, scheduler="constant", max_steps=20,
                     save_steps=1000, stop_on_bad_loss=False)
    job = engine.runner.wait(engine.submit(config).id)

    assert job.status == "completed", job.error
    assert job.step == 20
    assert "healing" not in job.final_metrics


@pytest.mark.parametrize("batch, accumulation, expected", [(8, 1, (4, 2)), (6, 3, (3, 6)), (5, 1, (2, 3)), (1, 4, None)])
def test_half_the_batch_keeps_the_effective_batch(batch, accumulation, expected):
    from modelforge.training.healing import halved_batch

    config = JobConfig(dataset="d.jsonl", training={"batch_size": batch, "gradient_accumulation": accumulation})
    retry = halved_batch(config)
    assert ((retry.training.batch_size, retry.training.gradient_accumulation) if retry else None) == expected
    assert halved_batch(config.model_copy(update={"training": config.training.model_copy(
        update={"retry_out_of_memory": False})})) is None
