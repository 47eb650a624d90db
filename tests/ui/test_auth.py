"""Sign-in through the served app: every API route the tabs use is refused without credentials, and a signed-in user
sees and controls only their own jobs, whatever the client sends."""

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from modelforge import accounts, run_folder, store
from modelforge.accounts import SignIn
from modelforge.db import Job
from modelforge.ui import build_app

PASSWORD = "a long password"


@pytest.fixture
def signed_in_app(engine):
    """The app behind Gradio's login page, checking the users file; no runner, so queued jobs stay queued."""
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        accounts.add_user(engine.settings.home, name, PASSWORD, admin=admin)
    engine.sign_in = SignIn(engine.settings.home)
    app = build_app(engine)
    app.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                       auth=engine.sign_in.check)
    yield app.local_url
    app.close()


def _job(engine, name, owner, status):
    folder = engine.settings.runs_dir / name
    folder.mkdir(parents=True)
    (folder / run_folder.LOG_FILE).write_text(f"{name}'s log\n")
    config = f'{{"name": "{name}", "dataset": "d.jsonl", "output_dir": "{folder}"}}'
    return Job.create(name=name, config=config, status=status, stage=status, output_dir=str(folder), owner=owner)


def test_without_credentials_every_api_route_is_refused(signed_in_app):
    with pytest.raises(Exception, match="credentials were not provided|Please login"):
        Client(signed_in_app, verbose=False)
    routes = Client(signed_in_app, auth=("alice", PASSWORD), verbose=False).view_api(print_info=False,
                                                                                     return_format="dict")
    names = sorted(routes["named_endpoints"])
    assert {"/start_training", "/cancel_job", "/history_delete", "/hub_push", "/playground_chat", "/dataset_save",
            "/job_status"} <= set(names)
    for name in names:
        response = httpx.post(f"{signed_in_app}gradio_api/call{name}", json={"data": []}, timeout=30)
        assert response.status_code == 401, name
    assert httpx.get(f"{signed_in_app}config", timeout=30).status_code == 401
    wrong = httpx.post(f"{signed_in_app}login", data={"username": "alice", "password": "not it"}, timeout=30)
    assert wrong.status_code == 400
    print(f"routes refused without credentials: {len(names)}")


def test_a_signed_in_user_cannot_see_or_control_another_users_job(engine, signed_in_app):
    mine = _job(engine, "alice-run", "alice", "completed")
    theirs = _job(engine, "bob-run", "bob", "queued")
    alice = Client(signed_in_app, auth=("alice", PASSWORD), verbose=False)

    table, choices = alice.predict(api_name="/history")
    assert [row[1] for row in table["data"]] == ["alice-run"] and choices["choices"] == [[f"#{mine.id} alice-run"] * 2]
    assert alice.predict(api_name="/playground_jobs")["choices"] == [[f"#{mine.id} alice-run", mine.id]]
    assert alice.predict(api_name="/hub_jobs")["choices"] == [[f"#{mine.id} alice-run", mine.id]]

    # The Finetune tab's job is the session's (Gradio keeps gr.State on the server): a page opened by alice watches
    # and cancels her job, never bob's queued one, though his is the job a page of his would show first.
    assert "alice-run" in alice.predict(api_name="/job_status")[0]
    assert alice.predict(api_name="/cancel_job") == f"**Job {mine.id} is completed; only queued or running jobs can be cancelled.**"
    # Naming bob's job where a dropdown offers alice's own is refused by the page's choices (and, behind them, by
    # the engine's check that test_accounts proves for every action).
    for inputs, route in (
        (([f"#{theirs.id} bob-run"],), "/history_delete"),
        (([f"#{theirs.id} bob-run"],), "/history_inspect"),
        ((theirs.id, "LoRA adapter", "alice/bobs", True, "hf_x", "", False), "/hub_push"),
        ((theirs.id, "", "chat", True), "/playground_load"),
    ):
        with pytest.raises(AppError, match="is not in the list of choices"):
            alice.predict(*inputs, api_name=route)
    assert Job.get_or_none(Job.id == theirs.id) is not None
    job = store.get_job(theirs.id)
    assert (job.status, job.cancel_requested_at) == ("queued", None)

    bob = Client(signed_in_app, auth=("bob", PASSWORD), verbose=False)
    assert "bob-run" in bob.predict(api_name="/job_status")[0]
    assert bob.predict(api_name="/cancel_job") == f"Job #{theirs.id} is cancelled."
    root = Client(signed_in_app, auth=("root", PASSWORD), verbose=False)
    assert sorted(row[1] for row in root.predict(api_name="/history")[0]["data"]) == ["alice-run", "bob-run"]
