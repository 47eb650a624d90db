"""Hardware tab: what this machine has, the models that suit it, and whether a training setup fits in its memory."""

from __future__ import annotations

from functools import partial

import gradio as gr

from modelforge.errors import ModelForgeError
from modelforge.fit import FITS, METHODS, NO_FIT, PRECISION_BYTES, TIGHT, FitSetup, format_gb, format_params
from modelforge.hardware import PROFILES
from modelforge.tasks import DEFAULT_TASK, TASKS

RECOMMENDED_COLUMNS = ["model", "params (B)", "method", "note"]
BREAKDOWN_COLUMNS = ["part", "GB"]
VERDICT_MARKS = {FITS: "✅", TIGHT: "⚠️", NO_FIT: "❌"}


def report_markdown(report, home) -> str:
    """A HardwareReport for the page: the profile, the GPUs, CPU, memory and disk, and what to look out for."""
    facts = report.to_dict()
    lines = [f"### Profile: {facts['profile']}", PROFILES[facts["profile"]], ""]
    if report.gpus:
        lines += ["| GPU | name | memory | free | driver | CUDA | compute capability | bf16 |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {gpu.index} | {gpu.name} | {gpu.memory_total_gb:.1f} GB | {gpu.memory_free_gb:.1f} GB | "
                  f"{gpu.driver} | {gpu.cuda} | {gpu.compute_capability} | {'yes' if gpu.bf16 else 'no'} |"
                  for gpu in report.gpus]
    else:
        lines.append(f"**GPU:** none: {report.gpu_error}")
    lines += [
        "",
        f"**CPU cores:** {report.cpu_cores} · **RAM:** {report.ram_available_gb:.1f} GB available of "
        f"{report.ram_total_gb:.1f} GB · **free disk** ({home}): {report.disk_free_gb:.1f} GB",
        f"**torch:** {report.torch or 'not installed'} · **memory for training:** "
        f"{facts['memory_budget_gb']:.1f} GB ({facts['memory_budget']})",
    ]
    lines += [f"- ⚠️ {warning}" for warning in report.warnings]
    return "\n".join(lines)


def recommended_rows(engine, facts: dict, task: str) -> list[list]:
    return [[model["id"], model["params_b"], model["method"], model["note"]]
            for model in engine.recommended_models(facts["profile"], task)]


def fit_outputs(estimate) -> tuple[list[list], str, str]:
    """The breakdown rows, the verdict and the suggestions, as the tab shows them."""
    shape = estimate.shape
    about = f"{shape.source}; {format_params(estimate.trainable_params)} trainable ({METHODS[estimate.setup.method]})"
    if estimate.budget_gb:
        verdict = (f"### {VERDICT_MARKS[estimate.verdict]} {estimate.verdict}: about "
                   f"{format_gb(estimate.total_gb)} of {format_gb(estimate.budget_gb)}\n{about}")
    else:
        verdict = f"### about {format_gb(estimate.total_gb)} (enter the memory available for a verdict)\n{about}"
    if estimate.suggestions:
        suggestions = "**What would make it fit:**\n" + "\n".join(f"- {s.text}" for s in estimate.suggestions)
    elif estimate.verdict == NO_FIT:
        suggestions = "Nothing within reach fits: use a machine with more memory."
    else:
        suggestions = ""
    return estimate.rows(), verdict, suggestions


def hardware_report(engine) -> tuple[str, dict]:
    """This machine's report, as markdown and as the facts the form is filled from."""
    report = engine.hardware_report()
    return report_markdown(report, engine.settings.home), report.to_dict()


def apply_report(engine, facts: dict, task: str):
    """Fill the form for this machine: its models, its memory and the precision and checkpointing `auto` picks."""
    models = [model["id"] for name in TASKS for model in engine.recommended_models(facts["profile"], name)]
    choices = list(dict.fromkeys(models + engine.local_models()))
    first = engine.recommended_models(facts["profile"], task)[0]
    gpus = facts["gpus"]
    best_precision = ("fp32" if not gpus else
                      "bf16" if all(int(gpu["compute_capability"].split(".")[0]) >= 8 for gpu in gpus) else "fp16")
    return (recommended_rows(engine, facts, task),
            gr.Dropdown(choices=choices, value=first["id"]),
            gr.Radio(value=first["method"]),
            gr.Radio(value=best_precision),
            gr.Checkbox(value=bool(gpus)),
            gr.Number(value=round(facts["memory_budget_gb"], 1), info=f"detected: {facts['memory_budget']}"))


def recommended_for(engine, facts: dict | None, task: str) -> list[list]:
    """The recommended models of another task, once the report is in."""
    return recommended_rows(engine, facts, task) if facts else []


def fit_estimate(engine, model, params_b, method, precision, batch_size, seq_length, lora_rank, checkpointing, budget_gb):
    """The breakdown, verdict and suggestions of the setup; the detected memory when no budget is entered."""
    try:
        setup = FitSetup(method=method, precision=precision, batch_size=int(batch_size), seq_length=int(seq_length),
                         lora_rank=int(lora_rank), gradient_checkpointing=bool(checkpointing))
        estimate = engine.estimate_fit(model, params_b, setup, budget_gb)
    except (ModelForgeError, TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from None
    return fit_outputs(estimate)


def build(engine) -> None:
    report_md = gr.Markdown()
    refresh = gr.Button("Refresh", size="sm")
    with gr.Accordion("Report as JSON", open=False):
        report_json = gr.JSON()

    gr.Markdown("## Recommended models")
    task = gr.Dropdown(choices=list(TASKS), value=DEFAULT_TASK, label="Task")
    recommended = gr.Dataframe(headers=RECOMMENDED_COLUMNS, interactive=False, label="For this machine's profile")

    gr.Markdown("## Will it fit?")
    with gr.Row():
        model = gr.Dropdown(label="Model", allow_custom_value=True,
                            info="a recommended model, a model folder of the data folder, or a local path")
        params_b = gr.Number(label="Parameters (billions)", info="overrides the model's count; alone, any model")
        budget = gr.Number(label="Memory available (GB)", info="detected on load; change it to plan another machine")
    with gr.Row():
        method = gr.Radio(choices=[(label, key) for key, label in METHODS.items()], value="lora", label="Method")
        precision = gr.Radio(choices=list(PRECISION_BYTES), value="bf16", label="Precision",
                             info="fp32 on a CPU; bf16 on Ampere or newer GPUs, else fp16")
        checkpointing = gr.Checkbox(value=True, label="Gradient checkpointing")
    with gr.Row():
        batch_size = gr.Number(value=1, precision=0, minimum=1, label="Batch size")
        seq_length = gr.Number(value=512, precision=0, minimum=8, label="Sequence length (max_length)")
        lora_rank = gr.Number(value=16, precision=0, minimum=1, label="LoRA rank")
    estimate_button = gr.Button("Estimate", variant="primary")
    verdict = gr.Markdown()
    breakdown = gr.Dataframe(headers=BREAKDOWN_COLUMNS, interactive=False, label="Memory by part")
    suggestions = gr.Markdown()

    profile_outputs = [recommended, model, method, precision, checkpointing, budget]
    report, fill = partial(hardware_report, engine), partial(apply_report, engine)
    refresh.click(report, outputs=[report_md, report_json], api_name="hardware_report").then(
        fill, inputs=[report_json, task], outputs=profile_outputs, api_visibility="private")
    gr.on(None, report, outputs=[report_md, report_json], api_visibility="private").then(
        fill, inputs=[report_json, task], outputs=profile_outputs, api_visibility="private")
    task.change(partial(recommended_for, engine), inputs=[report_json, task], outputs=recommended, api_visibility="private")
    estimate_button.click(
        partial(fit_estimate, engine),
        inputs=[model, params_b, method, precision, batch_size, seq_length, lora_rank, checkpointing, budget],
        outputs=[breakdown, verdict, suggestions],
        api_name="fit_estimate",
    )
