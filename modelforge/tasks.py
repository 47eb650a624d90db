"""The tasks ModelForge fine-tunes for, and the fields each one's rows must have."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    fields: tuple[str, ...]
    description: str


TASKS: dict[str, Task] = {
    "text-generation": Task("text-generation", ("input", "output"), "Continue a prompt with the expected text."),
    "chat": Task("chat", ("messages",), "Answer as the assistant in multi-turn conversations."),
    "summarization": Task("summarization", ("input", "output"), "Write a summary of a document."),
    "extractive-qa": Task(
        "extractive-qa", ("context", "question", "answer"), "Find the answer to a question as a span of its context."
    ),
}

# The task every tab starts with: the config's default, whose sample the demo model learns.
DEFAULT_TASK = "text-generation"

# Preference pairs, used by strategies that learn from comparisons (dpo, rlhf).
PREFERENCE_FIELDS: tuple[str, ...] = ("prompt", "chosen", "rejected")
