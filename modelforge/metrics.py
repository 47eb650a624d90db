"""Task metrics, computed with the reference packages (rouge-score, sacrebleu) rather than `evaluate.load`,
which downloads metric scripts. Scales follow each metric's usual convention: ROUGE 0-1 (rouge-score),
BLEU and chrF 0-100 (sacrebleu), exact match and F1 0-100 (the SQuAD script), preference accuracy 0-1.
"""

from __future__ import annotations

import collections
import math
import re
import string
from statistics import fmean

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (with stemming, as most papers report)."""
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    scores = [scorer.score(reference, prediction) for prediction, reference in zip(predictions, references)]
    return {name: fmean(score[name].fmeasure for score in scores) for name in ROUGE_TYPES}


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU with one reference per prediction."""
    import sacrebleu

    _check_pairs(predictions, references)
    return sacrebleu.corpus_bleu(predictions, [references]).score


def chrf(predictions: list[str], references: list[str]) -> float:
    import sacrebleu

    _check_pairs(predictions, references)
    return sacrebleu.corpus_chrf(predictions, [references]).score


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: list[str]) -> float:
    return 100.0 * max(normalize_answer(prediction) == normalize_answer(answer) for answer in answers)


def f1(prediction: str, answers: list[str]) -> float:
    return 100.0 * max(_token_f1(prediction, answer) for answer in answers)


def _token_f1(prediction: str, answer: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad(predictions: list[str], answers: list[list[str]]) -> dict[str, float]:
    """Mean exact match and F1, each prediction scored against its best-matching answer."""
    _check_pairs(predictions, answers)
    return {
        "exact_match": fmean(exact_match(p, a) for p, a in zip(predictions, answers)),
        "f1": fmean(f1(p, a) for p, a in zip(predictions, answers)),
    }


def text_generation(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Every metric for generated text: ROUGE, BLEU, chrF, and exact match of the normalised text."""
    return {
        **rouge(predictions, references),
        "bleu": bleu(predictions, references),
        "chrf": chrf(predictions, references),
        "exact_match": fmean(exact_match(p, [r]) for p, r in zip(predictions, references)),
    }


def perplexity(mean_loss: float) -> float:
    """exp of the mean token cross-entropy; capped so a diverged model reads as huge, not as an overflow."""
    return math.exp(min(mean_loss, 50.0))


def preference(chosen_scores: list[float], rejected_scores: list[float]) -> dict[str, float]:
    """Share of pairs scored chosen above rejected, and the mean margin between the two scores.

    The scores are a policy's log-probabilities of each answer, or a reward model's rewards.
    """
    _check_pairs(chosen_scores, rejected_scores)
    margins = [chosen - rejected for chosen, rejected in zip(chosen_scores, rejected_scores)]
    return {
        "preference_accuracy": fmean(margin > 0 for margin in margins),
        "reward_margin": fmean(margins),
    }


def _check_pairs(predictions: list, references: list) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
