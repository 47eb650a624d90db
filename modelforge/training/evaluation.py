"""Before/after evaluation: the base model and the tuned model answer the same held-out rows, scored alike.

A model's answers are collected first (`predict`), then scored (`compare`), so the base model's answers can be
taken before training starts, from the very model that is about to be trained, with no second copy in memory.
Generation is greedy and bounded by `evaluation.max_samples` rows and `evaluation.max_new_tokens` tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelforge import metrics, prompts, run_folder
from modelforge.config import JobConfig
from modelforge.errors import DatasetError
from modelforge.loading import apply_adapter, load_weights, resolve_model_path
from modelforge.prediction import answer_question, evaluating, generate_summary, generate_texts
from modelforge.preflight import runnable_strategy
from modelforge.providers import PROVIDERS
from modelforge.runtime import resolve_runtime
from modelforge.strategies import STRATEGIES
from modelforge.strategies.dpo import preference_scores
from modelforge.strategies.kto import as_pairs
from modelforge.tasks import TASKS
EXAMPLES = 5  # held-out rows shown with both models' answers
# How a model of each family is scored; the kind is stored with the base model's predictions.
FAMILY_KINDS = {"causal": "generation", "seq2seq": "seq2seq", "qa": "span"}


def kind_of(config: JobConfig, model) -> str:
    """How a model is scored on the config's task: generation, seq2seq, span, or preference."""
    if STRATEGIES[config.strategy].pairs:
        return "preference"
    return FAMILY_KINDS[TASKS[config.task].family_for(model.config.is_encoder_decoder)]


def predict(model, tokenizer, config: JobConfig, records: list[dict]) -> dict[str, Any]:
    """One model's answers on held-out rows (and its loss on their references), as JSON-ready data for `compare`."""
    with evaluating(model):
        return _predict(model, tokenizer, config, records)


def _predict(model, tokenizer, config: JobConfig, records: list[dict]) -> dict[str, Any]:
    kind = kind_of(config, model)
    sample = scored_rows(config, records)
    result: dict[str, Any] = {"kind": kind, "loss": None}
    if kind == "generation":
        result["loss"] = completion_loss(model, tokenizer, config, sample)
        result["texts"] = generate_texts(model, tokenizer, causal_prompts(sample, config.task, tokenizer), config.evaluation.max_new_tokens)
    elif kind == "seq2seq":
        result["loss"] = completion_loss(model, tokenizer, config, sample)
        result["texts"] = [
            generate_summary(model, tokenizer, record["input"], config.evaluation.max_new_tokens) for record in sample
        ]
    elif kind == "span":
        result["texts"] = [
            answer_question(model, tokenizer, record["question"], record["context"], max_length=config.training.max_length)[
                "text"
            ]
            for record in sample
        ]
    else:
        scores = preference_scores(model, tokenizer, sample)
        result["chosen"], result["rejected"] = [list(column) for column in zip(*scores)] if scores else ([], [])
        prompts = causal_prompts(sample, config.task, tokenizer)
        result["texts"] = generate_texts(model, tokenizer, prompts, config.evaluation.max_new_tokens)
    return result


def scored_rows(config: JobConfig, records: list[dict]) -> list[dict]:
    """The held-out rows a model is scored on: the first evaluation.max_samples, preference rows as pairs (labelled
    answers paired by prompt)."""
    return (as_pairs(records) if STRATEGIES[config.strategy].pairs else records)[: config.evaluation.max_samples]


def references(config: JobConfig, records: list[dict]) -> list[str]:
    return [TASKS[config.task].expected(record) for record in records]


def compare(
    config: JobConfig, records: list[dict], tuned: dict[str, Any] | None, base: dict[str, Any] | None, reward=None
) -> dict[str, Any]:
    """The before/after table: {"metrics": {name: {"base": value or None, "tuned": value}}, "examples": [...]}.

    `reward`, when given, scores (prompt, answer) pairs: the mean reward of each model's generations is reported.
    """
    sample = scored_rows(config, records)
    table: dict[str, dict[str, float | None]] = {}
    for label, predictions in (("tuned", tuned), ("base", base)):
        if predictions is None:
            continue
        for name, value in score(config, sample, predictions, reward).items():
            table.setdefault(name, {"base": None, "tuned": None})[label] = value
    return {
        "rows": len(records),
        "generated_rows": len(sample),
        "metrics": table,
        "examples": _examples(config, sample, tuned, base),
    }


def score(config: JobConfig, sample: list[dict], predictions: dict[str, Any], reward=None) -> dict[str, float]:
    scores: dict[str, float] = {}
    if predictions["loss"] is not None:
        scores["perplexity"] = metrics.perplexity(predictions["loss"])
    texts = predictions["texts"]
    if predictions["kind"] == "span":
        scores.update(metrics.squad(texts, [[reference] for reference in references(config, sample)]))
    elif predictions["kind"] == "preference":
        if predictions["chosen"]:  # labelled answers held out with no good and bad answer to one prompt form no pair
            scores.update(metrics.preference(predictions["chosen"], predictions["rejected"]))
        if reward is not None:
            rewards = reward([record["prompt"] for record in sample], texts)
            scores["mean_reward"] = sum(rewards) / len(rewards)
    else:
        scores.update(metrics.text_generation(texts, references(config, sample)))
    return scores


def _examples(config: JobConfig, sample: list[dict], tuned: dict | None, base: dict | None) -> list[dict[str, str]]:
    rows = []
    for index, record in enumerate(sample[:EXAMPLES]):
        if STRATEGIES[config.strategy].pairs:
            shown, expected = _text(record["prompt"]), _text(record["chosen"])
        else:
            shown, expected = TASKS[config.task].shown(record), TASKS[config.task].expected(record)
        rows.append(
            {
                "input": shown,
                "expected": expected,
                "base": base["texts"][index] if base else None,
                "tuned": tuned["texts"][index] if tuned else None,
            }
        )
    return rows


def _text(value: Any) -> str:
    """A preference field as text: plain text, or the content of its last message."""
    return value[-1]["content"] if isinstance(value, list) else value


def causal_prompts(records: list[dict], task: str, tokenizer) -> list[list[int]]:
    """Each row's prompt as the token ids training puts before its answer."""
    return [prompts.prompt_ids(tokenizer, prompts.record_prompt(record, task, tokenizer)) for record in records]


def completion_loss(model, tokenizer, config: JobConfig, records: list[dict]) -> float:
    """Mean cross-entropy of the reference answers' tokens given their prompts, the way training computes its loss."""
    import torch

    limit = config.training.max_length
    encoder_decoder = model.config.is_encoder_decoder
    if encoder_decoder:
        pairs = [
            (
                tokenizer(record["input"], truncation=True, max_length=limit)["input_ids"],
                tokenizer(text_target=record["output"], truncation=True, max_length=limit)["input_ids"],
            )
            for record in records
        ]
    else:
        pairs = [
            prompts.answer_ids(tokenizer, *prompts.split_row(prompts.sft_row(record, config.task, tokenizer)))
            for record in records
        ]
    total, count = 0.0, 0
    for prompt_ids, reference_ids in pairs:
        if encoder_decoder:
            inputs, labels = prompt_ids, reference_ids
            tokens = len(labels)
        else:
            inputs = (prompt_ids + reference_ids)[-limit:]
            labels = ([-100] * len(prompt_ids) + reference_ids)[-limit:]
            tokens = sum(label != -100 for label in labels[1:])  # the first position predicts nothing
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([inputs], device=model.device), labels=torch.tensor([labels], device=model.device)).loss
        total += loss.item() * tokens
        count += tokens
    return total / max(count, 1)


def evaluate_saved(config: JobConfig, settings, records: list[dict], tuned_dir: Path | None) -> dict[str, Any]:
    """Score a finished job's saved model (adapter or full) against its base on `records`, outside training.

    Without `tuned_dir` the config's model alone is scored, as the table's `base` column.
    """
    if not records:
        raise DatasetError("There are no rows to evaluate on: give a dataset with at least one valid row.")
    strategy = runnable_strategy(config, settings)
    if strategy.quantization:
        config = config.model_copy(update={"quantization": strategy.quantization})
    runtime = resolve_runtime(config)
    # Plain transformers + peft load what any provider saved, so Unsloth jobs are scored the same way.
    loaded = PROVIDERS["huggingface"].load(config, runtime, resolve_model_path(config, settings))
    base = predict(loaded.model, loaded.tokenizer, config, records)
    if tuned_dir is None:
        return compare(config, records, None, base)
    if run_folder.is_adapter(tuned_dir):
        model = apply_adapter(loaded.model, str(tuned_dir))
    else:
        model = load_weights(str(tuned_dir), config.task, runtime)
    return compare(config, records, predict(model, loaded.tokenizer, config, records), base)
