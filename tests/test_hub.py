"""Pushing a finished job to the Hub: clear errors for every failure, a model card, and the token never stored."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub
import pytest
from huggingface_hub import constants

from modelforge import jobs
from modelforge.hub import HubError, push_job, upload_files

TOKEN = "hf_NeverStoreThisSecret0123456789"


@pytest.fixture
def no_cached_token(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGINGFACE_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


class FakeHub(BaseHTTPRequestHandler):
    """Answers whoami with the `whoami` status and body; records every path asked for."""

    status = 200
    whoami: dict = {}
    requests: list = []

    def do_GET(self):
        type(self).requests.append(self.path)
        body = json.dumps(self.whoami if self.status == 200 else {"error": "Invalid credentials"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch):
    """A local stand-in for huggingface.co, with offline mode lifted for it."""
    FakeHub.status, FakeHub.whoami, FakeHub.requests = 200, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield FakeHub
    server.shutdown()
    server.server_close()


def assert_token_stored_nowhere(engine):
    for path in engine.settings.home.rglob("*"):  # the database (with its WAL) and every job folder
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_no_token_anywhere_is_a_clear_error(finished_job, no_cached_token):
    with pytest.raises(HubError, match="No Hugging Face token: paste a token with write access"):
        push_job(finished_job, "alice/demo")


def test_offline_hub_is_a_clear_error_and_the_token_is_stored_nowhere(finished_job, engine, caplog):
    with pytest.raises(HubError, match="unreachable: offline mode is on") as error:
        push_job(finished_job, "alice/demo", token=TOKEN)
    assert TOKEN not in str(error.value) and TOKEN not in caplog.text
    assert_token_stored_nowhere(engine)


def test_unreachable_hub_is_a_clear_error(finished_job, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HubError, match="Hub is unreachable .*check the server's network"):
        push_job(finished_job, "alice/demo", token=TOKEN)


def test_invalid_token_is_rejected_before_any_upload(finished_job, engine, fake_hub):
    fake_hub.status = 401
    with pytest.raises(HubError, match="token was rejected") as error:
        push_job(finished_job, "alice/demo", token=TOKEN)
    assert TOKEN not in str(error.value)
    assert fake_hub.requests == ["/api/whoami-v2"]
    assert_token_stored_nowhere(engine)


def test_a_repo_owned_by_someone_else_is_refused_before_creating_it(finished_job, fake_hub):
    fake_hub.whoami = {"name": "alice", "orgs": [{"name": "alice-lab"}], "auth": {"accessToken": {"role": "write"}}}
    with pytest.raises(HubError, match="belongs to 'bob'.*alice, alice-lab.*alice/demo"):
        push_job(finished_job, "bob/demo", token=TOKEN)
    assert fake_hub.requests == ["/api/whoami-v2"]


def test_a_read_only_token_is_refused(finished_job, fake_hub):
    fake_hub.whoami = {"name": "alice", "orgs": [], "auth": {"accessToken": {"role": "read"}}}
    with pytest.raises(HubError, match="read-only"):
        push_job(finished_job, "alice/demo", token=TOKEN)


def test_bad_repo_id_and_unfinished_job_fail_before_any_request(finished_job, fake_hub):
    with pytest.raises(HubError, match="not a valid repo id"):
        push_job(finished_job, "alice/two words", token=TOKEN)
    jobs.update(finished_job.id, status="running")
    with pytest.raises(HubError, match="is running: only a completed job"):
        push_job(jobs.get_job(finished_job.id), "alice/demo", token=TOKEN)
    assert fake_hub.requests == []


def test_push_uploads_the_model_and_a_card_without_checkpoints_or_logs(
    finished_job, engine, monkeypatch, no_cached_token
):
    calls = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", lambda self: {"name": "alice", "orgs": []})

    def create_repo(self, repo_id, private, exist_ok):
        calls["repo"] = (repo_id, private, exist_ok, self.token)
        return huggingface_hub.RepoUrl(f"https://huggingface.co/alice/{repo_id}")

    def create_commit(self, repo_id, operations, commit_message):
        calls["commit"] = (repo_id, {op.path_in_repo: op.path_or_fileobj for op in operations})

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # no token argument: the environment's is used
    steps = []

    url = push_job(finished_job, "demo", progress=lambda fraction, message: steps.append(fraction))

    assert url == "https://huggingface.co/alice/demo"
    assert calls["repo"] == ("demo", True, True, TOKEN)
    repo_id, uploaded = calls["commit"]
    assert repo_id == "alice/demo"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "modelforge.yaml",
            "metrics.json", "README.md"} <= set(uploaded)
    assert not [name for name in uploaded if name.startswith("checkpoint-") or name.endswith(".log")]
    card = uploaded["README.md"].decode()
    assert "library_name: peft" in card and "# playground-lora" in card
    assert "- **Task:** text-generation" in card and "- **Dataset:** animals.jsonl" in card
    assert "| lora.r | 16 |" in card and "| eval_loss | 0.75 |" in card
    assert TOKEN not in card
    assert steps == sorted(steps) and steps[-1] == 1.0
    assert_token_stored_nowhere(engine)


def test_upload_files_skips_checkpoints_logs_and_the_old_readme(tmp_path):
    folder = tmp_path / "run"
    (folder / "checkpoint-3").mkdir(parents=True)
    (folder / "runs" / "x").mkdir(parents=True)
    for name in ("adapter_model.safetensors", "README.md", "train.log", ".lock", "checkpoint-3/model.bin",
                 "runs/x/events", "sub/README.md"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    assert [p.relative_to(folder).as_posix() for p in upload_files(folder)] == [
        "adapter_model.safetensors", "sub/README.md"
    ]
