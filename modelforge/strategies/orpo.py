"""Odds-ratio preference optimisation with TRL's ORPOTrainer: supervised learning of the chosen answer and a penalty
on the odds of the rejected one, in one loss; no reference model (beta weighs the odds-ratio term)."""

from __future__ import annotations

from modelforge.strategies.dpo import preference_trainer


def build_trainer(run):
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return preference_trainer(run, ORPOTrainer, ORPOConfig)
