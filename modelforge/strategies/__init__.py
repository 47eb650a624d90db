"""Strategy registry: the training objectives, keyed by the config's `strategy`.

A strategy declares the dataset fields it needs for a task and builds one trainer from a TrainingRun.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from modelforge.strategies import dpo, rlhf, sft
from modelforge.tasks import PREFERENCE_FIELDS, TASKS


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    prepare_rows: Callable[[list[dict], str, Any], list[dict]]  # (records, task, tokenizer) -> trainer rows
    build_trainer: Callable[[Any], Any]
    tasks: tuple[str, ...]
    quantization: str | None = None  # the loading a strategy implies (qlora: 4bit)
    data_fields: tuple[str, ...] | None = None  # fields needed whatever the task (preference pairs); None: the task's

    def fields(self, task: str) -> tuple[str, ...]:
        return self.data_fields or TASKS[task].fields


SFT = Strategy(
    name="sft",
    description="Supervised fine-tuning on input/output pairs, conversations or question/context/answer rows; "
    "LoRA unless lora is null.",
    prepare_rows=sft.prepare_rows,
    build_trainer=sft.build_trainer,
    tasks=("text-generation", "chat", "summarization", "extractive-qa"),
)

DPO = Strategy(
    name="dpo",
    description="Direct preference optimisation on prompt/chosen/rejected pairs, e.g. after an SFT job (init_from).",
    prepare_rows=dpo.to_preference_rows,
    build_trainer=dpo.build_trainer,
    tasks=("text-generation", "chat"),
    data_fields=PREFERENCE_FIELDS,
)

STRATEGIES: dict[str, Strategy] = {
    "sft": SFT,
    # QLoRA is the SFT recipe on a base loaded in 4-bit, not a second copy of it.
    "qlora": replace(
        SFT,
        name="qlora",
        description="SFT of LoRA adapters on the base model loaded in 4-bit NF4: the memory of a model four times smaller.",
        quantization="4bit",
    ),
    "dpo": DPO,
    # RLHF reads the same preference rows as DPO; only its training differs.
    "rlhf": replace(
        DPO,
        name="rlhf",
        description="A reward model learns the preference pairs, then the policy is optimised against it (GRPO or RLOO).",
        build_trainer=rlhf.build_trainer,
    ),
}
