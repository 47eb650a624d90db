import math
from collections import Counter

import pytest

from modelforge import metrics


def test_rouge_matches_hand_counted_overlaps():
    scores = metrics.rouge(["the cat sat on the mat"], ["the cat is on the mat"])
    assert scores["rouge1"] == pytest.approx(5 / 6, abs=1e-6)  # the, the, cat, on, mat
    assert scores["rouge2"] == pytest.approx(3 / 5, abs=1e-6)  # the-cat, on-the, the-mat
    assert scores["rougeL"] == pytest.approx(5 / 6, abs=1e-6)  # "the cat on the mat"


def test_rouge_stems_and_averages_like_the_reference_package():
    from rouge_score import rouge_scorer

    predictions = ["the dogs were running home", "a short summary", "nothing in common"]
    references = ["the dog runs home", "a short summary of the text", "completely different words"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = [scorer.score(r, p) for p, r in zip(predictions, references)]
    scores = metrics.rouge(predictions, references)
    for name in metrics.ROUGE_TYPES:
        assert scores[name] == pytest.approx(sum(e[name].fmeasure for e in expected) / 3, abs=1e-6)
    assert metrics.rouge(["the dogs were running"], ["the dog runs"])["rouge1"] == pytest.approx(0.857142857, abs=1e-6)


def _bleu_by_hand(hypothesis: list[str], reference: list[str]) -> float:
    """BLEU-4 from its definition, for one sentence whose n-gram precisions are all non-zero."""
    log_precisions = []
    for n in range(1, 5):
        hyp = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
        ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
        log_precisions.append(math.log(sum((hyp & ref).values()) / sum(hyp.values())))
    brevity = min(1.0, math.exp(1 - len(reference) / len(hypothesis)))
    return 100 * brevity * math.exp(sum(log_precisions) / 4)


def test_bleu_and_chrf_agree_with_their_definitions_and_sacrebleu():
    import sacrebleu

    hypothesis = "the quick brown fox jumps over the lazy dog today"
    reference = "the quick brown fox jumped over the lazy dog today"
    assert metrics.bleu([hypothesis], [reference]) == pytest.approx(
        _bleu_by_hand(hypothesis.split(), reference.split()), abs=1e-6
    )
    short = "the quick brown fox jumps over"
    assert metrics.bleu([short], [reference]) == pytest.approx(_bleu_by_hand(short.split(), reference.split()), abs=1e-6)
    assert metrics.bleu([reference], [reference]) == pytest.approx(100.0, abs=1e-6)
    assert metrics.chrf([reference], [reference]) == pytest.approx(100.0, abs=1e-6)
    assert metrics.chrf(["zzz"], ["abc"]) == pytest.approx(0.0, abs=1e-6)
    assert metrics.chrf([hypothesis], [reference]) == pytest.approx(
        sacrebleu.sentence_chrf(hypothesis, [reference]).score, abs=1e-6
    )


@pytest.mark.parametrize(
    ("prediction", "answers", "exact", "f1"),
    [
        ("The Atlantic Ocean", ["the Atlantic Ocean"], 100.0, 100.0),
        ("Atlantic Ocean.", ["the Atlantic Ocean"], 100.0, 100.0),  # articles and punctuation do not count
        ("the Atlantic", ["the Atlantic Ocean"], 0.0, 100 * 2 * (1 * 0.5) / 1.5),  # precision 1, recall 1/2
        ("Peru and Brazil", ["Peru, Colombia and Brazil"], 0.0, 100 * 2 * 1 * 0.75 / 1.75),
        ("Pacific", ["the Atlantic Ocean"], 0.0, 0.0),
        ("seven million", ["7 million", "seven million square kilometres"], 0.0, 100 * 2 * 1 * 0.5 / 1.5),
        ("7 million", ["7 million", "seven million square kilometres"], 100.0, 100.0),  # best answer counts
        ("", ["the"], 100.0, 100.0),  # both normalise to nothing
    ],
)
def test_squad_exact_match_and_f1(prediction, answers, exact, f1):
    assert metrics.exact_match(prediction, answers) == pytest.approx(exact)
    assert metrics.f1(prediction, answers) == pytest.approx(f1)


def test_squad_averages_over_questions():
    scores = metrics.squad(["Paris", "in Rome"], [["Paris"], ["Rome"]])
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx((100 + 100 * 2 * 0.5 / 1.5) / 2)


def test_preference_accuracy_and_margin():
    scores = metrics.preference([-1.0, -2.0, -3.0, -0.5], [-2.0, -1.0, -4.0, -0.5])
    assert scores["preference_accuracy"] == pytest.approx(0.5)  # a tie is not a win
    assert scores["reward_margin"] == pytest.approx((1 - 1 + 1 + 0) / 4)


def test_mismatched_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        metrics.bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        metrics.rouge([], [])


def test_perplexity_is_exp_of_the_loss_and_does_not_overflow():
    assert metrics.perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert math.isfinite(metrics.perplexity(1e6))
