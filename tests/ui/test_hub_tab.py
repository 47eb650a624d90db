"""The Hub tab through the running app's API: choose a finished job, push, see a clear error."""

from huggingface_hub import constants


TOKEN = "hf_NeverStoreThisSecret0123456789"


def test_hub_push_shows_clear_errors(engine, finished_job, app_client, monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGINGFACE_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    job = finished_job

    assert app_client.predict(api_name="/hub_jobs")["choices"] == [[f"#{job.id} playground-lora", job.id]]
    assert app_client.predict(None, "alice/demo", True, "", api_name="/hub_push") == (
        "**Push failed:** choose a finished job to push."
    )
    result = app_client.predict(job.id, "alice/demo", True, "", api_name="/hub_push")
    assert result.startswith("**Push failed:** No Hugging Face token: paste a token with write access")

    result = app_client.predict(job.id, "alice/demo", True, TOKEN, api_name="/hub_push")  # tests run offline
    assert "Hub is unreachable" in result and TOKEN not in result
    for path in engine.settings.home.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
