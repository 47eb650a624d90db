"""Experiment trackers: a job opted in reports its training to each in its own folder (TensorBoard's event files,
MLflow's and trackio's local stores, W&B's offline run), read back here; a tracker that cannot run is refused before
the job starts, with what to do about it."""

import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pytest

from modelforge import store, trackers
from modelforge.training import pipeline
from modelforge.accounts import LOCAL
from modelforge.config import JobConfig
from modelforge.errors import ConfigError
from modelforge.settings import DISABLE_TENSORBOARD, Settings
from modelforge.trackers import TRACKERS
from modelforge.ui import finetune_tab, history_tab


@pytest.fixture
def restored_environment():
    """The worker points the trackers at the job's folder in its environment: here the worker is this process."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def missing_wandb(monkeypatch):
    """W&B as it is on a server without its package."""
    monkeypatch.setitem(TRACKERS, "wandb", replace(TRACKERS["wandb"], module="modelforge_test_no_such_module"))


def tracked_job(engine, dataset: Path, names: list[str]):
    config = JobConfig(
        name="tracked", dataset=str(dataset), trackers=names,
        training={"max_steps": 20, "batch_size": 8, "learning_rate": 3e-3, "eval_split": 0, "logging_steps": 2,
                  "save_steps": 100},
        evaluation={"compare_base": False},
    )
    engine.check(config)
    job = engine.runner.submit(config)
    # In its own worker process, as in the app: trackio reads TRACKIO_DIR once, when first imported, so a test
    # process that imported it earlier would log to another folder.
    return engine.runner.wait(job.id)


def test_a_job_reports_its_losses_to_every_tracker_in_its_folder(engine, mapping_dataset, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = tracked_job(engine, mapping_dataset["train"], list(TRACKERS))
    assert job.status == "completed", job.error
    stored = [(point.step, point.loss) for point in store.metric_points(job.id) if point.loss is not None]
    assert [step for step, _ in stored] == list(range(2, 21, 2))
    folder = Path(job.output_dir)

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    logged = [(event.step, event.value) for event in events.Scalars("train/loss")]
    assert [step for step, _ in logged] == [step for step, _ in stored]
    assert [value for _, value in logged] == pytest.approx([loss for _, loss in stored], rel=1e-6)  # float32 there

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the History tab's command to open it says
    client = MlflowClient(TRACKERS["mlflow"].store(folder).resolve().as_uri())
    experiment = client.get_experiment_by_name(trackers.PROJECT)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tracked"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(metric.step, metric.value) for metric in history] == stored

    with sqlite3.connect(folder / "trackio" / f"{trackers.PROJECT}.db") as database:
        rows = database.execute("SELECT metrics FROM metrics WHERE run_name = 'tracked' ORDER BY step").fetchall()
    logs = [json.loads(metrics) for (metrics,) in rows]  # trackio counts its own steps; the trainer's is logged
    assert [(log["train/global_step"], log["train/loss"]) for log in logs if "train/loss" in log] == stored

    (offline_run,) = (folder / "wandb" / "wandb").glob("offline-run-*")  # offline: no W&B key on this machine
    assert any(path.stat().st_size > 0 for path in offline_run.glob("run-*.wandb"))

    summary, *_ = history_tab.inspect_jobs(engine, LOCAL, [f"#{job.id} tracked"])
    assert f"`tensorboard --logdir {folder / 'tensorboard'}`" in summary
    assert f"`{folder / 'mlruns'}`" in summary and f"TRACKIO_DIR={folder / 'trackio'} trackio show" in summary


def test_a_tracker_that_is_not_installed_is_refused_at_submit_with_its_install_command(
    engine, mapping_dataset, missing_wandb
):
    config = JobConfig(dataset=str(mapping_dataset["train"]), trackers=["tensorboard", "wandb"])
    with pytest.raises(ConfigError) as refused:
        engine.submit(config)
    assert str(refused.value) == (
        "trackers: wandb is not installed (pip install wandb); install it or leave it out of the job's trackers."
    )
    assert engine.list_jobs() == []

    _, message = finetune_tab.start_training(
        engine, LOCAL, str(mapping_dataset["train"]), "text-generation", finetune_tab.DEMO_MODEL, "huggingface",
        "sft", trackers=["wandb"],
    )
    assert message.startswith("**Could not start:** trackers: wandb is not installed (pip install wandb)")


def test_the_finetune_tab_offers_the_registry_s_trackers_and_says_which_cannot_run(engine, missing_wandb):
    with gr.Blocks() as app:
        finetune_tab.build(engine)
    (box,) = [block for block in app.blocks.values() if isinstance(block, gr.CheckboxGroup)]
    assert box.label == "Experiment trackers" and box.value == []
    assert [name for _, name in box.choices] == list(TRACKERS)
    assert dict((name, label) for label, name in box.choices)["wandb"] == "wandb: not installed (pip install wandb)"
    assert dict((name, label) for label, name in box.choices)["tensorboard"] == "tensorboard"


def test_unknown_trackers_are_refused_with_the_registry_s_names():
    with pytest.raises(ConfigError, match=r"trackers: must be among tensorboard, trackio, wandb and mlflow \(got 'comet'\)"):
        JobConfig.parse({"dataset": "d.jsonl", "trackers": ["tensorboard", "comet"]})
    assert JobConfig.parse({"dataset": "d.jsonl"}).trackers == []


def test_a_server_with_tensorboard_disabled_refuses_it_in_the_tab_at_submit_and_in_the_worker(
    engine, mapping_dataset, monkeypatch
):
    config = JobConfig(name="off", dataset=str(mapping_dataset["train"]), trackers=["tensorboard"])
    queued = engine.runner.submit(config)  # queued before the server turned it off
    monkeypatch.setenv(DISABLE_TENSORBOARD, "0")
    assert Settings.from_env().disabled_trackers == frozenset()
    monkeypatch.setenv(DISABLE_TENSORBOARD, "1")
    monkeypatch.setattr(engine, "settings", Settings.from_env())
    refusal = (
        "trackers: tensorboard is turned off on this server (MODELFORGE_DISABLE_TENSORBOARD is set); leave it out of "
        "the job's trackers."
    )
    with pytest.raises(ConfigError) as refused:
        engine.submit(config)
    assert str(refused.value) == refusal
    labels = dict((name, label) for label, name in finetune_tab.tracker_choices(engine))
    assert labels["tensorboard"] == "tensorboard: turned off on this server (MODELFORGE_DISABLE_TENSORBOARD is set)"
    with pytest.raises(ConfigError) as refused:
        pipeline.run_job(queued, engine.settings)
    assert str(refused.value) == refusal
    assert not (Path(queued.output_dir) / "tensorboard").exists()


def test_an_earlier_stage_reports_as_its_own_run_in_the_job_s_stores(tmp_path, restored_environment):
    """rlhf's reward model trains in its own folder of the job's: its events go beside the policy's, as another run."""
    job_dir = tmp_path / "job"
    config = JobConfig(name="two-stage", dataset="d.jsonl", output_dir=str(job_dir), trackers=["tensorboard", "mlflow"])
    options = trackers.trainer_options(config, job_dir / "reward_model")
    assert options == {"report_to": ["tensorboard", "mlflow"], "run_name": "two-stage/reward_model",
                       "project": trackers.PROJECT}
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(job_dir / "tensorboard" / "reward_model")
    assert os.environ["MLFLOW_TRACKING_URI"] == (job_dir / "mlruns").resolve().as_uri()
    assert trackers.trainer_options(config, job_dir)["run_name"] == "two-stage"
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(job_dir / "tensorboard")
    assert trackers.trainer_options(config.model_copy(update={"trackers": []}), job_dir)["report_to"] == "none"


def test_wandb_logs_offline_unless_the_server_holds_a_key(tmp_path, monkeypatch, restored_environment):
    config = JobConfig(name="w", dataset="d.jsonl", output_dir=str(tmp_path), trackers=["wandb"])
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    trackers.trainer_options(config, tmp_path)
    assert (os.environ["WANDB_MODE"], os.environ["WANDB_DIR"]) == ("offline", str(tmp_path / "wandb"))
    del os.environ["WANDB_MODE"]
    monkeypatch.setenv("WANDB_API_KEY", "a-key")
    trackers.trainer_options(config, tmp_path)
    assert os.environ["WANDB_MODE"] == "online"
