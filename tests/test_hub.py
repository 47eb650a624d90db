"""Pushing a finished job to the Hub with the real huggingface_hub client against a local fake Hub (tests/fake_hub.py):
what is uploaded, the model card, the token stored nowhere, and a clear error for every refusal."""

import contextlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants

from modelforge import export, store
from modelforge.hub import HubError, push_job, upload_files

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_NeverStoreThisSecret0123456789"
EVALUATION = {
    "rows": 15,
    "generated_rows": 15,
    "metrics": {"perplexity": {"base": 41.2, "tuned": 3.1}, "rougeL": {"base": 0.12, "tuned": 0.91}},
    "examples": [{"input": "a private row", "expected": "its answer", "base": "x", "tuned": "its answer"}],
}
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "modelforge.yaml", "metrics.json", "README.md", "loss_curve.png"}
MERGED_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "chat_template.jinja", "modelforge.yaml", "metrics.json", "README.md",
                "loss_curve.png"}


@pytest.fixture
def evaluated_job(finished_job):
    """finished_job with what a real run leaves: loss points, start and end times, hardware and a before/after table."""
    for step, loss in ((2, 2.5), (4, 1.6), (6, 1.1), (8, 0.7), (10, 0.5)):
        store.record_metrics(finished_job.id, step=step, loss=loss)
    store.record_metrics(finished_job.id, step=10, eval_loss=0.75)
    started = datetime(2026, 11, 27, 12, 0, 0)
    store.update(finished_job.id, started_at=started, finished_at=started + timedelta(seconds=90))
    metrics = {"train_loss": 0.5, "eval_loss": 0.75, "steps": 10, "hardware": "CPU (2 cores)", "evaluation": EVALUATION}
    (Path(finished_job.output_dir) / "metrics.json").write_text(json.dumps(metrics))
    return store.get_job(finished_job.id)


def assert_token_stored_nowhere(engine, job_id):
    """Not in any row of any table, any file of the data folder (database, job folders, logs), nor an exported config."""
    connection = sqlite3.connect(engine.settings.database_path)
    tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert "jobs" in tables
    for table in tables:
        for row in connection.execute(f'SELECT * FROM "{table}"'):
            assert TOKEN not in repr(row), table
    connection.close()
    engine.export_config(job_id)
    files = [path for path in engine.settings.home.rglob("*") if path.is_file()]
    assert any(path.parent.name == "exports" for path in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path


def uploaded_card(hub, repo_id) -> ModelCard:
    return ModelCard(hub.repos[repo_id].files["README.md"].decode())


def run_usage_snippet(card: ModelCard, repo_files: dict[str, bytes], folder: Path, base_model: Path) -> str:
    """Run the card's Python snippet on the pushed files, saved to `folder` in place of the repo id."""
    for name, content in repo_files.items():
        (folder / name).write_bytes(content)
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S)[1]
    repo_id = re.search(r'from_pretrained\("([^"]+)"\)', snippet)[1]
    # A pushed adapter names a local base by its folder's name: the snippet runs beside a folder of that name.
    base = json.loads(repo_files.get("adapter_config.json", b"{}")).get("base_model_name_or_path")
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.chdir(folder.parent):
        if base and not Path(base).exists():
            Path(base).symlink_to(base_model, target_is_directory=True)
        exec(snippet.replace(f'"{repo_id}"', repr(str(folder))), {})
    return output.getvalue().strip()


def greedy_reply(model_path, adapter=None, prompt="Hello"):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prediction import generate_reply

    model = AutoModelForCausalLM.from_pretrained(model_path)
    if adapter:
        model = PeftModel.from_pretrained(model, str(adapter))
    return generate_reply(model, AutoTokenizer.from_pretrained(adapter or model_path), prompt, max_new_tokens=64)


def test_push_uploads_the_adapter_a_model_card_and_the_loss_curve_and_stores_the_token_nowhere(
    evaluated_job, engine, fake_hub, demo_model_path, tmp_path, caplog
):
    fake_hub.add_account(TOKEN, "alice")
    steps = []

    result = push_job(evaluated_job, "demo", engine.settings, token=TOKEN,
                      progress=lambda fraction, message: steps.append(fraction))

    assert (result.url, result.private, result.updated) == (f"{fake_hub.url}/alice/demo", True, False)
    assert fake_hub.create_payloads == [{"name": "demo", "organization": "alice", "visibility": "private"}]
    repo = fake_hub.repos["alice/demo"]
    assert repo.private and len(repo.commits) == 1
    assert set(repo.files) == ADAPTER_FILES  # no checkpoint, optimizer state, log or merged copy
    published = json.loads(repo.files["metrics.json"])  # the scores, without the user's held-out rows
    assert published["evaluation"]["metrics"] == EVALUATION["metrics"] and "examples" not in published["evaluation"]
    assert not any(b"a private row" in content for content in repo.files.values())
    folder = Path(evaluated_job.output_dir)
    assert repo.files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    assert ("POST", "/alice/demo.git/info/lfs/objects/batch") in fake_hub.requests  # the weights went through LFS
    assert repo.files["loss_curve.png"].startswith(b"\x89PNG\r\n\x1a\n")
    assert steps == sorted(steps) and steps[-1] == 1.0

    card = uploaded_card(fake_hub, "alice/demo")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert {"modelforge", "text-generation", "sft", "lora"} <= set(card.data.tags)
    assert card.data.base_model is None  # the demo model is not on the Hub
    for expected in (
        "- **Base model:** the ModelForge demo model",
        "- **Dataset:** animals.jsonl",
        "- **Task:** text-generation",
        "- **Strategy:** sft",
        "- **Training hardware:** CPU (2 cores)",
        "- **Training duration:** 1 min 30 s",
        "| training.learning_rate | 0.0002 |",
        "| training.max_length | 512 |",
        "| lora.r | 16 |",
        "| lora.target_modules | all-linear |",
        "| metric | base | tuned | change |",
        "| perplexity | 41.2 | 3.1 | -38.1 |",
        "| rougeL | 0.12 | 0.91 | +0.79 |",
        "![Training and evaluation loss by step](loss_curve.png)",
        'AutoPeftModelForCausalLM.from_pretrained("alice/demo")',
    ):
        assert expected in card.text, expected

    # The card's snippet loads the pushed adapter and answers as base + adapter does.
    snippet_folder = tmp_path / "clone"
    snippet_folder.mkdir()
    reply = run_usage_snippet(card, repo.files, snippet_folder, demo_model_path)
    assert reply == greedy_reply(demo_model_path, adapter=folder)

    assert result.commit_url.startswith(f"{fake_hub.url}/alice/demo/commit/")
    assert TOKEN not in card.content and TOKEN not in caplog.text
    assert_token_stored_nowhere(engine, evaluated_job.id)


def test_push_of_the_merged_model_merges_first_and_uploads_a_plain_transformers_model_whose_snippet_runs(
    evaluated_job, engine, fake_hub, demo_model_path, tmp_path, monkeypatch
):
    fake_hub.add_account(TOKEN, "alice", orgs={"alice-lab": "write"})
    # In this process rather than a child one, to save its start-up: test_export runs the child.
    monkeypatch.setattr(export, "merge_job_in_subprocess", export.merge_job)
    stages = []

    result = push_job(evaluated_job, "alice-lab/demo-merged", engine.settings, token=TOKEN, merged=True, private=False,
                      license="apache-2.0", progress=lambda fraction, message: stages.append((fraction, message)))

    assert "merging: applying the adapter" in [message for _, message in stages]
    assert [fraction for fraction, _ in stages] == sorted(fraction for fraction, _ in stages)
    assert (Path(evaluated_job.output_dir) / "merged").is_dir()
    assert not result.private and fake_hub.create_payloads[0]["visibility"] == "public"
    repo = fake_hub.repos["alice-lab/demo-merged"]
    assert set(repo.files) == MERGED_FILES
    card = uploaded_card(fake_hub, "alice-lab/demo-merged")
    assert card.data.library_name == "transformers" and card.data.license == "apache-2.0"
    assert "A merged model (LoRA merged into the base)" in card.text
    assert 'AutoModelForCausalLM.from_pretrained("alice-lab/demo-merged")' in card.text
    snippet_folder = tmp_path / "clone"
    snippet_folder.mkdir()
    assert run_usage_snippet(card, repo.files, snippet_folder, demo_model_path) == greedy_reply(
        demo_model_path, adapter=evaluated_job.output_dir
    )


def test_card_without_evaluation_or_loss_points_says_so(finished_job, engine, fake_hub):
    fake_hub.add_account(TOKEN, "alice")
    push_job(finished_job, "alice/plain", engine.settings, token=TOKEN)
    repo = fake_hub.repos["alice/plain"]
    assert "loss_curve.png" not in repo.files
    text = uploaded_card(fake_hub, "alice/plain").text
    assert "No before/after evaluation was recorded for this job." in text
    assert "Final train_loss: 0.5, eval_loss: 0.75." in text
    assert "No loss was recorded." in text and "- **Training hardware:** not recorded" in text


def test_an_existing_repo_is_updated_only_after_confirmation(evaluated_job, engine, fake_hub):
    fake_hub.add_account(TOKEN, "alice")
    fake_hub.add_repo("alice/demo", private=True, files={"README.md": b"old card", "notes.txt": b"kept"})

    with pytest.raises(HubError, match=r"alice/demo already exists on the Hub \(private\).*confirm the update"):
        push_job(evaluated_job, "alice/demo", engine.settings, token=TOKEN)
    assert fake_hub.requests == [("GET", "/api/whoami-v2"), ("GET", "/api/models/alice/demo")]
    assert len(fake_hub.repos["alice/demo"].commits) == 1

    result = push_job(evaluated_job, "alice/demo", engine.settings, token=TOKEN, confirm_existing=True, private=False)

    repo = fake_hub.repos["alice/demo"]
    assert result.updated and result.private  # an existing repo keeps its visibility
    assert len(repo.commits) == 2 and repo.commits[-1]["summary"] == f"ModelForge job #{evaluated_job.id}: playground-lora"
    assert repo.files["notes.txt"] == b"kept" and repo.files["README.md"] != b"old card"
    assert fake_hub.create_payloads == []


def test_an_upload_failing_under_xet_is_a_clear_error_and_leaves_no_empty_repo_behind(
    finished_job, engine, fake_hub, monkeypatch
):
    """hf-xet as installed by default, against a Hub whose Xet storage cannot be reached (the fake has none)."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "0")
    fake_hub.add_account(TOKEN, "alice")

    with pytest.raises(HubError, match=r"upload of the files to alice/demo failed \(.*\)\. Retry; .*HF_HUB_DISABLE_XET=1"
                       r".* The repo this push created was deleted again: nothing was left on the Hub\.") as error:
        push_job(finished_job, "demo", engine.settings, token=TOKEN)
    assert TOKEN not in str(error.value)
    assert ("GET", "/api/models/alice/demo/xet-write-token/main") in fake_hub.requests  # the Xet path was taken
    assert fake_hub.create_payloads[0]["name"] == "demo" and fake_hub.deleted == ["alice/demo"] and fake_hub.repos == {}

    # A repo that existed before the push is never deleted: it keeps its files and commits.
    fake_hub.add_repo("alice/kept", private=True, files={"notes.txt": b"kept"})
    with pytest.raises(HubError, match="upload of the files to alice/kept failed") as error:
        push_job(finished_job, "alice/kept", engine.settings, token=TOKEN, confirm_existing=True)
    assert "deleted" not in str(error.value) and fake_hub.deleted == ["alice/demo"]
    assert fake_hub.repos["alice/kept"].files == {"notes.txt": b"kept"} and len(fake_hub.repos["alice/kept"].commits) == 1


def test_invalid_token_is_rejected_before_any_upload(finished_job, engine, fake_hub):
    with pytest.raises(HubError, match="token was rejected") as error:
        push_job(finished_job, "alice/demo", engine.settings, token=TOKEN)
    assert TOKEN not in str(error.value)
    assert fake_hub.requests == [("GET", "/api/whoami-v2")]
    assert_token_stored_nowhere(engine, finished_job.id)


@pytest.mark.parametrize(
    "role, scoped, orgs, repo_id, expected",
    [
        ("read", None, None, "alice/demo", "The token of alice is read-only"),
        ("fineGrained", [{"entity": {"type": "user", "name": "alice"}, "permissions": ["repo.content.read"]}], None,
         "alice/demo", "fine-grained token of alice may not write to repos of alice"),
        ("write", None, {"alice-lab": "read"}, "alice-lab/demo", "alice has the read role in the organisation alice-lab"),
    ],
)
def test_a_token_without_write_access_is_refused_before_any_upload(
    finished_job, engine, fake_hub, role, scoped, orgs, repo_id, expected
):
    fake_hub.add_account(TOKEN, "alice", orgs=orgs, role=role, scoped=scoped)
    with pytest.raises(HubError, match=expected):
        push_job(finished_job, repo_id, engine.settings, token=TOKEN)
    assert fake_hub.requests == [("GET", "/api/whoami-v2")] and fake_hub.repos == {}


def test_a_fine_grained_token_with_write_access_to_the_owner_pushes(finished_job, engine, fake_hub):
    scoped = [{"entity": {"type": "user", "name": "alice"}, "permissions": ["repo.content.read", "repo.write"]}]
    fake_hub.add_account(TOKEN, "alice", role="fineGrained", scoped=scoped)
    push_job(finished_job, "alice/demo", engine.settings, token=TOKEN)
    assert "adapter_model.safetensors" in fake_hub.repos["alice/demo"].files


def test_a_repo_of_someone_else_is_refused_with_the_reason(finished_job, engine, fake_hub):
    fake_hub.add_account(TOKEN, "alice", orgs={"alice-lab": "admin"})
    fake_hub.add_repo("bob/demo", private=False, files={"README.md": b"bob's"})
    with pytest.raises(HubError, match="bob/demo belongs to 'bob'.*alice, alice-lab.*alice/demo"):
        push_job(finished_job, "bob/demo", engine.settings, token=TOKEN, confirm_existing=True)
    assert fake_hub.requests == [("GET", "/api/whoami-v2")]
    assert len(fake_hub.repos["bob/demo"].commits) == 1


def test_token_from_the_environment_then_the_cached_login(finished_job, engine, fake_hub, monkeypatch):
    fake_hub.add_account(TOKEN, "alice")
    fake_hub.add_account("hf_cachedLoginToken", "carol")
    Path(constants.HF_TOKEN_PATH).write_text("hf_cachedLoginToken")
    assert push_job(finished_job, "from-login", engine.settings).url.endswith("/carol/from-login")
    monkeypatch.setenv("HUGGINGFACE_TOKEN", TOKEN)
    assert push_job(finished_job, "from-env", engine.settings).url.endswith("/alice/from-env")


def test_no_token_anywhere_is_a_clear_error(finished_job, engine, fake_hub):
    with pytest.raises(HubError, match="No Hugging Face token: paste a token with write access"):
        push_job(finished_job, "alice/demo", engine.settings)
    assert fake_hub.requests == []


def test_offline_hub_is_a_clear_error_and_the_token_is_stored_nowhere(finished_job, engine, caplog):
    with pytest.raises(HubError, match="unreachable: offline mode is on") as error:
        push_job(finished_job, "alice/demo", engine.settings, token=TOKEN)
    assert TOKEN not in str(error.value) and TOKEN not in caplog.text
    assert_token_stored_nowhere(engine, finished_job.id)


def test_unreachable_hub_is_a_clear_error(finished_job, engine, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HubError, match="Hub is unreachable .*check the server's network"):
        push_job(finished_job, "alice/demo", engine.settings, token=TOKEN)


def test_bad_repo_id_and_unfinished_job_fail_before_any_request(finished_job, engine, fake_hub):
    with pytest.raises(HubError, match="not a valid repo id"):
        push_job(finished_job, "alice/two words", engine.settings, token=TOKEN)
    store.update(finished_job.id, status="running")
    with pytest.raises(export.ExportError, match="is running: only a completed job has a model to export or push"):
        push_job(store.get_job(finished_job.id), "alice/demo", engine.settings, token=TOKEN)
    assert fake_hub.requests == []


def test_upload_files_skips_checkpoints_optimizer_states_training_args_logs_the_merged_copy_and_the_old_readme(tmp_path):
    folder = tmp_path / "run"
    for name in ("adapter_model.safetensors", "README.md", "train.log", ".lock", "checkpoint-3/model.bin",
                 "runs/x/events", "merged/model.safetensors", "optimizer.pt", "rng_state_0.pth", "sub/README.md",
                 "ref/adapter_model.safetensors", "evaluation-base.json", "reward_model/adapter_model.safetensors",
                 "training_args.bin"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    assert [p.relative_to(folder).as_posix() for p in upload_files(folder)] == [
        "adapter_model.safetensors", "reward_model/adapter_model.safetensors", "sub/README.md"
    ]  # an rlhf job's reward model goes with its policy


def run_push_cli(*args, settings):
    env = {**os.environ, "MODELFORGE_HOME": str(settings.home), "PYTHONPATH": str(ROOT), "HF_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "modelforge", "push", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


def test_push_command_creates_then_updates_with_yes_and_exits_2_on_user_errors(finished_job, settings, fake_hub):
    fake_hub.add_account(TOKEN, "alice")
    job = str(finished_job.id)

    created = run_push_cli(job, "demo", settings=settings)
    assert created.returncode == 0, created.stderr
    assert f"created {fake_hub.url}/alice/demo (private)" in created.stdout
    assert "[100%] done" in created.stderr

    again = run_push_cli(job, "demo", "--public", settings=settings)
    assert again.returncode == 2 and "already exists on the Hub (private)" in again.stderr
    updated = run_push_cli(job, "demo", "--yes", settings=settings)
    assert updated.returncode == 0 and f"updated {fake_hub.url}/alice/demo (private)" in updated.stdout
    assert len(fake_hub.repos["alice/demo"].commits) == 2

    refused = run_push_cli(job, "bob/demo", settings=settings)
    assert refused.returncode == 2 and "bob/demo belongs to 'bob'" in refused.stderr
    for result in (again, refused):
        assert "Traceback" not in result.stderr and TOKEN not in result.stderr + result.stdout
