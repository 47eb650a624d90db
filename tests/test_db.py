"""The job store: where it lives, SQLite and PostgreSQL alike, and a clear error when it cannot be opened."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from modelforge.db import Job, database, init_database
from modelforge.settings import Settings
from modelforge.processes import EXIT_DATABASE_UNREACHABLE, WORKER_MODULE

ROOT = Path(__file__).resolve().parent.parent


def test_sqlite_store_lives_under_the_home_folder_in_wal_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELFORGE_DB_PATH", raising=False)
    settings = Settings(home=tmp_path / "home")
    db = init_database(settings)
    assert settings.database_path == tmp_path / "home" / "modelforge.db"
    assert settings.database_path.exists()
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_path_and_url_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELFORGE_DB_PATH", str(tmp_path / "elsewhere.db"))
    assert Settings(home=tmp_path).database_path == tmp_path / "elsewhere.db"

    url_db = tmp_path / "by-url.db"
    monkeypatch.setenv("MODELFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{url_db}")
    init_database(Settings.from_env())
    Job.create(name="x", config="{}", output_dir=str(tmp_path))
    assert database.obj.database == str(url_db)
    assert url_db.exists() and Job.select().count() == 1


@pytest.mark.both_databases
def test_a_database_made_by_an_older_version_gains_the_new_columns(settings):
    from playhouse.migrate import SchemaMigrator, migrate

    db = init_database(settings)
    Job.create(name="old", config="{}", output_dir="/x")
    migrate(SchemaMigrator.from_database(db).drop_column("jobs", "supervisor"))
    database.close()
    init_database(settings)
    assert "supervisor" in {column.name for column in database.get_columns("jobs")}
    assert [(job.name, job.supervisor) for job in Job.select()] == [("old", None)]  # the row it held is kept


@pytest.mark.both_databases
def test_a_database_made_before_sweeps_opens_with_its_jobs_outside_any_sweep(settings):
    from playhouse.migrate import SchemaMigrator, migrate

    from modelforge import store
    from modelforge.accounts import LOCAL

    db = init_database(settings)
    old = Job.create(name="old", config="{}", output_dir="/x")
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.drop_index("jobs", "job_sweep"), migrator.drop_column("jobs", "sweep"))
    database.close()
    init_database(settings)
    assert "sweep" in {column.name for column in database.get_columns("jobs")}
    # Its index is made once the column exists (PostgreSQL refused to open the database otherwise), and only once.
    assert [index.columns for index in database.get_indexes("jobs") if "sweep" in index.columns] == [["sweep"]]
    assert [(job.name, job.sweep) for job in Job.select()] == [("old", None)] and store.sweeps(LOCAL) == []
    new = Job.create(name="swept", config="{}", output_dir="/y", sweep=old.id + 1)
    assert store.sweeps(LOCAL) == [(new.id, "swept", 1)] and store.sweep_jobs(new.id) == [new]


@pytest.mark.both_databases
def test_a_database_made_by_an_older_version_loses_what_nothing_reads_and_keeps_its_rows(settings):
    """Older versions kept each job's dataset row (jobs.dataset_id) and a table of produced models: opening such a
    database drops both; its jobs, their metric points and its datasets stay, and jobs are written and deleted as
    before."""
    from peewee import ForeignKeyField
    from playhouse.migrate import SchemaMigrator, migrate

    from modelforge import store
    from modelforge.db import DatasetRecord, MetricPoint

    db = init_database(settings)
    migrate(SchemaMigrator.from_database(db).add_column(
        "jobs", "dataset_id", ForeignKeyField(DatasetRecord, null=True, field=DatasetRecord.id, on_delete="SET NULL")))
    db.execute_sql("CREATE TABLE model_artifacts (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL REFERENCES jobs (id) "
                   "ON DELETE CASCADE, kind VARCHAR(255) NOT NULL, path VARCHAR(255) NOT NULL)")
    dataset = DatasetRecord.create(name="words", task="text-generation", path="/words.jsonl", rows=3)
    old = Job.create(name="old", config="{}", output_dir="/x")
    db.execute_sql(f"UPDATE jobs SET dataset_id = {dataset.id} WHERE id = {old.id}")
    db.execute_sql(f"INSERT INTO model_artifacts VALUES (1, {old.id}, 'adapter', '/x')")
    store.record_metrics(old.id, step=5, loss=0.5)
    database.close()

    init_database(settings)
    assert "dataset_id" not in {column.name for column in database.get_columns("jobs")}
    assert "model_artifacts" not in database.get_tables()
    assert [(job.name, job.step, job.loss) for job in Job.select()] == [("old", 5, 0.5)]
    assert [(point.step, point.loss) for point in MetricPoint.select()] == [(5, 0.5)]
    assert [record.name for record in DatasetRecord.select()] == ["words"]
    new = Job.create(name="new", config="{}", output_dir="/y")
    old.delete_instance(recursive=True)
    assert [job.name for job in Job.select()] == ["new"] and MetricPoint.select().count() == 0
    database.close()
    init_database(settings)  # opening it again finds nothing left to drop
    assert Job.get_by_id(new.id).name == "new"


BAD_URLS = [
    ("postgresql://postgres:s3cret@127.0.0.1:{port}/jobs",
     "Cannot open the database postgresql://postgres:***@127.0.0.1:{port}/jobs: connection to server"),
    ("postgres://127.0.0.1:{port}", "is not a database address"),
    ("mongodb://127.0.0.1:{port}/jobs", "is not a database address"),
]


@pytest.mark.parametrize("url, expected", BAD_URLS)
def test_an_unreachable_or_malformed_database_url_is_one_clear_error_in_the_cli(url, expected, settings, monkeypatch):
    port = free_port()
    monkeypatch.setenv("DATABASE_URL", url.format(port=port))
    result = subprocess.run([sys.executable, "-m", "modelforge", "jobs"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: DATABASE_URL") or result.stderr.startswith("error: Cannot open")
    assert expected.format(port=port) in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_the_app_and_the_worker_refuse_an_unreachable_database_without_a_traceback(settings, monkeypatch):
    port = free_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/jobs")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    expected = f"Cannot open the database postgresql://postgres@127.0.0.1:{port}/jobs"
    app = subprocess.run([sys.executable, "app.py", "--port", str(free_port())], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert app.returncode == 1 and expected in app.stderr and "Traceback" not in app.stderr
    worker = subprocess.run([sys.executable, "-m", WORKER_MODULE, "1"], capture_output=True, text=True, cwd=ROOT,
                            env=env, timeout=120)
    assert worker.returncode == EXIT_DATABASE_UNREACHABLE
    assert expected in worker.stderr and "Traceback" not in worker.stderr
