"""Accounts: the users file and its command, who sees and controls which jobs and datasets (checked in the engine),
the owner columns added to an older database, OAuth's profile as the owner, and --share refused without sign-in."""

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from modelforge import accounts, run_folder, store
from modelforge.accounts import LOCAL, Account, SignIn, sign_in_for
from modelforge.db import DatasetRecord, Job, init_database
from modelforge.settings import Settings
from modelforge.errors import JobError
from modelforge.ui.session import NOT_SIGNED_IN, account_of

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB, ADMIN = Account("alice"), Account("bob"), Account("root", admin=True)


def run(*args, home, stdin=None, timeout=120):
    env = {**os.environ, "MODELFORGE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_user_command_adds_lists_and_removes_accounts_with_salted_slow_hashes(tmp_path):
    added = run("-m", "modelforge", "user", "add", "alice", "--admin", "--password-stdin", home=tmp_path,
                stdin="correct horse\n")
    assert added.returncode == 0, added.stderr
    assert run("-m", "modelforge", "user", "add", "bob", "--password-stdin", home=tmp_path,
               stdin="correct horse\n").returncode == 0
    assert run("-m", "modelforge", "user", "list", home=tmp_path).stdout.splitlines() == ["alice  (admin)", "bob"]

    stored = (tmp_path / "users.json").read_text()
    assert "correct horse" not in stored and (tmp_path / "users.json").stat().st_mode & 0o777 == 0o600
    users = json.loads(stored)["users"]
    assert users["alice"]["salt"] != users["bob"]["salt"] and users["alice"]["scrypt"] != users["bob"]["scrypt"]
    assert accounts.check_password(tmp_path, "alice", "correct horse") == Account("alice", admin=True)
    assert accounts.check_password(tmp_path, "alice", "wrong horse!") is None
    assert accounts.check_password(tmp_path, "nobody", "correct horse") is None

    for args, stdin, message in (
        (("add", "alice", "--password-stdin"), "another one\n", "A user named alice exists already"),
        (("add", "carol", "--password-stdin"), "short\n", "too short: use at least 8 characters"),
        (("add", "../carol", "--password-stdin"), "long enough\n", "not a valid user name"),
        (("remove", "carol"), None, "No user named carol"),
    ):
        refused = run("-m", "modelforge", "user", *args, home=tmp_path, stdin=stdin)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    assert run("-m", "modelforge", "user", "remove", "bob", home=tmp_path).returncode == 0
    assert [user.name for user in accounts.list_users(tmp_path)] == ["alice"]


def test_the_auth_pair_is_an_admin_beside_the_users_file(tmp_path):
    accounts.add_user(tmp_path, "bob", "bob's password")
    sign_in = sign_in_for(tmp_path, "ops:ops-secret")
    assert sign_in.check("ops", "ops-secret") and sign_in.check("bob", "bob's password")
    assert not sign_in.check("ops", "bob's password") and not sign_in.check("bob", "ops-secret")
    assert sign_in.account("ops") == Account("ops", admin=True) and sign_in.account("bob") == Account("bob")
    assert sign_in_for(tmp_path / "empty") is None  # no users, no pair: the local single-user app


def _job(engine, name, owner, status="completed"):
    folder = engine.settings.runs_dir / name
    folder.mkdir(parents=True)
    (folder / run_folder.LOG_FILE).write_text(f"{name}'s log\n")
    config = json.dumps({"name": name, "dataset": "d.jsonl", "output_dir": str(folder)})
    return Job.create(name=name, config=config, status=status, output_dir=str(folder), owner=owner)


def test_a_user_sees_and_controls_only_their_own_jobs_an_admin_all_checked_in_the_engine(engine, fake_hub):
    mine, theirs = _job(engine, "alice-run", "alice"), _job(engine, "bob-run", "bob", status="queued")
    legacy = _job(engine, "before-accounts", None)

    assert [job.name for job in engine.list_jobs(ALICE)] == ["alice-run"]
    assert [job.name for job in engine.list_jobs(ADMIN)] == ["before-accounts", "bob-run", "alice-run"]
    assert engine.list_jobs(LOCAL) == engine.list_jobs(ADMIN)  # no sign-in: the one local user is an admin
    assert engine.current_job(ALICE).id == mine.id and engine.current_job(BOB).id == theirs.id
    assert engine.job_view(mine.id, ALICE)["name"] == "alice-run"

    refusal = f"Job {theirs.id} belongs to another user; you can see and control only your own jobs."
    for action in (
        lambda: engine.cancel(theirs.id, account=ALICE),
        lambda: engine.resume(theirs.id, account=ALICE),
        lambda: engine.delete_job(theirs.id, account=ALICE),
        lambda: engine.push_to_hub(theirs.id, "alice/stolen", account=ALICE, token="hf_x"),
        lambda: engine.export_config(theirs.id, ALICE),
        lambda: engine.log_tail(theirs.id, account=ALICE),
        lambda: engine.job_view(theirs.id, ALICE),
    ):
        with pytest.raises(JobError) as error:
            action()
        assert str(error.value) == refusal
    with pytest.raises(JobError, match="belongs to no one \\(it predates accounts\\): only an admin"):
        engine.delete_job(legacy.id, account=BOB)
    assert fake_hub.requests == []  # the push was refused before the Hub was asked anything
    assert store.get_job(theirs.id).status == "queued" and store.get_job(theirs.id).cancel_requested_at is None

    assert engine.cancel(theirs.id, account=BOB).status == "cancelled"
    engine.delete_job(legacy.id, account=ADMIN)
    assert [job.name for job in engine.list_jobs(ADMIN)] == ["bob-run", "alice-run"]


def test_jobs_and_datasets_record_their_owner(engine, mapping_dataset):
    sample = str(mapping_dataset["train"])
    record = engine.save_dataset("alice-words", sample, "text-generation", {}, None, ALICE)
    assert DatasetRecord.get(DatasetRecord.name == "alice-words").owner == "alice"
    assert [entry["name"] for entry in engine.list_datasets(ALICE)] == [record["name"]]
    assert engine.list_datasets(BOB) == []
    assert "alice-words" not in [value for _, value in engine.dataset_choices("text-generation", account=BOB)]
    from modelforge.config import JobConfig

    with pytest.raises(Exception, match="'alice-words' belongs to another user"):
        engine.submit(JobConfig(dataset="alice-words", training={"max_steps": 1}), BOB)
    job = engine.submit(JobConfig(dataset="alice-words", training={"max_steps": 1}), ALICE)
    assert store.get_job(job.id).owner == "alice"


def test_an_older_database_gains_owner_columns_its_rows_visible_to_admins_only(engine, tmp_path, monkeypatch):
    old = tmp_path / "before-accounts.db"
    with sqlite3.connect(engine.settings.database_path) as current:
        schema = [sql for (sql,) in current.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    current.close()
    with sqlite3.connect(old) as connection:  # the same tables as a ModelForge without accounts made them, one job
        for sql in schema:
            if "owner" not in sql or sql.startswith("CREATE TABLE"):
                connection.execute(re.sub(r', "owner" VARCHAR\(255\)', "", sql))
        connection.execute("INSERT INTO jobs (name, config, status, stage, output_dir, created_at, resume, step) "
                           "VALUES ('old', '{}', 'completed', 'completed', '/x', '2026-01-01 00:00:00', 0, 0)")
        assert "owner" not in [row[1] for row in connection.execute("PRAGMA table_info(jobs)")]
    connection.close()
    engine.runner.stop()
    monkeypatch.setenv("MODELFORGE_DB_PATH", str(old))
    init_database(Settings.from_env())
    with sqlite3.connect(old) as connection:
        for table in ("jobs", "datasets"):
            assert "owner" in [row[1] for row in connection.execute(f"PRAGMA table_info({table})")], table
    connection.close()
    assert Job.get(Job.name == "old").owner is None
    assert engine.list_jobs(ALICE) == [] and [job.name for job in engine.list_jobs(ADMIN)] == ["old"]


def test_on_a_space_with_oauth_the_owner_is_the_hugging_face_user(engine, monkeypatch, tmp_path):
    for name, value in (("SPACE_ID", "carol/forge"), ("OAUTH_CLIENT_ID", "client"), ("SPACE_AUTHOR_NAME", "carol")):
        monkeypatch.setenv(name, value)
    engine.sign_in = sign_in_for(tmp_path)
    assert engine.sign_in.oauth
    profile = gr.OAuthProfile({"name": "Dan", "preferred_username": "dan", "profile": "", "picture": ""})
    assert account_of(engine, None, profile) == Account("dan")
    owner = gr.OAuthProfile({"name": "Carol", "preferred_username": "carol", "profile": "", "picture": ""})
    assert account_of(engine, None, owner) == Account("carol", admin=True)  # the Space's owner administers it
    with pytest.raises(gr.Error) as error:
        account_of(engine, None, None)
    assert error.value.message == NOT_SIGNED_IN
    engine.sign_in = SignIn(tmp_path)
    with pytest.raises(gr.Error):
        account_of(engine, None, None)  # password sign-in on, yet no user: refused too


def test_share_without_sign_in_refuses_to_start_unless_insecure_share(tmp_path):
    refused = run("app.py", "--share", "--port", "9", home=tmp_path, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--share publishes this app to anyone who has the link" in refused.stderr
    assert "python -m modelforge user add NAME --admin" in refused.stderr and "--insecure-share" in refused.stderr
    bad_pair = run("app.py", "--auth", "nocolon", home=tmp_path, timeout=60)
    assert bad_pair.returncode == 1 and "must look like user:password" in bad_pair.stderr
