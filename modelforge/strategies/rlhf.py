"""RLHF in one job, as two stages the pipeline trains in turn: a reward model learns the preference pairs, then the
policy is optimised online against it.

Stage 1 trains a reward model (TRL's RewardTrainer: the base model with a one-score head, LoRA unless lora is null) on
the chosen/rejected pairs; the pipeline saves it to <output_dir>/reward_model and passes it on, merged, as a
RewardModel. Stage 2 samples answers to the same prompts and optimises the policy with GRPO or RLOO against that
reward model (TRL 1.16 has no PPOTrainer); the pipeline trains and saves it like any other strategy's model.

The job's step counter runs on across the stages: stage 2's steps count after stage 1's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from modelforge.prompts import answer_ids, as_turns
from modelforge.strategies.common import lora_config, trainer_arguments
from modelforge.strategies.dpo import padded

REWARD_MODEL_DIR = "reward_model"  # stage 1's name: its folder in the job's, and its result's key


def check(config) -> str | None:
    """What a config must hold for rlhf: answers are compared within a batch."""
    generations = config.preference.num_generations
    if config.training.batch_size % generations:
        return (
            f"training.batch_size: rlhf compares preference.num_generations ({generations}) answers per prompt "
            f"within a batch, so the batch size must be a multiple of it (got {config.training.batch_size})"
        )
    return None


def score_answers(reward_model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 16) -> list[float]:
    """The reward model's score of each answer to its prompt, formatted as in training (the chat template, if any)."""
    import torch

    sequences = []
    for prompt, answer in zip(prompts, answers):
        prompt_ids, completion_ids = answer_ids(tokenizer, *as_turns(tokenizer, prompt, answer))
        sequences.append(prompt_ids + completion_ids)
    scores = []
    for start in range(0, len(sequences), batch_size):
        inputs = padded(sequences[start : start + batch_size], tokenizer.pad_token_id, reward_model.device)
        with torch.no_grad():
            scores += reward_model(**inputs).logits[:, 0].float().tolist()
    return scores


@dataclass(frozen=True)
class RewardModel:
    """Stage 1's result: the reward model, merged (a plain sequence classifier, what GRPO and RLOO take as a reward
    function), and the score it gives answers to prompts."""

    model: Any
    tokenizer: Any

    @classmethod
    def of(cls, trainer, run) -> "RewardModel":
        from peft import PeftModel

        model = trainer.model
        return cls((model.merge_and_unload() if isinstance(model, PeftModel) else model).eval(), run.tokenizer)

    def __call__(self, prompts: list[str], answers: list[str]) -> list[float]:
        return score_answers(self.model, self.tokenizer, prompts, answers)


def reward_trainer(run):
    """Stage 1: the reward model's trainer, on the preference pairs; `run.output_dir` is the stage's own folder."""
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        **{**trainer_arguments(run), "max_steps": run.config.preference.reward_model_steps},
        max_length=run.config.training.max_length,
    )
    model = _reward_model_base(run)
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        peft_config=lora_config(replace(run, model=model), "SEQ_CLS"),
        callbacks=run.callbacks,
    )


def policy_trainer(run):
    """Stage 2: the policy's online trainer, rewarded by stage 1's model."""
    import trl

    preference = run.config.preference
    config_class, trainer_class = {
        "grpo": (trl.GRPOConfig, trl.GRPOTrainer),
        "rloo": (trl.RLOOConfig, trl.RLOOTrainer),
    }[preference.rl_algorithm]
    args = config_class(
        # Its batches hold prompts, not input_ids: the trainer cannot count tokens and would warn at every step.
        **{**trainer_arguments(run), "include_num_input_tokens_seen": "no"},
        beta=preference.beta,
        num_generations=preference.num_generations,
        max_completion_length=preference.max_completion_length,
    )
    return trainer_class(
        model=run.model,
        reward_funcs=run.results[REWARD_MODEL_DIR].model,
        args=args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        reward_processing_classes=run.tokenizer,
        peft_config=lora_config(run, "CAUSAL_LM"),
        callbacks=run.callbacks,
    )


def _reward_model_base(run):
    """The policy's base model with a one-score head, loaded as the provider loads the policy."""
    from transformers import AutoModelForSequenceClassification

    from modelforge.loading import load_weights

    model = load_weights(
        run.model.config.name_or_path, run.config.task, run.runtime, quantization=run.config.quantization,
        model_class=AutoModelForSequenceClassification, num_labels=1,
    )
    model.config.pad_token_id = run.tokenizer.pad_token_id  # the score is read at the last token before padding
    return model
