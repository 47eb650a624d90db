"""The Hub tab through the running app's API, pushing to the local fake Hub: clear errors, confirmation of an
existing repo, and the merged export with its push."""

from pathlib import Path

TOKEN = "hf_NeverStoreThisSecret0123456789"


def push(client, job_id, repo_id="alice/demo", what="LoRA adapter", private=True, token=TOKEN, license="", confirm=False):
    return client.predict(job_id=job_id, what=what, repo_id=repo_id, private=private, token=token, license=license,
                          confirm_existing=confirm, api_name="/hub_push")


def test_hub_push_shows_clear_errors(engine, finished_job, app_client, fake_hub):
    job = finished_job
    assert app_client.predict(api_name="/hub_jobs")["choices"] == [[f"#{job.id} playground-lora", job.id]]
    assert push(app_client, None) == "**Push failed:** choose a finished job to push."
    assert push(app_client, job.id, repo_id=" ") == "**Push failed:** type a repo id, e.g. your-name/my-model."
    assert push(app_client, job.id, token="").startswith(
        "**Push failed:** No Hugging Face token: paste a token with write access"
    )
    result = push(app_client, job.id)  # the fake Hub knows no account for this token
    assert result.startswith("**Push failed:** The Hugging Face token was rejected") and TOKEN not in result
    fake_hub.add_account(TOKEN, "alice")
    assert "belongs to 'bob'" in push(app_client, job.id, repo_id="bob/demo")
    refused = app_client.predict(job_id=None, api_name="/hub_export")
    assert refused == "**Export failed:** choose a finished job to export."
    assert fake_hub.repos == {}
    for path in engine.settings.home.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path


def test_push_creates_a_private_repo_then_updates_it_only_when_confirmed(finished_job, app_client, fake_hub):
    fake_hub.add_account(TOKEN, "alice")

    created = push(app_client, finished_job.id)

    url = f"{fake_hub.url}/alice/demo"
    assert created.startswith(f"Pushed to [{url}]({url}): a new private repo")
    repo = fake_hub.repos["alice/demo"]
    assert repo.private and {"adapter_model.safetensors", "README.md"} <= set(repo.files)

    refused = push(app_client, finished_job.id)
    assert refused.startswith("**Push failed:** alice/demo already exists on the Hub (private)")
    assert "tick 'Update an existing repo'" in refused and len(repo.commits) == 1

    updated = push(app_client, finished_job.id, confirm=True)
    assert "a new commit in the existing private repo" in updated and len(repo.commits) == 2


def test_export_merged_in_a_child_process_then_push_it(finished_job, app_client, fake_hub):
    fake_hub.add_account(TOKEN, "alice")

    exported = app_client.predict(job_id=finished_job.id, api_name="/hub_export")

    folder = Path(finished_job.output_dir) / "merged"
    assert exported.startswith(f"Merged model saved to `{folder}`")
    assert (folder / "model.safetensors").is_file() and (folder / "chat_template.jinja").is_file()

    pushed = push(app_client, finished_job.id, repo_id="merged", what="merged model", private=False, license="mit")
    assert "a new public repo" in pushed
    repo = fake_hub.repos["alice/merged"]
    assert not repo.private
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= set(repo.files)
    assert "adapter_config.json" not in repo.files
    assert b"license: mit" in repo.files["README.md"]


def test_export_gguf_in_a_child_process_shows_its_parity_with_the_tuned_model(finished_job, app_client):
    assert app_client.predict(job_id=None, quant="q8_0", api_name="/hub_export_gguf") == (
        "**GGUF export failed:** choose a finished job to export."
    )

    shown = app_client.predict(job_id=finished_job.id, quant="q8_0", api_name="/hub_export_gguf")

    folder = Path(finished_job.output_dir) / "gguf"
    assert shown.startswith(f"GGUF file `{folder / 'playground-lora-q8_0.gguf'}` (1.1 MB) and Ollama Modelfile "
                            f"`{folder / 'Modelfile.q8_0'}`")
    # finished_job's fresh adapter changes nothing: its answers are the demo model's, which stop clearly.
    assert "greedy exact match **100%**, token agreement **100.0%**, prompt tokens identical 100%" in shown
    assert "| red blue green | ' red blue green</s>' | ' red blue green</s>' |" in shown
