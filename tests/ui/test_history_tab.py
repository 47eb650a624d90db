"""The History tab's handlers, called as the page calls them but without a server: the table, an inspection, deletes."""

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
