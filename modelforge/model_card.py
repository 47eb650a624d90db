"""The model card of a pushed job: what was trained on what and how, the before/after evaluation, the loss curve,
and code that loads the pushed files (huggingface_hub's ModelCard). It publishes no local path and none of the held-out
rows."""

from __future__ import annotations

import json
from pathlib import Path

from modelforge import data, gguf_export, prompts
from modelforge.config import JobConfig
from modelforge.formatting import BEFORE_AFTER_COLUMNS, before_after, duration, number
from modelforge.preflight import resolve_dataset_source
from modelforge.run_folder import ADAPTER_CONFIG, CONFIG_FILE, METRICS_FILE, is_adapter
from modelforge.strategies import STRATEGIES

LOSS_CURVE = "loss_curve.png"

# The classes that load each model family: (peft's for an adapter, transformers' for a full model).
LOADERS = {
    "causal": ("AutoPeftModelForCausalLM", "AutoModelForCausalLM"),
    "seq2seq": ("AutoPeftModelForSeq2SeqLM", "AutoModelForSeq2SeqLM"),
    "qa": ("AutoPeftModelForQuestionAnswering", "AutoModelForQuestionAnswering"),
}
PIPELINE_TAGS = {"causal": "text-generation", "seq2seq": "summarization", "qa": "question-answering"}
PEFT_TASK_FAMILIES = {"SEQ_2_SEQ_LM": "seq2seq", "QUESTION_ANS": "qa"}


def model_card(job, folder: Path, repo_id: str, has_loss_curve: bool, license: str | None = None):
    """README.md for the Hub (huggingface_hub's ModelCard): metadata, what was trained on what and how, the
    before/after evaluation, the loss curve, the hardware and duration, and code that loads the pushed files."""
    from huggingface_hub import ModelCard, ModelCardData

    config = JobConfig.from_json(job.config)
    metrics = job_metrics(job)
    adapter = is_adapter(folder)
    family = model_family(folder)
    base_on_hub = bool(config.model) and data.is_hub_id(config.model)
    dataset = resolve_dataset_source(config.dataset)
    dataset_on_hub = data.is_hub_id(dataset)
    dataset_name = data.parse_hub_id(dataset)[0] if dataset_on_hub else Path(dataset).name
    form = "LoRA adapter" if adapter else "merged model (LoRA merged into the base)" if config.lora else "full fine-tune"
    card_data = ModelCardData(
        base_model=config.model if base_on_hub else None,
        datasets=[dataset_name] if dataset_on_hub else None,
        library_name="peft" if adapter else "transformers",
        license=license or None,
        pipeline_tag=PIPELINE_TAGS[family],
        tags=["modelforge", config.task, config.strategy, *(["lora", "peft"] if config.lora else [])],
    )
    base = config.model or "the ModelForge demo model (a tiny model built locally, not on the Hub)"
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {form} trained with ModelForge as job #{job.id} ({job.name}).",
        "",
        f"- **Base model:** {base}",
        f"- **Dataset:** {dataset_name}",
        f"- **Task:** {config.task}",
        f"- **Strategy:** {config.strategy}" + (f" ({config.quantization} base)" if config.quantization else ""),
        f"- **Training hardware:** {metrics.get('hardware') or 'not recorded'}",
        f"- **Training duration:** {_duration(job, metrics)}" + _throughput(metrics),
        "",
        "## Hyperparameters",
        "",
        "| name | value |",
        "| --- | --- |",
        *(f"| {key} | {number(value)} |" for key, value in hyperparameters(config).items()),
        "",
        "## Evaluation",
        "",
        *_evaluation_lines(metrics, config),
        "",
        *gguf_export.card_lines(job),
        "## Training loss",
        "",
        f"![Training and evaluation loss by step]({LOSS_CURVE})" if has_loss_curve else "No loss was recorded.",
        "",
        "## Usage",
        "",
        "```python",
        usage_snippet(repo_id, family, adapter, has_chat_template=_has_chat_template(folder)),
        "```",
        "",
    ]
    if adapter and not base_on_hub:
        lines += [
            "This adapter's base model is not on the Hub, so the snippet runs only beside a folder of that base (the "
            f"name in `{ADAPTER_CONFIG}`): push the merged model to share a standalone model.",
            "",
        ]
    lines += [f"The full job configuration is in `{CONFIG_FILE}`, the final metrics in `{METRICS_FILE}`.", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


def hyperparameters(config: JobConfig) -> dict:
    """Every setting that shaped the training, as dotted names."""
    values = {"provider": config.provider, "quantization": config.quantization or "none"}
    values |= {f"training.{key}": value for key, value in config.training.model_dump(mode="json").items()}
    if config.lora:
        values |= {f"lora.{key}": value for key, value in config.lora.model_dump(mode="json").items()}
    else:
        values["lora"] = "none (full fine-tuning)"
    if STRATEGIES[config.strategy].pairs:  # the strategies that read the preference section
        start = config.init_from
        # A job id, or only the adapter folder's name: the card does not publish the user's local paths.
        values["init_from"] = "the base model" if not start else f"job {start}" if start.isdigit() else Path(start).name
        values |= {f"preference.{key}": value for key, value in config.preference.model_dump(mode="json").items()}
    return values


def _evaluation_lines(metrics: dict, config: JobConfig) -> list[str]:
    losses = [f"{name}: {number(metrics[name])}" for name in ("train_loss", "eval_loss") if name in metrics]
    loss_line = [f"Final {', '.join(losses)}.", ""] if losses else []
    evaluation = metrics.get("evaluation")
    if not evaluation:
        return loss_line + ["No before/after evaluation was recorded for this job."]
    sample = f"{evaluation.get('rows', '?')} held-out rows"
    if evaluation.get("generated_rows"):
        sample += (
            f"; generation metrics on {evaluation['generated_rows']} of them "
            f"(greedy, up to {config.evaluation.max_new_tokens} new tokens)"
        )
    return [
        *loss_line,
        f"The base model and the tuned model scored on the same {sample}:",
        "",
        "| " + " | ".join(BEFORE_AFTER_COLUMNS) + " |",
        "| --- | --- | --- | --- |",
        *("| " + " | ".join(row) + " |" for row in before_after(evaluation["metrics"])),
    ]


def usage_snippet(repo_id: str, family: str, adapter: bool, has_chat_template: bool) -> str:
    """Python that loads the pushed files and runs the model once."""
    peft_class, transformers_class = LOADERS[family]
    imports = (
        [f"from peft import {peft_class}", "from transformers import AutoTokenizer"]
        if adapter
        else [f"from transformers import {transformers_class}, AutoTokenizer"]
    )
    lines = [
        *imports,
        "",
        f'model = {peft_class if adapter else transformers_class}.from_pretrained("{repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
    ]
    if family == "qa":
        lines += [
            'question, context = "Who wrote the letter?", "The letter was written by Ada in 1843."',
            'inputs = tokenizer(question, context, return_tensors="pt")',
            "outputs = model(**inputs)",
            "start, end = outputs.start_logits.argmax(), outputs.end_logits.argmax()",
            'print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))',
        ]
    elif family == "seq2seq":
        lines += [
            'inputs = tokenizer("The text to summarize.", return_tensors="pt")',
            "output = model.generate(**inputs, max_new_tokens=64, do_sample=False)",
            "print(tokenizer.decode(output[0], skip_special_tokens=True))",
        ]
    else:
        prompt = (
            'messages = [{"role": "user", "content": "Hello"}]\n'
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
            'return_tensors="pt", return_dict=True)'
            if has_chat_template
            # without a chat template the model was trained on plain text: the prompt, then a newline
            else f'inputs = tokenizer({prompts.plain_prompt("Hello")!r}, return_tensors="pt")'
        )
        lines += [
            prompt,
            "output = model.generate(**inputs, max_new_tokens=64, do_sample=False)",
            'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))',
        ]
    return "\n".join(lines)


def model_family(folder: Path) -> str:
    """causal, seq2seq or qa: which Auto classes load the model in `folder`."""
    if is_adapter(folder):
        task_type = _read_json(folder / ADAPTER_CONFIG).get("task_type")
        return PEFT_TASK_FAMILIES.get(task_type, "causal")
    model_config = _read_json(folder / "config.json")
    if model_config.get("is_encoder_decoder"):
        return "seq2seq"
    if any(name.endswith("ForQuestionAnswering") for name in model_config.get("architectures") or []):
        return "qa"
    return "causal"


def _has_chat_template(folder: Path) -> bool:
    return (folder / "chat_template.jinja").is_file() or "chat_template" in _read_json(folder / "tokenizer_config.json")


def job_metrics(job) -> dict:
    """The job's final metrics, as its folder holds them (else as its row does)."""
    path = Path(job.output_dir) / METRICS_FILE
    return _read_json(path) if path.is_file() else job.final_metrics


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _duration(job, metrics: dict) -> str:
    if job.started_at and job.finished_at:
        return duration((job.finished_at - job.started_at).total_seconds())
    return duration(metrics["train_runtime"]) if "train_runtime" in metrics else "not recorded"


def _throughput(metrics: dict) -> str:
    parts = [f"{metrics['steps']} steps" if "steps" in metrics else "",
             f"{metrics['tokens_per_second']:.0f} tokens/s" if "tokens_per_second" in metrics else ""]
    return f" ({', '.join(filter(None, parts))})" if any(parts) else ""
