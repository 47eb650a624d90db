"""Finetune tab: describe a job, queue it, and watch it live (state comes from the database, not the page)."""

from __future__ import annotations

from functools import partial
from typing import get_args

import gradio as gr
import pandas as pd

from modelforge.config import (
    DEFAULT_PRESET,
    PRESETS,
    DistributedConfig,
    DistributedStrategy,
    EvaluationConfig,
    JobConfig,
    LoraConfig,
    PreferenceConfig,
    PreferenceLoss,
    RlAlgorithm,
    TrainingConfig,
)
from modelforge.accounts import NOBODY
from modelforge.errors import ConfigError, ModelForgeError
from modelforge.fit import format_gb
from modelforge.formatting import duration
from modelforge.tasks import DEFAULT_TASK, TASKS
from modelforge.ui.charts import colour_after, curve_frame
from modelforge.ui.evaluation_table import EXAMPLE_COLUMNS, evaluation_table, example_rows
from modelforge.ui.ranks_table import ranks_markdown
from modelforge.ui.session import as_user

DEMO_MODEL = "built-in demo model"
NO_JOB = "No job yet: choose a dataset and press **Start training**."

LOSS_CHART = {"x": "step", "y": "value", "color": "series"}
RATE_CHART = {"x": "step", "y": "learning rate"}
SECTIONS = ("lora", "evaluation", "preference", "distributed", "sweep")  # prefixed in API names; training's fields are bare


def api_name(key: str) -> str:
    """A form field's parameter name in the app's API: its config key, training's fields bare (most of the form),
    another section's prefixed by it (`lora_r`, `distributed_strategy`). `lora` off is full fine-tuning."""
    return key.removeprefix("training.").replace(".", "_")


def config_key(name: str) -> str:
    """The config key of an API parameter name: api_name's inverse."""
    if name in TrainingConfig.model_fields:
        return f"training.{name}"
    section, _, field = name.partition("_")
    return f"{section}.{field}" if section in SECTIONS and field else name


# Advanced fields: (config key, component), in the order the API lists them after dataset, task, model, provider and
# strategy.
def _advanced_fields(preset: dict[str, dict]) -> list[tuple[str, gr.components.Component]]:
    """The fields, showing the defaults with `preset`'s values (preset_overrides) on top."""
    t, lo = TrainingConfig(**preset["training"]), LoraConfig(**preset["lora"])
    e, p, d = EvaluationConfig(), PreferenceConfig(), DistributedConfig()
    return [
        ("training.epochs", gr.Number(t.epochs, label="epochs", minimum=0.01)),
        ("training.max_steps", gr.Number(t.max_steps, label="max steps (-1: use epochs)", precision=0)),
        ("training.batch_size", gr.Number(t.batch_size, label="batch size", precision=0, minimum=1)),
        ("training.gradient_accumulation", gr.Number(t.gradient_accumulation, label="gradient accumulation", precision=0)),
        ("training.learning_rate", gr.Number(t.learning_rate, label="learning rate")),
        ("training.scheduler", gr.Dropdown(list(TrainingConfig.model_fields["scheduler"].annotation.__args__), value=t.scheduler, label="scheduler")),
        ("training.warmup_ratio", gr.Number(t.warmup_ratio, label="warm-up ratio")),
        ("training.max_length", gr.Number(t.max_length, label="max length (tokens)", precision=0)),
        ("training.eval_split", gr.Number(t.eval_split, label="eval split")),
        ("training.seed", gr.Number(t.seed, label="seed", precision=0)),
        ("training.precision", gr.Dropdown(["auto", "fp32", "fp16", "bf16"], value=t.precision, label="precision")),
        ("training.gradient_checkpointing", gr.Dropdown(["auto", True, False], value=t.gradient_checkpointing, label="gradient checkpointing")),
        ("training.packing", gr.Dropdown(["auto", True, False], value=t.packing, label="packing (auto: padding-free batches where the model keeps rows apart)")),
        ("training.save_steps", gr.Number(t.save_steps, label="checkpoint every N steps", precision=0)),
        ("training.logging_steps", gr.Number(t.logging_steps, label="log every N steps", precision=0)),
        ("lora", gr.Checkbox(True, label="LoRA (off: full fine-tuning)")),
        ("lora.r", gr.Number(lo.r, label="LoRA rank", precision=0)),
        ("lora.alpha", gr.Number(lo.alpha, label="LoRA alpha", precision=0)),
        ("lora.dropout", gr.Number(lo.dropout, label="LoRA dropout")),
        ("lora.target_modules", gr.Textbox(lo.target_modules, label="LoRA target modules (all-linear or comma-separated)")),
        ("quantization", gr.Dropdown(["none", "4bit", "8bit"], value="none", label="load the model in")),
        ("name", gr.Textbox("", label="run name (empty: generated)")),
        ("output_dir", gr.Textbox("", label="output folder under the data folder's runs/ (empty: the job's name)")),
        ("eval_dataset", gr.Textbox("", label="evaluation dataset (empty: hold out the eval split)")),
        ("evaluation.compare_base", gr.Checkbox(e.compare_base, label="score the base model too (before/after table)")),
        ("evaluation.max_samples", gr.Number(e.max_samples, label="held-out rows scored", precision=0, minimum=1)),
        ("evaluation.max_new_tokens", gr.Number(e.max_new_tokens, label="longest generated answer (tokens)", precision=0)),
        ("init_from", gr.Textbox("", label="preference strategies: start from a finished SFT job's id or an adapter folder (empty: the base)")),
        ("preference.beta", gr.Number(p.beta, label="preference: beta (dpo/kto/rlhf: how close to the reference; orpo: odds-ratio weight; simpo: ~2)")),
        ("preference.loss_type", gr.Dropdown(list(get_args(PreferenceLoss)), value=p.loss_type, label="dpo: loss type")),
        ("preference.rl_algorithm", gr.Dropdown(list(get_args(RlAlgorithm)), value=p.rl_algorithm, label="rlhf: online RL algorithm")),
        ("preference.num_generations", gr.Number(p.num_generations, label="rlhf: answers sampled per prompt", precision=0)),
        ("preference.max_completion_length", gr.Number(p.max_completion_length, label="rlhf: longest sampled answer (tokens)", precision=0)),
        ("preference.reward_model_steps", gr.Number(p.reward_model_steps, label="rlhf: reward model steps (-1: epochs)", precision=0)),
        ("distributed.num_processes", gr.Dropdown(["1", "2", "4", "8", "auto"], value=str(d.num_processes), allow_custom_value=True,
                                                  label="processes (GPUs) per machine; auto: one per GPU")),
        ("distributed.strategy", gr.Dropdown(list(get_args(DistributedStrategy)), value=d.strategy,
                                             label="multi-GPU strategy (auto: ddp)")),
        ("distributed.cpu_offload", gr.Checkbox(d.cpu_offload, label="fsdp/deepspeed: offload to CPU memory")),
        ("distributed.num_machines", gr.Number(d.num_machines, label="machines", precision=0, minimum=1)),
        ("distributed.main_process_ip", gr.Textbox("", label="machine 0's address (more than one machine)")),
        ("distributed.main_process_port", gr.Number(d.main_process_port, label="machine 0's port", precision=0)),
        ("distributed.gpu_ids", gr.Textbox("", label="GPUs to use, e.g. 0,1 (empty: all)")),
        ("sweep.learning_rate", gr.Textbox("", label="sweep learning rates, e.g. 1e-3, 3e-3 (one job each; empty: no sweep)")),
        ("sweep.lora_r", gr.Textbox("", label="sweep LoRA ranks, e.g. 4, 8 (one job each, times the rates; empty: no sweep)")),
    ]


def tracker_choices(engine) -> list[tuple[str, str]]:
    """The registry's trackers as (label, name): the label says why one cannot report here (not installed, off)."""
    return [(name if reason is None else f"{name}: {reason}", name) for name, _, reason in engine.trackers()]


def config_from_form(dataset, task, model, provider, strategy, keys: list[str], values: list) -> JobConfig:
    data: dict = {"dataset": dataset, "task": task, "provider": provider, "strategy": strategy, "training": {}, "lora": {}}
    if model and model != DEMO_MODEL:
        data["model"] = model.strip()
    form = dict(zip(keys, values))
    for key, value in form.items():
        if key == "lora" or value in (None, ""):
            continue
        if key == "quantization":
            data["quantization"] = None if value == "none" else value
        elif key == "lora.target_modules" and value.strip() != "all-linear":
            data["lora"]["target_modules"] = [part.strip() for part in value.split(",") if part.strip()]
        elif "." in key:
            section, field = key.split(".")
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value.strip() if isinstance(value, str) else value
    if not form.get("lora", True):
        data["lora"] = None
    return JobConfig.parse(data, "form")


def within_runs(config: JobConfig, settings) -> JobConfig:
    """The config with its output folder taken under the data folder's runs/: a page never writes elsewhere."""
    if not config.output_dir:
        return config
    runs = settings.runs_dir.resolve()
    chosen = (runs / config.output_dir).resolve()
    if not chosen.is_relative_to(runs) or chosen == runs:
        raise ConfigError(f"output_dir: {config.output_dir} is outside {runs}; give a folder name, e.g. my-run.")
    return config.model_copy(update={"output_dir": str(chosen)})


def _preset_values(preset: dict[str, dict], keys: list[str]) -> list:
    """Updates of the fields that `preset` (preset_overrides) sets; the others keep what the user entered."""
    updates = []
    for key in keys:
        section, _, field = key.partition(".")
        updates.append(preset[section][field] if field in preset.get(section, {}) else gr.skip())
    return updates


def fit_summary(estimate, split: str) -> str:
    """One line: the memory one process of the job needs, against this machine's, and how the job splits it."""
    processes = estimate.setup.processes
    how = f"{processes} processes, {split}" if processes > 1 else split
    budget = f" of {format_gb(estimate.budget_gb)}: **{estimate.verdict}**" if estimate.budget_gb else ""
    return f"**Will it fit?** about {format_gb(estimate.total_gb)} per GPU ({how}){budget} (details: Hardware tab)"


def _status_markdown(view: dict) -> str:
    total = view["total_steps"] or 0
    fraction = view["step"] / total if total else 0.0
    lines = [
        f"### Job #{view['id']} · {view['name']}",
        f"**{view['status']}** · stage: **{view['stage']}** · step {view['step']}/{total or '?'}"
        f" · ETA {duration(view['eta_seconds']) if view['status'] == 'running' else '-'}"
        f" · {view['tokens_per_second'] or 0:.0f} tokens/s",
        f"<progress value='{fraction:.4f}' max='1' style='width:100%'></progress>",
    ]
    if view["loss"] is not None:
        lines.append(f"loss {view['loss']:.4f}" + (f" · eval loss {view['eval_loss']:.4f}" if view["eval_loss"] is not None else ""))
    if view["error"]:
        lines.append(f"> {view['error'].splitlines()[0]}")
    if view["status"] == "completed":
        lines.append(f"Saved to `{view['output_dir']}`")
    lines.append(ranks_markdown(view))
    return "\n\n".join(lines)


def _curves(view: dict) -> tuple[list[dict], list[dict]]:
    losses, rates = [], []
    for point in view["points"]:
        if point["loss"] is not None:
            losses.append({"step": point["step"], "value": point["loss"], "series": "loss"})
        if point["eval_loss"] is not None:
            losses.append({"step": point["step"], "value": point["eval_loss"], "series": "eval loss"})
        if point["learning_rate"] is not None:
            rates.append({"step": point["step"], "learning rate": point["learning_rate"]})
    return losses, rates


def watch_job(engine, account, job_id):
    """What the page shows of the job it watches (None: the account's current job): (job id, status, loss curve,
    learning-rate curve, before/after table, held-out examples)."""
    if job_id is None:
        job = engine.current_job(account)
        job_id = job.id if job else None
    view, shown = None, NO_JOB
    if job_id is not None:
        try:
            view = engine.job_view(job_id, account)
        except ModelForgeError as exc:
            job_id, shown = None, f"**{exc}**"
    losses, rates = _curves(view) if view else ([], [])
    headers, rows = evaluation_table([view] if view else [])
    return (
        job_id,
        _status_markdown(view) if view else shown,
        curve_frame(LOSS_CHART, losses),
        curve_frame(RATE_CHART, rates),
        pd.DataFrame(rows, columns=headers),
        pd.DataFrame(example_rows(view) if view else [], columns=EXAMPLE_COLUMNS),
    )


def _form_config(dataset, task, model, provider, strategy, form: dict) -> JobConfig:
    """The job config of the form's values, `form` keyed by the API's names of the advanced fields."""
    return config_from_form(dataset, task, model, provider, strategy, [config_key(name) for name in form], list(form.values()))


def start_training(engine, account, dataset, task, model, provider, strategy, **form):
    """Queue the form's job for `account`: (the job id the page now watches, the message shown)."""
    try:
        config = _form_config(dataset, task, model, provider, strategy, form)
        jobs = engine.submit_sweep(within_runs(config, engine.settings), account)
    except ModelForgeError as exc:
        return gr.skip(), f"**Could not start:** {exc}"
    demo = engine.demo_model_state(config.task) if config.model is None else None
    waiting = f" It trains once the demo model is built. {demo.describe()}" if demo and demo.building else ""
    if len(jobs) > 1:
        queued = (f"Queued a sweep of {len(jobs)} jobs, #{jobs[0].id} to #{jobs[-1].id}, run one after another; "
                  "History compares them.")
    else:
        queued = f"Queued job #{jobs[0].id} ({jobs[0].name})."
    return jobs[0].id, queued + waiting


def fit_per_gpu(engine, dataset, task, model, provider, strategy, **form) -> str:
    """The will-it-fit line of the form's job, or why it cannot be estimated."""
    try:
        estimate, split = engine.fit_per_gpu(_form_config(dataset or "", task, model, provider, strategy, form))
    except ModelForgeError as exc:
        return f"**Will it fit?** {exc}"
    return fit_summary(estimate, split)


def _control(action, account, job_id) -> str:
    if job_id is None:
        return "No job selected."
    try:
        job = action(job_id, account=account)
    except ModelForgeError as exc:
        return f"**{exc}**"
    return f"Job #{job.id} is {job.status}" + (" (stopping at the next step)" if job.cancel_requested_at else "") + "."


def cancel_job(engine, account, job_id) -> str:
    return _control(engine.cancel, account, job_id)


def resume_job(engine, account, job_id) -> str:
    return _control(engine.resume, account, job_id)


def export_config(engine, account, job_id):
    """The watched job's config as a YAML file and the CLI command that reruns it."""
    if job_id is None:
        return None, ""
    try:
        return engine.export_config(job_id, account)
    except ModelForgeError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def preset_update(engine, keys: list[str], preset, model):
    """A preset's values sized for the chosen model, for the fields of `keys` (config keys), whenever either changes."""
    return _preset_values(engine.preset(preset, None if model == DEMO_MODEL else model), keys)


def dataset_update(engine, account, task, strategy):
    return gr.update(choices=engine.dataset_choices(task, strategy, account))


def choices_update(engine, account, task, strategy):
    """The datasets and models offered for the task (and strategy)."""
    models = [DEMO_MODEL, *engine.model_choices(task)]
    return dataset_update(engine, account, task, strategy), gr.update(choices=models)


def build(engine) -> list:
    """Returns (function, outputs, inputs) the app runs when a page loads or the tab is opened."""
    job_id = gr.State(None)  # the job this page watches
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Row():
                task = gr.Dropdown(list(TASKS), value=DEFAULT_TASK, label="Task")
                dataset = gr.Dropdown(
                    choices=engine.dataset_choices(DEFAULT_TASK, account=NOBODY), allow_custom_value=True,
                    label="Dataset", info="a saved dataset, a bundled sample, a file path or a Hub dataset id",
                )
            with gr.Row():
                model = gr.Dropdown([DEMO_MODEL], value=DEMO_MODEL, allow_custom_value=True, label="Model",
                                    info="the built-in demo model, or any Hub id or local folder")
                provider = gr.Radio(
                    [(f"{name}" + ("" if ok else " (unavailable)"), name) for name, ok, _ in engine.providers()],
                    value="huggingface", label="Provider",
                )
                strategy = gr.Dropdown(engine.strategies(), value="sft", label="Strategy")
            gr.Markdown(
                "\n".join(f"- **{name}**: {'available' if ok else reason}" for name, ok, reason in engine.providers())
            )
            preset = gr.Radio(list(PRESETS), value=DEFAULT_PRESET, label="Preset",
                              info="the learning rate follows the model's size: a tiny demo model needs a far higher one")
            trackers = gr.CheckboxGroup(
                tracker_choices(engine), value=[], label="Experiment trackers",
                info="each writes to its store in the job's folder; History shows where and how to open it",
            )
            with gr.Accordion("Advanced", open=False):
                fields = [*_advanced_fields(engine.preset(DEFAULT_PRESET, None)), ("trackers", trackers)]
            components = [component for _, component in fields]
            fit_note = gr.Markdown(elem_id="fit-per-gpu")
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
                resume = gr.Button("Resume")
            message = gr.Markdown()
        with gr.Column(scale=3):
            status = gr.Markdown(NO_JOB, elem_id="job-status")
            loss_plot = gr.LinePlot(**LOSS_CHART, title="Loss", height=260, elem_id="loss-chart")
            lr_plot = gr.LinePlot(**RATE_CHART, title="Learning rate", height=200, elem_id="lr-chart")
            evaluation = gr.Dataframe(
                headers=["metric", "base", "tuned", "change"], interactive=False, elem_id="evaluation-table",
                label="Before / after: base and tuned model on the same held-out rows",
            )
            examples = gr.Dataframe(headers=EXAMPLE_COLUMNS, interactive=False, wrap=True, label="Held-out examples")
            with gr.Row():
                export = gr.Button("Export config")
                config_file = gr.File(label="config YAML", interactive=False)
            cli = gr.Code(label="equivalent command", language="shell", interactive=False)
    timer = gr.Timer(1.0)

    # The API names the form's values as the config does: start_training(dataset=..., learning_rate=..., lora_r=...).
    main_form = [dataset, task, model, provider, strategy]
    named_form = {api_name(key): component for key, component in fields}
    watch = as_user(engine, watch_job)
    watch_outputs = [job_id, status, loss_plot, lr_plot, evaluation, examples]
    gr.on([model.change, strategy.change, task.change, *(c.change for c in components)], partial(fit_per_gpu, engine),
          main_form, fit_note, inputs_kwargs=named_form, show_progress="hidden", api_name="fit_per_gpu")
    choices = as_user(engine, choices_update)
    task.change(choices, [task, strategy], [dataset, model])
    strategy.change(as_user(engine, dataset_update), [task, strategy], dataset)
    for component in (preset, model):
        component.change(partial(preset_update, engine, [key for key, _ in fields]), [preset, model], components,
                         api_name=False)
    start.click(
        as_user(engine, start_training), main_form, [job_id, message], inputs_kwargs=named_form,
        api_name="start_training",
    ).then(watch, job_id, watch_outputs, api_visibility="private")
    cancel.click(as_user(engine, cancel_job), job_id, message, api_name="cancel_job")
    resume.click(as_user(engine, resume_job), job_id, message, api_name="resume_job")
    export.click(as_user(engine, export_config), job_id, [config_file, cli], api_name="export_config")
    colour_after(timer.tick(watch, job_id, watch_outputs, show_progress="hidden", api_name="job_status"), loss_plot)
    return [(choices, [dataset, model], [task, strategy]), (partial(fit_per_gpu, engine), fit_note, main_form, named_form)]
