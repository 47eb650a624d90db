"""The Playground tab through the running app's API: list finished jobs, load one, chat, unload."""

import pytest
from gradio_client.exceptions import AppError

from modelforge.db import Job


def test_playground_lists_loads_chats_and_unloads(engine, finished_job, app_client):
    job = finished_job
    Job.create(name="broken", config=job.config, status="failed", output_dir=job.output_dir)

    assert app_client.predict(api_name="/playground_jobs")["choices"] == [[f"#{job.id} playground-lora", job.id]]
    with pytest.raises(AppError, match="No model is ready"):
        app_client.predict("hello", [], 8, 0, 0.95, api_name="/playground_chat")

    assert app_client.predict(job.id, "", api_name="/playground_load") == f"ready: #{job.id} playground-lora"
    streaming = app_client.submit("reverse: cat dog bird", [], 12, 0, 0.95, api_name="/playground_chat")
    history, textbox = streaming.result()
    assert textbox == ""
    assert [message["role"] for message in history] == ["user", "assistant"]
    assert history[-1]["content"][0]["text"].strip()
    assert len(streaming.outputs()) > 2  # the user's message first, then the reply as it grows

    assert app_client.predict(api_name="/playground_unload") == "no model loaded"
    with pytest.raises(AppError, match="No model is ready"):
        app_client.predict("hello", history, 8, 0, 0.95, api_name="/playground_chat")


def test_playground_explains_what_to_choose_and_bad_models(app_client, tmp_path):
    assert app_client.predict(None, "", api_name="/playground_load") == (
        "Choose a finished job, or type a model folder or hub id."
    )
    status = app_client.predict(None, str(tmp_path / "missing"), api_name="/playground_load")
    assert status.startswith("error: Model folder") and "missing" in status
