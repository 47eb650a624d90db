"""The tasks ModelForge fine-tunes for: the fields each one's rows must have, the models that learn it, and what its
rows expect as the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

@dataclass(frozen=True)
class Task:
    name: str
    fields: tuple[str, ...]
    description: str
    # The model families that learn it, named as hub.py and the demo models name them: causal (a causal LM), seq2seq
    # (an encoder-decoder), qa (an encoder with a span head). The first is its demo model's and the Playground's.
    families: tuple[str, ...]
    expected: Callable[[dict], str]  # a record's expected answer: what the evaluation scores predictions against
    shown: Callable[[dict], str]  # a record's question, as the before/after examples show it
    conversation: bool = False  # its rows are chat turns (`messages`), not a prompt and its answer
    # The evaluation's metric (higher is better) that says which of several runs learned the task best (a sweep's).
    main_metric: str = "rougeL"

    @property
    def family(self) -> str:
        return self.families[0]

    def family_for(self, encoder_decoder: bool) -> str:
        """The family a model learns this task as: an encoder-decoder as seq2seq where the task allows it, any other
        model as the first of its families that is not seq2seq."""
        if encoder_decoder and "seq2seq" in self.families:
            return "seq2seq"
        return next((family for family in self.families if family != "seq2seq"), self.family)

    @property
    def causal_only(self) -> bool:
        """Whether only causal LMs learn it, so its trainer rows are known before the model is loaded."""
        return self.families == ("causal",)


def _output(record: dict) -> str:
    return record["output"]


def _input(record: dict) -> str:
    return record["input"]


TASKS: dict[str, Task] = {
    "text-generation": Task(
        "text-generation", ("input", "output"), "Continue a prompt with the expected text.", ("causal",),
        expected=_output, shown=_input, main_metric="exact_match",
    ),
    "chat": Task(
        "chat", ("messages",), "Answer as the assistant in multi-turn conversations.", ("causal",),
        expected=lambda record: record["messages"][-1]["content"], shown=lambda record: record["messages"][-2]["content"],
        conversation=True,
    ),
    "summarization": Task(
        "summarization", ("input", "output"), "Write a summary of a document.", ("seq2seq", "causal"),
        expected=_output, shown=_input,
    ),
    "extractive-qa": Task(
        "extractive-qa", ("context", "question", "answer"), "Find the answer to a question as a span of its context.",
        ("qa",), expected=lambda record: record["answer"]["text"], shown=lambda record: record["question"],
        main_metric="f1",
    ),
}

# The task every tab starts with: the config's default, whose sample the demo model learns.
DEFAULT_TASK = "text-generation"

# Preference pairs, read by the strategies that learn from comparisons (Strategy.pairs).
PREFERENCE_FIELDS: tuple[str, ...] = ("prompt", "chosen", "rejected")
# Single answers judged good (label true) or bad (false), read by the strategies that learn from them (Strategy.unpaired).
UNPAIRED_FIELDS: tuple[str, ...] = ("prompt", "completion", "label")
