"""The History tab's handlers, called as the page calls them but without a server: the table, an inspection, deletes."""

import json

from modelforge import run_folder
from modelforge.accounts import LOCAL
from modelforge.config import JobConfig
from modelforge.db import Job
from modelforge.ui import history_tab


def _job(engine, name: str, status: str) -> Job:
    folder = engine.settings.runs_dir / name
    folder.mkdir(parents=True)
    (folder / run_folder.LOG_FILE).write_text(f"{name} trained\n")
    config = JobConfig(name=name, dataset="data/pairs.jsonl", output_dir=str(folder))
    return Job.create(name=name, config=config.to_json(), status=status, stage=status, output_dir=str(folder))


def test_the_table_lists_every_job_and_an_inspection_shows_the_first_selected(engine):
    done, running = _job(engine, "done", "completed"), _job(engine, "busy", "running")
    table, choices = history_tab.refresh(engine, LOCAL)
    assert [row[:3] for row in table.values.tolist()] == [[running.id, "busy", "running"], [done.id, "done", "completed"]]
    assert table["dataset"].tolist() == ["pairs.jsonl", "pairs.jsonl"]
    assert choices["choices"] == [f"#{running.id} busy", f"#{done.id} done"]

    summary, config, log, curves, evaluation = history_tab.inspect_jobs(engine, LOCAL, [f"#{done.id} done"])
    assert summary.startswith(f"**#{done.id} done** · completed") and "name: done" in config
    assert log.strip() == "done trained" and curves.empty and list(evaluation.columns) == ["metric"]
    assert history_tab.inspect_jobs(engine, LOCAL, [])[0] == "Select a job to see its config, log and curves."


def test_delete_removes_finished_jobs_with_their_folder_and_refuses_a_running_one(engine):
    done, running = _job(engine, "done", "completed"), _job(engine, "busy", "running")
    message, confirm = history_tab.delete_jobs(engine, LOCAL, [f"#{done.id} done", f"#{running.id} busy"])
    assert message == f"Deleted job #{done.id}.\n\nJob {running.id} is running; cancel it before deleting it."
    assert confirm["visible"] is False
    assert [job.id for job in engine.list_jobs()] == [running.id]
    assert not (engine.settings.runs_dir / "done").exists() and (engine.settings.runs_dir / "busy").is_dir()
    assert history_tab.delete_jobs(engine, LOCAL, [])[0] == "Select the jobs to delete."


def _run(engine, name: str, status: str, sweep: int | None, rate: float, exact_match: tuple | None) -> Job:
    """A sweep's run as the worker leaves it: its config with the value it tried, and its before/after table."""
    config = JobConfig(name=name, dataset="data/pairs.jsonl", output_dir=str(engine.settings.runs_dir / name),
                       training={"learning_rate": rate})
    metrics = {}
    if exact_match:
        table = {"exact_match": dict(zip(("base", "tuned"), exact_match)), "perplexity": {"base": 9.0, "tuned": 2.0}}
        metrics = {"eval_loss": 0.5, "evaluation": {"metrics": table, "examples": []}}
    job = Job.create(name=name, config=config.to_json(), status=status, stage=status, output_dir=config.output_dir,
                     metrics=json.dumps(metrics), error="Cancelled by the user." if status == "cancelled" else None)
    job.sweep = sweep or job.id
    job.save()
    return job


def test_a_sweep_compares_its_runs_with_the_best_marked_and_a_cancelled_run_kept(engine):
    first = _run(engine, "s-lr0.001", "completed", None, 1e-3, (0.0, 40.0))
    second = _run(engine, "s-lr0.003", "completed", first.id, 3e-3, (0.0, 80.0))
    third = _run(engine, "s-lr0.01", "cancelled", first.id, 1e-2, None)
    _run(engine, "alone", "completed", None, 1e-3, (0.0, 90.0))  # another sweep of one run, not mixed in
    label = f"sweep #{first.id} · 3 runs · s-lr0.001"
    assert history_tab.sweep_choices(engine, LOCAL)["choices"][1] == label

    summary, runs, evaluation = history_tab.compare_sweep(engine, LOCAL, label)
    assert summary.startswith(f"Best by **exact_match**: job #{second.id} s-lr0.003")
    assert f"> #{third.id} cancelled: Cancelled by the user." in summary
    assert runs[["job", "status", "learning rate", "exact_match tuned", "best"]].values.tolist() == [
        [str(first.id), "completed", "0.001", "40", ""], [str(second.id), "completed", "0.003", "80", "best"],
        [str(third.id), "cancelled", "0.01", "", ""]]
    assert list(evaluation.columns) == ["metric", f"#{first.id} base", f"#{first.id} tuned", f"#{second.id} base",
                                        f"#{second.id} tuned"]
    assert evaluation.values.tolist()[0] == ["exact_match", "0", "40", "0", "80"]
    assert history_tab.compare_sweep(engine, LOCAL, None)[0] == "Select a sweep to compare its runs."
