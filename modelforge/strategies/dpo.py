"""Direct preference optimisation with TRL's DPOTrainer: the policy learns to rank the chosen answer above the rejected.

With LoRA the reference is the model with its adapter disabled, so no second copy of the model is held. Started from
a finished job's adapter (`init_from`), TRL keeps a frozen copy of that adapter as the reference: the SFT model.
"""

from __future__ import annotations

from modelforge.prediction import evaluating
from modelforge.prompts import answer_ids, as_turns
from modelforge.strategies.common import lora_config, trainer_arguments

SCORE_BATCH = 16  # sequences per forward pass when scoring


def to_preference_rows(records: list[dict], task: str, tokenizer) -> list[dict]:
    """Canonical {prompt, chosen, rejected} records -> TRL's preference rows."""
    rows = []
    for record in records:
        prompt, chosen = as_turns(tokenizer, record["prompt"], record["chosen"])
        _, rejected = as_turns(tokenizer, record["prompt"], record["rejected"])
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def padded(sequences: list[list[int]], pad_token_id: int, device) -> dict:
    """Right-padded input_ids and attention_mask for a batch of token id lists."""
    import torch

    width = max(len(ids) for ids in sequences)
    input_ids = torch.tensor([ids + [pad_token_id] * (width - len(ids)) for ids in sequences], device=device)
    attention_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in sequences], device=device)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def preference_scores(model, tokenizer, records: list[dict]) -> list[tuple[float, float]]:
    """(chosen, rejected) log-probabilities of each record's answers under a causal LM, summed over the answer tokens.

    The model prefers the chosen answer where the first is higher: preference accuracy is the share of such rows.
    """
    import torch

    sequences = []  # (ids, prompt length), the chosen and the rejected answer of each record in turn
    for record in records:
        for answer in (record["chosen"], record["rejected"]):
            prompt_ids, completion_ids = answer_ids(tokenizer, *as_turns(tokenizer, record["prompt"], answer))
            sequences.append((prompt_ids + completion_ids, len(prompt_ids)))
    totals = []
    with evaluating(model):
        for start in range(0, len(sequences), SCORE_BATCH):
            batch = sequences[start : start + SCORE_BATCH]
            inputs = padded([ids for ids, _ in batch], tokenizer.pad_token_id, model.device)
            with torch.no_grad():
                logits = model(**inputs).logits
            # Position t predicts token t + 1: score each answer token given everything before it.
            logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token_logps = logps.gather(-1, inputs["input_ids"][:, 1:, None])[..., 0].cpu()
            for row, (ids, prompt_length) in enumerate(batch):
                totals.append(token_logps[row, prompt_length - 1 : len(ids) - 1].sum().item())
    return list(zip(totals[::2], totals[1::2]))


def preference_trainer(run, trainer_class, config_class, **options):
    """One of TRL's preference trainers (DPO, ORPO, CPO, KTO take the same arguments) on the run's rows, with the job's
    length and beta; `options` go to its config."""
    config = run.config
    args = config_class(
        **trainer_arguments(run), max_length=config.training.max_length, beta=config.preference.beta, **options
    )
    return trainer_class(
        model=run.model,
        args=args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        peft_config=lora_config(run, "CAUSAL_LM"),  # None when the model came with its adapter (init_from)
        callbacks=run.callbacks,
    )


def build_trainer(run):
    from trl import DPOConfig, DPOTrainer

    return preference_trainer(run, DPOTrainer, DPOConfig, loss_type=[run.config.preference.loss_type])
