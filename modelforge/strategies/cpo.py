"""Contrastive preference optimisation with TRL's CPOTrainer, and SimPO as its loss: no reference model. CPO adds
supervised learning of the chosen answer to a DPO-like loss; SimPO compares the answers' mean log-probabilities per
token against a target margin, with no supervised term."""

from __future__ import annotations

from modelforge.strategies.dpo import preference_trainer


def build_trainer(run):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return preference_trainer(run, CPOTrainer, CPOConfig, loss_type="sigmoid")


def build_simpo_trainer(run):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return preference_trainer(run, CPOTrainer, CPOConfig, loss_type="simpo", cpo_alpha=0.0)
