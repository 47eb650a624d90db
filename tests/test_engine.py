"""The engine, the one door of the tabs and the CLI: how it opens the job store, and what a page may name as data."""

import subprocess

import pytest

from modelforge import store
from modelforge.config import JobConfig
from modelforge.engine import Engine
from modelforge.errors import DatasetError


def test_open_leaves_other_runners_jobs_alone_and_create_marks_the_orphans(settings, mapping_dataset):
    """export and join open the engine beside a live web app: they must not judge the jobs its runner supervises."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    first = Engine.open(settings)
    job = first.runner.submit(JobConfig(dataset=str(mapping_dataset["train"]), training={"max_steps": 1}))
    store.update(job.id, status="running", stage="training", worker_pid=dead.pid)

    assert Engine.open(settings).get_job(job.id).status == "running"
    restarted = Engine.create(settings)
    assert restarted.get_job(job.id).status == "interrupted"


def test_a_page_names_data_by_an_upload_or_a_hub_id_never_a_server_path(tmp_path):
    upload = tmp_path / "words.jsonl"
    upload.write_text('{"input": "a", "output": "b"}\n')
    assert Engine.dataset_source(str(upload), None) == str(upload)
    assert Engine.dataset_source(None, "  someone/words:train ") == "someone/words:train"
    with pytest.raises(DatasetError, match="is not a Hugging Face Hub dataset id"):
        Engine.dataset_source(None, "/etc/passwd")
    with pytest.raises(DatasetError, match="unsupported file type"):
        Engine.dataset_source(str(tmp_path / "notes.exe"), None)
    with pytest.raises(DatasetError, match="Upload a file or enter"):
        Engine.dataset_source(None, " ")
