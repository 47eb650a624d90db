"""Kahneman-Tversky optimisation with TRL's KTOTrainer: learns from single answers labelled good or bad, no pairs
needed; the reference is the model with its adapter disabled, as for DPO.

Rows are {prompt, completion, label}. A source of preference pairs is read as its pairs (data.validate) and each pair
becomes two rows here, its chosen answer good and its rejected answer bad, after the held-out pairs were set apart:
those stay pairs, so preference accuracy is measured on them as for the other preference strategies.
"""

from __future__ import annotations

from modelforge.prompts import as_turns
from modelforge.strategies.dpo import preference_trainer


def unpaired(records: list[dict]) -> list[dict]:
    """Canonical records as labelled answers: a preference pair as its chosen answer (good) and rejected one (bad)."""
    rows = []
    for record in records:
        if "chosen" in record:
            rows.append({"prompt": record["prompt"], "completion": record["chosen"], "label": True})
            rows.append({"prompt": record["prompt"], "completion": record["rejected"], "label": False})
        else:
            rows.append(record)
    return rows


def as_pairs(records: list[dict]) -> list[dict]:
    """Records as preference pairs: pairs as they are; labelled answers paired by prompt, each good answer with a bad
    answer to the same prompt (a prompt without both gives none)."""
    pairs, answers = [], {}
    for record in records:
        if "chosen" in record:
            pairs.append(record)
        else:
            answers.setdefault(record["prompt"], {True: [], False: []})[record["label"]].append(record["completion"])
    for prompt, by_label in answers.items():
        pairs += [{"prompt": prompt, "chosen": good, "rejected": bad} for good, bad in zip(by_label[True], by_label[False])]
    return pairs


def to_rows(records: list[dict], task: str, tokenizer) -> list[dict]:
    """Canonical records -> TRL's unpaired rows {prompt, completion, label}."""
    rows = []
    for record in unpaired(records):
        prompt, completion = as_turns(tokenizer, record["prompt"], record["completion"])
        rows.append({"prompt": prompt, "completion": completion, "label": record["label"]})
    return rows


def build_trainer(run):
    from trl import KTOConfig, KTOTrainer

    return preference_trainer(run, KTOTrainer, KTOConfig)
