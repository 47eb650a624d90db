"""Playground tab: chat with a finished job's model, or with any model folder or hub id.

The model is loaded once for the whole server (a ModelHost on the engine); each browser keeps its own conversation
in its Chatbot.
"""

from __future__ import annotations

import logging
from functools import partial

import gradio as gr

from modelforge.errors import ModelForgeError
from modelforge.inference import ModelHost, job_source, path_source

log = logging.getLogger(__name__)


def job_choices(engine) -> list[tuple[str, int]]:
    """The completed jobs, newest first, as (label, job id) dropdown choices."""
    return [(f"#{job.id} {job.name}", job.id) for job in engine.completed_jobs()]


def refresh_jobs(engine) -> gr.Dropdown:
    return gr.Dropdown(choices=job_choices(engine))


def load(engine, host: ModelHost, job_id: int | None, model_text: str):
    """Start loading the chosen model and report the status until the load ends (the load runs on without us)."""
    try:
        if model_text and model_text.strip():
            source = path_source(model_text)
        elif job_id is not None:
            source = job_source(engine.get_job(job_id), engine.settings)
        else:
            yield "Choose a finished job, or type a model folder or hub id."
            return
        yield host.load(source)
    except ModelForgeError as exc:
        yield f"error: {exc}"
        return
    except Exception as exc:  # the UI boundary: show the failure, keep the server up
        log.exception("choosing the model to load failed")
        yield f"error: {type(exc).__name__}: {exc}"
        return
    while host.loading:
        yield host.wait(timeout=1.0)
    yield host.status()


def chat(host: ModelHost, message: str, history: list, max_new_tokens: int, temperature: float, top_p: float):
    """Stream the model's reply to `message` into this browser's conversation; clears the textbox."""
    if not message.strip():
        yield history, message
        return
    history = [*(history or []), {"role": "user", "content": message}]
    yield history, ""
    reply = ""
    try:
        for reply in host.stream(history, max_new_tokens, temperature, top_p):
            yield [*history, {"role": "assistant", "content": reply}], ""
    except ModelForgeError as exc:
        raise gr.Error(str(exc)) from None
    except Exception as exc:  # the UI boundary: show the failure, keep the server up
        log.exception("chat failed")
        raise gr.Error(f"Generation failed: {type(exc).__name__}: {exc}") from None
    if not reply:
        yield [*history, {"role": "assistant", "content": ""}], ""


def build(engine) -> list:
    """Builds the tab; returns (function, outputs) pairs the app runs when a page loads."""
    host = engine.model_host
    with gr.Row():
        job = gr.Dropdown(choices=job_choices(engine), value=None, label="Finished job", scale=3)
        refresh = gr.Button("↻ Refresh jobs", scale=1)
        model_text = gr.Textbox(
            label="…or a model folder / hub id", placeholder="e.g. Qwen/Qwen2.5-0.5B-Instruct", scale=3
        )
    with gr.Row():
        load_button = gr.Button("Load", variant="primary")
        unload_button = gr.Button("Unload")
    status = gr.Textbox(label="Model", interactive=False)
    chatbot = gr.Chatbot(label="Chat", height=420)
    message = gr.Textbox(label="Message", placeholder="Type a message and press Enter")
    with gr.Accordion("Generation settings", open=False):
        max_new_tokens = gr.Slider(1, 2048, value=256, step=1, label="Max new tokens")
        temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0 = greedy)")
        top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")

    refresh.click(partial(refresh_jobs, engine), outputs=job, api_name="playground_jobs")
    load_button.click(
        partial(load, engine, host),
        inputs=[job, model_text],
        outputs=status,
        api_name="playground_load",
    )
    unload_button.click(host.unload, outputs=status, api_name="playground_unload")
    message.submit(
        partial(chat, host),
        inputs=[message, chatbot, max_new_tokens, temperature, top_p],
        outputs=[chatbot, message],
        api_name="playground_chat",
    )
    # The model is shared by every user: keep this browser's status line true when someone else loads or unloads.
    gr.Timer(2.0).tick(host.status, outputs=status, show_progress="hidden", queue=False, api_visibility="private")
    return [(partial(refresh_jobs, engine), job), (host.status, status)]
