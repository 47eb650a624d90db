"""RLHF in one job: a reward model learns the preference pairs, then the policy is optimised online against it.

Stage 1 trains a reward model (TRL's RewardTrainer: the base model with a one-score head, LoRA unless lora is null) on
the chosen/rejected pairs and saves it to <output_dir>/reward_model. Stage 2 samples answers to the same prompts and
optimises the policy with GRPO or RLOO against that reward model (TRL 1.16 has no PPOTrainer). `build_trainer` runs
stage 1 to completion and returns the stage-2 trainer, which run_job trains and saves like any other.

The job's step counter runs on across the stages: stage 2's steps count after stage 1's.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from modelforge.errors import JobCancelled
from modelforge.prompts import answer_ids, as_turns
from modelforge.strategies.common import lora_config, trainer_arguments
from modelforge.strategies.dpo import padded

REWARD_MODEL_DIR = "reward_model"
REWARD_STAGE = "stage 1/2: reward model"


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


def build_trainer(run):
    import trl

    from modelforge.progress import ProgressCallback

    progress = next(callback for callback in run.callbacks if isinstance(callback, ProgressCallback))
    reward_model = train_reward_model(run, progress).eval()
    run.reward = partial(score_answers, reward_model, run.tokenizer)

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
    progress.stage = f"stage 2/2: policy ({preference.rl_algorithm})"
    return trainer_class(
        model=run.model,
        reward_funcs=reward_model,
        args=args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        reward_processing_classes=run.tokenizer,
        peft_config=lora_config(run, "CAUSAL_LM"),
        callbacks=run.callbacks,
    )


def train_reward_model(run, progress):
    """Stage 1: the reward model, trained on the preference pairs and saved beside the policy.

    A resumed job continues from the stage's last checkpoint; when stage 1 had finished, that is its final one.
    """
    from peft import PeftModel
    from trl import RewardConfig, RewardTrainer

    from modelforge.training import last_checkpoint

    folder = run.output_dir / REWARD_MODEL_DIR
    progress.stage = REWARD_STAGE
    args = RewardConfig(
        **{**trainer_arguments(run), "output_dir": str(folder), "max_steps": run.config.preference.reward_model_steps},
        max_length=run.config.training.max_length,
    )
    model = _reward_model_base(run)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        peft_config=lora_config(replace(run, model=model), "SEQ_CLS"),
        callbacks=run.callbacks,
    )
    checkpoint = last_checkpoint(folder) if folder.is_dir() else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if progress.cancelled:
        raise JobCancelled(
            f"Cancelled in {REWARD_STAGE} at step {trainer.state.global_step}; "
            f"resume continues from {last_checkpoint(folder)}."
        )
    if progress.database_lost:
        raise progress.database_lost
    trainer.save_model(str(folder))
    progress.step_offset = trainer.state.global_step
    # Merged, a LoRA reward model is a plain sequence classifier: what GRPO and RLOO take as a reward function.
    model = trainer.model
    return model.merge_and_unload() if isinstance(model, PeftModel) else model


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
