"""Hub tab: push a finished job's model, with a generated model card, to the Hugging Face Hub.

The token typed here is passed to one push and never stored.
"""

from __future__ import annotations

import logging
from functools import partial

import gradio as gr

from modelforge import hub
from modelforge.errors import ModelForgeError
from modelforge.ui.playground_tab import job_choices, refresh_jobs

log = logging.getLogger(__name__)


def push(engine, job_id: int | None, repo_id: str, private: bool, token: str, progress=gr.Progress()) -> str:
    if job_id is None:
        return "**Push failed:** choose a finished job to push."
    if not repo_id.strip():
        return "**Push failed:** type a repo id, e.g. your-name/my-model."
    try:
        url = hub.push_job(
            engine.get_job(job_id),
            repo_id,
            token=token.strip() or None,
            private=private,
            progress=lambda fraction, message: progress(fraction, desc=message),
        )
    except ModelForgeError as exc:
        return f"**Push failed:** {exc}"
    except Exception as exc:  # the UI boundary: record it, show it without the token
        log.exception("push of job %s to %s failed", job_id, repo_id)
        detail = str(exc).replace(token, "<token>") if token else str(exc)
        return f"**Push failed unexpectedly:** {type(exc).__name__}: {detail}"
    return f"Pushed to [{url}]({url}) ({'private' if private else 'public'})."


def build(engine) -> list:
    """Builds the tab; returns (function, outputs) pairs the app runs when a page loads."""
    with gr.Row():
        job = gr.Dropdown(choices=job_choices(engine), value=None, label="Finished job", scale=3)
        refresh = gr.Button("↻ Refresh jobs", scale=1)
    repo_id = gr.Textbox(label="Repo id", placeholder="your-name/my-model")
    private = gr.Checkbox(value=True, label="Private repo")
    token = gr.Textbox(
        label="Hugging Face token (write access)",
        type="password",
        placeholder="hf_… — leave empty to use HF_TOKEN or the server's `hf auth login`; never stored",
    )
    push_button = gr.Button("Push to Hub", variant="primary")
    result = gr.Markdown()

    refresh.click(partial(refresh_jobs, engine), outputs=job, api_name="hub_jobs")
    push_button.click(partial(push, engine), inputs=[job, repo_id, private, token], outputs=result, api_name="hub_push")
    return [(partial(refresh_jobs, engine), job)]
