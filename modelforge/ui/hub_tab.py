"""Hub tab: export a finished job's merged model, or a GGUF file and Ollama Modelfile checked for parity with the
tuned model, and push its adapter or merged model with a model card to the Hugging Face Hub.

The token typed here is passed to one push and never stored.
"""

from __future__ import annotations

import logging

import gradio as gr

from modelforge.accounts import Account
from modelforge.errors import ModelForgeError
from modelforge.ui import finished_jobs
from modelforge.ui.session import as_user

log = logging.getLogger(__name__)

ADAPTER, MERGED = "LoRA adapter", "merged model"


def export_merged(engine, account: Account, job_id: int | None, progress=gr.Progress()) -> str:
    if job_id is None:
        return "**Export failed:** choose a finished job to export."
    try:
        folder = engine.export_merged(
            job_id, progress=lambda fraction, message: progress(fraction, desc=message), account=account
        )
    except ModelForgeError as exc:
        return f"**Export failed:** {exc}"
    except Exception as exc:  # the UI boundary: record it, show it
        log.exception("export of job %s failed", job_id)
        return f"**Export failed unexpectedly:** {type(exc).__name__}: {exc}"
    return f"Merged model saved to `{folder}`: a standalone model that plain transformers `from_pretrained` loads."


def export_gguf(engine, account: Account, job_id: int | None, quant: str, progress=gr.Progress()) -> str:
    if job_id is None:
        return "**GGUF export failed:** choose a finished job to export."
    try:
        result = engine.export_gguf(
            job_id, quant, progress=lambda fraction, message: progress(fraction, desc=message), account=account
        )
    except ModelForgeError as exc:
        return f"**GGUF export failed:** {exc}"
    except Exception as exc:  # the UI boundary: record it, show it
        log.exception("GGUF export of job %s failed", job_id)
        return f"**GGUF export failed unexpectedly:** {type(exc).__name__}: {exc}"
    parity = result.parity
    lines = [
        f"GGUF file `{result.gguf}` ({result.size / 1e6:.1f} MB) and Ollama Modelfile `{result.modelfile}` "
        f"(`ollama create NAME -f {result.modelfile.name}` in that folder).",
        "",
        f"**Parity with the tuned model** ({parity['prompts']} fixed prompts, {parity['runner']}): "
        f"greedy exact match **{parity['exact_match']:.0%}**, token agreement **{parity['token_agreement']:.1%}**, "
        f"prompt tokens identical {parity['prompt_tokens_match']:.0%}.",
        "",
        "| prompt | tuned model | GGUF file |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {row['prompt']} | {row['tuned']!r} | {row['gguf']!r} |" for row in parity["examples"]]
    return "\n".join(lines)


def push(
    engine,
    account: Account,
    job_id: int | None,
    what: str,
    repo_id: str,
    private: bool,
    token: str,
    license: str,
    confirm_existing: bool,
    progress=gr.Progress(),
) -> str:
    if job_id is None:
        return "**Push failed:** choose a finished job to push."
    if not repo_id.strip():
        return "**Push failed:** type a repo id, e.g. your-name/my-model."
    try:
        result = engine.push_to_hub(
            job_id,
            repo_id,
            account=account,
            token=token.strip() or None,
            private=private,
            merged=what == MERGED,
            confirm_existing=confirm_existing,
            license=license.strip() or None,
            progress=lambda fraction, message: progress(fraction, desc=message),
        )
    except ModelForgeError as exc:
        return f"**Push failed:** {exc}"
    except Exception as exc:  # the UI boundary: record it, show it without the token
        log.exception("push of job %s to %s failed", job_id, repo_id)
        detail = str(exc).replace(token, "<token>") if token else str(exc)
        return f"**Push failed unexpectedly:** {type(exc).__name__}: {detail}"
    state = "a new commit in the existing" if result.updated else "a new"
    visibility = "private" if result.private else "public"
    return (
        f"Pushed to [{result.url}]({result.url}): {state} {visibility} repo, "
        f"[commit]({result.commit_url}) of {len(result.files)} files."
    )


def build(engine) -> list:
    """Builds the tab; returns (function, outputs) pairs the app runs when a page loads."""
    with gr.Row():
        job, fill_jobs = finished_jobs.picker(engine, api_name="hub_jobs")
    what = gr.Radio(
        [ADAPTER, MERGED],
        value=ADAPTER,
        label="What to push",
        info="merged: the adapter merged into its base, a standalone model (exported first if need be). "
        "A full fine-tune is pushed as it is.",
    )
    with gr.Row():
        repo_id = gr.Textbox(label="Repo id", placeholder="your-name/my-model", scale=3)
        license = gr.Textbox(label="License (optional)", placeholder="e.g. apache-2.0", scale=1)
    with gr.Row():
        private = gr.Checkbox(value=True, label="Private repo (for a new repo; an existing one keeps its visibility)")
        confirm = gr.Checkbox(value=False, label="Update an existing repo (adds a new commit to it)")
    token = gr.Textbox(
        label="Hugging Face token (write access)",
        type="password",
        placeholder="hf_… — leave empty to use HF_TOKEN or the server's `hf auth login`; never stored",
    )
    with gr.Row():
        export_button = gr.Button("Export merged model")
        push_button = gr.Button("Push to Hub", variant="primary")
    with gr.Row():
        quant = gr.Dropdown(engine.gguf_quants(), value="q8_0", label="GGUF quantization", scale=1,
                            info="f16 keeps the weights; q8_0 ~half the size; k-quants smaller still")
        gguf_button = gr.Button("Export GGUF + Ollama Modelfile (with parity check)", scale=2)
    result = gr.Markdown()

    export_button.click(as_user(engine, export_merged), inputs=job, outputs=result, api_name="hub_export")
    gguf_button.click(as_user(engine, export_gguf), inputs=[job, quant], outputs=result, api_name="hub_export_gguf")
    push_button.click(
        as_user(engine, push),
        inputs=[job, what, repo_id, private, token, license, confirm],
        outputs=result,
        api_name="hub_push",
    )
    return [fill_jobs]
