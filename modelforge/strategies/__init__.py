"""Strategy registry: the training objectives, keyed by the config's `strategy`.

A strategy declares the tasks it trains, the dataset fields it reads, what a config of it must hold, how it turns
records into trainer rows, and its stages: the trainers the pipeline (modelforge/training/pipeline.py) builds from a
TrainingRun and trains in turn. Adding one is a module plus one line here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from modelforge.strategies import cpo, dpo, kto, orpo, rlhf, sft
from modelforge.tasks import PREFERENCE_FIELDS, TASKS, UNPAIRED_FIELDS

# Preference pairs compare a causal LM's answers: the tasks only causal LMs learn.
PREFERENCE_TASKS = tuple(name for name, task in TASKS.items() if task.causal_only)


@dataclass(frozen=True)
class Stage:
    """One trainer of a strategy. Every stage before the last trains to its end in a folder of its name in the job's
    folder and is saved there; its result goes forward in `TrainingRun.results` under its name. The last stage's
    trainer makes the job's model: the pipeline evaluates it and saves it in the job's folder."""

    name: str
    label: str  # the job's stage while it trains, formatted with the job's `config`
    build_trainer: Callable[[Any], Any]  # (TrainingRun) -> trainer
    result: Callable[[Any, Any], Any] | None = None  # (trained trainer, TrainingRun) -> what later stages are given
    scorer: bool = False  # its result scores (prompts, answers): the evaluation reports each model's mean reward


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    prepare_rows: Callable[[list[dict], str, Any], list[dict]]  # (records, task, tokenizer) -> trainer rows
    stages: tuple[Stage, ...]
    tasks: tuple[str, ...]
    quantization: str | None = None  # the loading a strategy implies (qlora: 4bit)
    pairs: bool = False  # learns from preference pairs (PREFERENCE_FIELDS) whatever the task, and may start from a job
    unpaired: bool = False  # a pairs strategy that reads single labelled answers (UNPAIRED_FIELDS), or pairs
    check: Callable[[Any], str | None] | None = None  # (JobConfig) -> what the config lacks for it, or None

    def fields(self, task: str) -> tuple[str, ...]:
        """The fields a dataset for `task` must hold for this strategy."""
        if self.unpaired:
            return UNPAIRED_FIELDS
        return PREFERENCE_FIELDS if self.pairs else TASKS[task].fields


SFT = Strategy(
    name="sft",
    description="Supervised fine-tuning on input/output pairs, conversations or question/context/answer rows; "
    "LoRA unless lora is null.",
    prepare_rows=sft.prepare_rows,
    stages=(Stage("model", "training", sft.build_trainer),),
    tasks=tuple(TASKS),
)

DPO = Strategy(
    name="dpo",
    description="Direct preference optimisation on prompt/chosen/rejected pairs, e.g. after an SFT job (init_from).",
    prepare_rows=dpo.to_preference_rows,
    stages=(Stage("model", "training", dpo.build_trainer),),
    tasks=PREFERENCE_TASKS,
    pairs=True,
)


def _one_stage(name: str, description: str, build_trainer, **changes) -> Strategy:
    """A preference strategy that reads DPO's rows (unless `changes` say otherwise) and trains with its own trainer."""
    return replace(DPO, name=name, description=description, stages=(Stage("model", "training", build_trainer),), **changes)


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
        stages=(
            Stage(rlhf.REWARD_MODEL_DIR, "stage 1/2: reward model", rlhf.reward_trainer, rlhf.RewardModel.of, scorer=True),
            Stage("policy", "stage 2/2: policy ({config.preference.rl_algorithm})", rlhf.policy_trainer),
        ),
        check=rlhf.check,
    ),
    "orpo": _one_stage("orpo", "Odds-ratio preference optimisation on prompt/chosen/rejected pairs: SFT and "
                       "preference in one loss, no reference model.", orpo.build_trainer),
    "simpo": _one_stage("simpo", "SimPO on prompt/chosen/rejected pairs: mean per-token log-probabilities against a "
                        "margin, no reference model.", cpo.build_simpo_trainer),
    "cpo": _one_stage("cpo", "Contrastive preference optimisation on prompt/chosen/rejected pairs: a DPO-like loss plus "
                      "SFT on the chosen answer, no reference model.", cpo.build_trainer),
    "kto": _one_stage("kto", "KTO on single answers labelled good or bad (prompt/completion/label); preference pairs are "
                      "read as a good and a bad answer each.", kto.build_trainer, prepare_rows=kto.to_rows, unpaired=True),
}
