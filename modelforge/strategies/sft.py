"""Supervised fine-tuning with TRL's SFTTrainer; loss on the response only."""

from __future__ import annotations

from modelforge.errors import UnavailableError
from modelforge.strategies.common import lora_config, trainer_arguments

GENERATION_MARK = "{% generation %}"


def _has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def to_sft_rows(records: list[dict], task: str, tokenizer) -> list[dict]:
    """Canonical task rows -> the rows TRL's SFTTrainer trains on, prompt and response kept apart."""
    if task == "chat":
        if GENERATION_MARK in (tokenizer.chat_template or ""):
            return [{"messages": record["messages"]} for record in records]
        # Without generation marks TRL cannot mask earlier turns: learn the final assistant reply.
        return [
            {"prompt": record["messages"][:-1], "completion": [record["messages"][-1]]} for record in records
        ]
    if _has_chat_template(tokenizer):
        return [
            {
                "prompt": [{"role": "user", "content": record["input"]}],
                "completion": [{"role": "assistant", "content": record["output"]}],
            }
            for record in records
        ]
    return [{"prompt": record["input"] + "\n", "completion": record["output"]} for record in records]


def build_trainer(run):
    from trl import SFTConfig, SFTTrainer

    config = run.config
    if config.task not in ("text-generation", "chat", "summarization") or run.model.config.is_encoder_decoder:
        raise UnavailableError(
            f"SFT for task {config.task} on {type(run.model).__name__} is not supported yet; "
            "use a causal language model with text-generation, chat or summarization."
        )
    uses_messages = "messages" in run.train_dataset.column_names
    args = SFTConfig(
        **trainer_arguments(run),
        max_length=config.training.max_length,
        packing=config.training.packing,
        assistant_only_loss=uses_messages,
        completion_only_loss=None if uses_messages else True,
    )
    return SFTTrainer(
        model=run.model,
        args=args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        peft_config=lora_config(run, "CAUSAL_LM"),
        callbacks=run.callbacks,
    )
