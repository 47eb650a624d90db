"""Extractive question answering on an encoder with a span head: the model learns the answer's first and last token.

A context too long for one window of `training.max_length` tokens is split into windows that overlap by a third of
it (doc stride, 128 at 384 as in SQuAD fine-tuning), so an answer near the end is still seen whole in some window. A
window that does not hold the whole answer points both ends at its first token (CLS): "no answer here".
"""

from __future__ import annotations

from modelforge.errors import DatasetError, UnavailableError
from modelforge.strategies.common import adapted_model, trainer_arguments

LABELS = ["start_positions", "end_positions"]


def window_stride(max_length: int) -> int:
    """Tokens shared by consecutive windows of a long context."""
    return max_length // 3


def encode_windows(tokenizer, questions: list[str], contexts: list[str], max_length: int, stride: int | None = None):
    """Question/context pairs as windows of at most `max_length` tokens, with each token's character offsets.

    The result's `overflow_to_sample_mapping` names the pair each window comes from; `sequence_ids(window)` tells
    the question's tokens (0) from the context's (1).
    """
    if not tokenizer.is_fast:
        raise UnavailableError(
            f"extractive-qa needs a fast tokenizer (one that reports character offsets); {type(tokenizer).__name__} "
            "is not. Pick a model whose tokenizer.json is on the Hub."
        )
    longest = max(len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"])
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room < 8:
        raise DatasetError(
            f"extractive-qa: a question of {longest} tokens leaves {max(room, 0)} of training.max_length={max_length} "
            "tokens for its context; raise training.max_length or shorten the question."
        )
    # The tokenizer panics when the stride does not fit beside the question.
    stride = min(window_stride(max_length) if stride is None else stride, room // 2)
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def answer_tokens(encoded, window: int, start: int, end: int) -> tuple[int, int] | None:
    """The first and last token of the characters [start, end) of the context in `window`, or None if it lacks them."""
    offsets = encoded["offset_mapping"][window]
    context = [index for index, sequence in enumerate(encoded.sequence_ids(window)) if sequence == 1]
    if not context or offsets[context[0]][0] > start or offsets[context[-1]][1] < end:
        return None
    first = next(index for index in context if offsets[index][1] > start)
    last = next(index for index in reversed(context) if offsets[index][0] < end)
    return first, last


def features(tokenizer, records: list[dict], max_length: int) -> dict[str, list]:
    """Trainer features of canonical records ({context, question, answer: {text, start}}): one row per window."""
    encoded = encode_windows(
        tokenizer, [record["question"] for record in records], [record["context"] for record in records], max_length
    )
    rows = {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}
    rows["start_positions"], rows["end_positions"] = [], []
    for window, index in enumerate(encoded["overflow_to_sample_mapping"]):
        answer = records[index]["answer"]
        first, last = answer_tokens(encoded, window, answer["start"], answer["start"] + len(answer["text"])) or (0, 0)
        rows["start_positions"].append(first)
        rows["end_positions"].append(last)
    return rows


def build_trainer(run):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    def windows(dataset):
        return Dataset.from_dict(features(run.tokenizer, dataset.to_list(), run.config.training.max_length))

    # The span head (qa_outputs) is trained whole, beside the adapters: LoRA on it too is refused by peft.
    model = adapted_model(run, "QUESTION_ANS", exclude_modules=["qa_outputs"])
    return Trainer(
        model=model,
        args=TrainingArguments(**trainer_arguments(run), label_names=LABELS),
        train_dataset=windows(run.train_dataset),
        eval_dataset=windows(run.eval_dataset) if run.eval_dataset is not None else None,
        data_collator=DataCollatorWithPadding(run.tokenizer),
        processing_class=run.tokenizer,
        callbacks=run.callbacks,
    )
