"""Playground tab: a finished job's model beside its base model, given the same input and generation settings.

The inputs follow the task: a conversation for chat and text generation, a document for summarization, a context and
a question for extractive QA (the answer is highlighted in the context). The model is loaded once for the whole
server (the engine's ModelHost); each browser keeps its own conversations.
"""

from __future__ import annotations

import logging
from functools import partial

import gradio as gr

from modelforge.accounts import Account
from modelforge.errors import ModelForgeError
from modelforge.tasks import DEFAULT_TASK, TASKS
from modelforge.ui import finished_jobs
from modelforge.ui.session import as_user, signed_in_only

log = logging.getLogger(__name__)

ANSWER_LABEL = "answer"


def job_task(engine, account: Account, job_id: int | None):
    """A chosen job decides the inputs shown: its task."""
    return engine.job_config(engine.get_job(job_id, account)).task if job_id is not None else gr.skip()


def input_groups(task: str) -> tuple:
    """Visibility of the chat, summarization and QA inputs for `task`: those of its model family."""
    return tuple(gr.update(visible=TASKS[task].family == family) for family in ("causal", "seq2seq", "qa"))


def side_by_side_columns(side_by_side: bool) -> tuple:
    return tuple(gr.update(visible=side_by_side) for _ in range(3))


def load(engine, account: Account, job_id: int | None, model_text: str, task: str, side_by_side: bool):
    """Start loading the chosen model and report the status until the load ends (the load runs on without us).

    Each step also sets the Send button: disabled from the moment a load starts until a model is ready."""
    try:
        name = engine.load_model(job_id, model_text, task, side_by_side, account)
    except ModelForgeError as exc:
        yield f"error: {exc}", _send_button(engine)
        return
    except Exception as exc:  # the UI boundary: show the failure, keep the server up
        log.exception("choosing the model to load failed")
        yield f"error: {type(exc).__name__}: {exc}", _send_button(engine)
        return
    if name is None:
        yield "Choose a finished job, or type a model folder or hub id.", _send_button(engine)
        return
    # Said even when a small model is ready before this line: every load shows Send disabled until it ends.
    yield f"loading {name}…", gr.update(interactive=False)
    while engine.model_loading():
        yield engine.wait_for_model(timeout=1.0), gr.update(interactive=False)
    yield engine.model_status(), _send_button(engine)


def _send_button(engine):
    """Send is enabled only while a model is ready to answer."""
    return gr.update(interactive=engine.model_status().startswith("ready"))


def model_state(engine):
    """The shared model's status line and whether Send is enabled."""
    return engine.model_status(), _send_button(engine)


def unload(engine):
    return engine.unload_model(), gr.update(interactive=False)


def _ui_error(exc: Exception, what: str) -> gr.Error:
    if isinstance(exc, ModelForgeError):  # the user's to fix: said on the page, one line in the log
        log.info("%s refused: %s", what, exc)
        return gr.Error(str(exc), print_exception=False)
    log.exception("%s failed", what)  # the UI boundary: show the failure, keep the server up
    return gr.Error(f"{what} failed: {type(exc).__name__}: {exc}")


def chat(engine, message, base_history, tuned_history, side_by_side, max_new_tokens, temperature, top_p):
    """Stream both models' replies to `message`: the base model's first, then the tuned model's; clears the textbox.

    A send that fails (no model ready, a reload under way, a generation error) is taken back: both conversations
    return to what they were, the message returns to the textbox, and the notice line (and a toast) says why, so
    the next send is not spoiled by a question left without its answer."""
    before = (base_history or [], tuned_history or [])
    if not message.strip():
        yield *before, message, ""
        return
    answering = ("base", "tuned") if side_by_side else ("tuned",)
    conversations = dict(zip(("base", "tuned"), before))
    for which in answering:
        conversations[which] = [*conversations[which], {"role": "user", "content": message}]
    try:
        engine.check_model_ready()  # a send while nothing is loaded or a model reloads is refused before it shows
        yield conversations["base"], conversations["tuned"], "", ""
        for which in answering:
            history = conversations[which]
            reply = ""
            for reply in engine.stream_reply(history, max_new_tokens, temperature, top_p, which=which):
                conversations[which] = [*history, {"role": "assistant", "content": reply}]
                yield conversations["base"], conversations["tuned"], "", ""
            conversations[which] = [*history, {"role": "assistant", "content": reply}]
    except Exception as exc:
        reason = _ui_error(exc, "Generation").message
        gr.Warning(reason)
        yield *before, message, f"⚠️ Not sent: {reason}"
        return
    yield conversations["base"], conversations["tuned"], "", ""


def summarize(engine, document, side_by_side, max_new_tokens, temperature, top_p):
    """Stream both models' summaries of `document`."""
    if not document.strip():
        raise gr.Error("Paste a document to summarize.")
    summaries = {"base": "", "tuned": ""}
    for which in ("base", "tuned") if side_by_side else ("tuned",):
        try:
            document_message = [{"role": "user", "content": document}]
            for text in engine.stream_reply(document_message, max_new_tokens, temperature, top_p, which=which):
                summaries[which] = text
                yield summaries["base"], summaries["tuned"]
        except Exception as exc:
            raise _ui_error(exc, "Summarization") from None
    yield summaries["base"], summaries["tuned"]


def highlighted(context: str, answer: dict) -> list[tuple[str, str | None]]:
    """The context split around the answer's span, the span labelled, for gr.HighlightedText."""
    start, end = answer["start"], answer["end"]
    pieces = [(context[:start], None), (context[start:end], ANSWER_LABEL), (context[end:], None)]
    return [piece for piece in pieces if piece[0]]


def answer(engine, question, context, side_by_side):
    """Each model's answer span, highlighted in the context."""
    if not question.strip() or not context.strip():
        raise gr.Error("Give both a context and a question.")
    results = {"base": None, "tuned": None}
    for which in ("base", "tuned") if side_by_side else ("tuned",):
        try:
            results[which] = highlighted(context, engine.answer_question(question, context, which))
        except Exception as exc:
            raise _ui_error(exc, "Answering") from None
    return results["base"], results["tuned"]


def build(engine) -> list:
    """Builds the tab; returns (function, outputs) pairs the app runs when a page loads."""
    with gr.Row():
        job, fill_jobs = finished_jobs.picker(engine, api_name="playground_jobs")
        model_text = gr.Textbox(
            label="…or a model folder / hub id", placeholder="e.g. Qwen/Qwen2.5-0.5B-Instruct", scale=3
        )
        task = gr.Dropdown(list(TASKS), value=DEFAULT_TASK, label="Task", scale=2)
    with gr.Row():
        side_by_side = gr.Checkbox(True, label="Side by side with the base model", elem_id="side-by-side")
        load_button = gr.Button("Load", variant="primary")
        unload_button = gr.Button("Unload")
    status = gr.Textbox(label="Model", interactive=False)
    with gr.Group(visible=True) as chat_group:
        with gr.Row():
            base_chat = gr.Chatbot(label="Base model", height=380, elem_id="base-chat")
            tuned_chat = gr.Chatbot(label="Tuned model", height=380, elem_id="tuned-chat")
        with gr.Row():
            message = gr.Textbox(
                label="Message", placeholder="Type a message and press Enter: both models answer it", scale=5
            )
            send_button = gr.Button("Send", interactive=False, scale=1, elem_id="send")
        notice = gr.Markdown(elem_id="chat-notice")
    with gr.Group(visible=False) as summary_group:
        document = gr.Textbox(label="Document", lines=8, placeholder="Paste the text to summarize")
        summarize_button = gr.Button("Summarize")
        with gr.Row():
            base_summary = gr.Textbox(label="Base model's summary", lines=4, interactive=False)
            tuned_summary = gr.Textbox(label="Tuned model's summary", lines=4, interactive=False)
    with gr.Group(visible=False) as qa_group:
        context = gr.Textbox(label="Context", lines=6, placeholder="The text that holds the answer")
        question = gr.Textbox(label="Question")
        ask_button = gr.Button("Find the answer")
        with gr.Row():
            colors = {ANSWER_LABEL: "#fde047"}
            base_answer = gr.HighlightedText(label="Base model's answer", color_map=colors, elem_id="base-answer")
            tuned_answer = gr.HighlightedText(label="Tuned model's answer", color_map=colors, elem_id="tuned-answer")
    with gr.Accordion("Generation settings (the same for both models)", open=False):
        settings = [
            gr.Slider(1, 2048, value=256, step=1, label="Max new tokens"),
            gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)"),
            gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p"),
        ]

    job.change(as_user(engine, job_task), job, task, api_name=False)
    task.change(input_groups, task, [chat_group, summary_group, qa_group], api_name=False)
    side_by_side.change(side_by_side_columns, side_by_side, [base_chat, base_summary, base_answer], api_name=False)
    load_button.click(
        as_user(engine, load), inputs=[job, model_text, task, side_by_side], outputs=[status, send_button],
        api_name="playground_load",
    )
    unload_button.click(signed_in_only(engine, unload), outputs=[status, send_button], api_name="playground_unload")
    send = dict(inputs=[message, base_chat, tuned_chat, side_by_side, *settings],
                outputs=[base_chat, tuned_chat, message, notice])
    send_message = signed_in_only(engine, chat)
    message.submit(send_message, **send, api_name="playground_chat")
    send_button.click(send_message, **send, api_name=False)
    summarize_button.click(
        signed_in_only(engine, summarize), [document, side_by_side, *settings], [base_summary, tuned_summary],
        api_name="playground_summarize",
    )
    ask_button.click(
        signed_in_only(engine, answer), [question, context, side_by_side], [base_answer, tuned_answer], api_name="playground_answer"
    )
    # The model is shared by every user: keep this browser's status line true when someone else loads or unloads.
    state = partial(model_state, engine)
    gr.Timer(2.0).tick(state, outputs=[status, send_button], show_progress="hidden", queue=False, api_visibility="private")
    return [fill_jobs, (state, [status, send_button])]
