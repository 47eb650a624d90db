"""The prompt format: how a task's row becomes what a model trains on, and what it is asked with afterwards.

One place for every strategy, the evaluation, the Playground, the dataset preview and the Hub card, so a tuned model
is always prompted exactly as it was trained. A causal LM with a chat template sees a conversation (the user's prompt,
then the assistant's answer); without a template it sees plain text: the prompt, a newline, then the answer and the
end-of-sequence token. An encoder-decoder reads the input alone; a span-QA encoder reads the question and the context
as its tokenizer pairs them.

Nothing here imports torch or transformers (the web process renders previews with it): tokenizers are passed in.
"""

from __future__ import annotations

from typing import Any

from modelforge.tasks import TASKS

SEPARATOR = "\n"  # between a plain-text prompt and its answer
GENERATION_MARK = "{% generation %}"  # chat templates that mark the assistant's turns let TRL mask the others

Prompt = str | list[dict[str, Any]]  # plain text, or chat turns for the model's chat template


def plain_prompt(prompt: str) -> str:
    """A prompt as a model without a chat template is trained on and asked with."""
    return prompt + SEPARATOR


def as_turns(tokenizer, prompt: str, answer: str) -> tuple[Prompt, Prompt]:
    """A prompt and its answer as every strategy trains on them: chat turns when the model has a chat template,
    else plain text."""
    if tokenizer.chat_template:
        return [{"role": "user", "content": prompt}], [{"role": "assistant", "content": answer}]
    return plain_prompt(prompt), answer


def conversation(record: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """A canonical text-task record as chat turns (a chat record already is one)."""
    if TASKS[task].conversation:
        return record["messages"]
    return [{"role": "user", "content": record["input"]}, {"role": "assistant", "content": record["output"]}]


def has_generation_marks(chat_template: str | None) -> bool:
    return GENERATION_MARK in (chat_template or "")


def sft_row(record: dict[str, Any], task: str, tokenizer) -> dict[str, Any]:
    """A canonical record as a row of TRL's SFTTrainer, prompt and response kept apart."""
    if TASKS[task].conversation:
        if has_generation_marks(tokenizer.chat_template):
            return {"messages": record["messages"]}
        # Without generation marks TRL cannot mask earlier turns: learn the final assistant reply.
        return {"prompt": record["messages"][:-1], "completion": [record["messages"][-1]]}
    prompt, completion = as_turns(tokenizer, record["input"], record["output"])
    return {"prompt": prompt, "completion": completion}


def split_row(row: dict[str, Any]) -> tuple[Prompt, Prompt]:
    """(prompt, answer) of an SFT row."""
    if "messages" in row:
        return row["messages"][:-1], row["messages"][-1:]
    return row["prompt"], row["completion"]


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids a causal LM continues from to answer `prompt`: the ids training puts before an answer."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
    return tokenizer(prompt)["input_ids"]


def answer_ids(tokenizer, prompt: Prompt, answer: Prompt) -> tuple[list[int], list[int]]:
    """Token ids of a prompt and of an answer to it (from as_turns), as TRL's trainers tokenize them.

    The answer starts where the tokenized prompt and prompt+answer first differ; a plain-text answer ends with EOS.
    """
    if isinstance(prompt, list):
        full_ids = tokenizer.apply_chat_template(prompt + answer, return_dict=True)["input_ids"]
    else:
        full_ids = tokenizer(prompt + answer + tokenizer.eos_token)["input_ids"]
    asked = prompt_ids(tokenizer, prompt)
    differ = (i for i, (a, b) in enumerate(zip(asked, full_ids)) if a != b)
    shared = next(differ, min(len(asked), len(full_ids)))
    return full_ids[:shared], full_ids[shared:]


def conversation_prompt(tokenizer, messages: list[dict[str, Any]]) -> Prompt:
    """What a causal LM is asked with for a conversation ending in a user turn (the Playground, a generated reply):
    the turns through its chat template, or the last message as a plain-text prompt."""
    if tokenizer.chat_template:
        return messages
    return plain_prompt(messages[-1]["content"] if messages else "")


def record_prompt(record: dict[str, Any], task: str, tokenizer) -> Prompt:
    """The prompt of a canonical record (a preference record's `prompt` included), as training shows it."""
    if "prompt" in record:
        prompt = record["prompt"]
        return as_turns(tokenizer, prompt[-1]["content"] if isinstance(prompt, list) else prompt, "")[0]
    return split_row(sft_row(record, task, tokenizer))[0]


def span_pair(record: dict[str, Any]) -> tuple[str, str]:
    """What a span-QA encoder reads, in its order: the question, then the context."""
    return record["question"], record["context"]
