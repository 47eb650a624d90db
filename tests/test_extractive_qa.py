"""Extractive QA: an encoder's span head learns to answer from the context, through the real job path.

The task, assets/samples/extractive-qa-demo.jsonl, in the demo vocabulary: a context states one fact about each of a few animals ("the cow eats grass. the fox
lives in the den. the owl is brown."), and a question asks for one of them ("what does the cow eat?" -> "grass"). The
facts are drawn at random, so only reading the context answers them. The held-out rows are drawn the same way.
"""

import json
import random
from pathlib import Path

import pytest

from modelforge import metrics
from modelforge.config import JobConfig
from modelforge.errors import DatasetError

ANIMALS = "cat dog cow duck sheep horse pig bird frog fish bee lion tiger bear wolf fox rabbit mouse snake spider owl goat"
FOODS = "apple banana orange grape lemon bread milk cheese egg rice cake tea coffee water juice soup meat honey carrot"
PLACES = "house garden farm barn forest river lake pond sea hill mountain island beach field hive nest web stable den"
COLORS = "red blue green yellow black white brown pink purple gray gold silver"
# relation: (how the context says it, the question, the answer, the values)
FACTS = {
    "food": ("the {} eats {}.", "what does the {} eat?", "{}", FOODS.split()),
    "home": ("the {} lives in the {}.", "where does the {} live?", "the {}", PLACES.split()),
    "color": ("the {} is {}.", "what color is the {}?", "{}", COLORS.split()),
}
SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "extractive-qa-demo.jsonl"
MAX_LENGTH = 64  # tokens per window: a long context (14 facts) needs two or three


def fact_rows(seed: int, count: int, animals: int, asked_from_last: int | None = None) -> list[dict]:
    """Rows of `animals` facts each; the question asks about one of them (one of the last `asked_from_last`).

    The sample holds fact_rows(0, 200, animals=4) + fact_rows(1, 60, animals=14), its answers in SQuAD's form.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        facts = []
        for animal in rng.sample(ANIMALS.split(), animals):
            statement, question, answer, values = FACTS[rng.choice(list(FACTS))]
            value = rng.choice(values)
            facts.append((statement.format(animal, value), question.format(animal), answer.format(value)))
        asked = rng.randrange(len(facts) - (asked_from_last or len(facts)), len(facts))
        before = " ".join(statement for statement, _, _ in facts[:asked])
        statement, question, answer = facts[asked]
        start = len(before) + bool(before) + statement.rindex(answer)
        context = " ".join(statement for statement, _, _ in facts)
        assert context[start : start + len(answer)] == answer
        rows.append({"context": context, "question": question, "answer": {"text": answer, "start": start}})
    return rows


def squad_scores(model, tokenizer, rows: list[dict]) -> dict[str, float]:
    """Exact match and F1 (0-100, SQuAD normalisation) of the predicted spans, checked to be spans of the context."""
    from modelforge.prediction import answer_question

    predictions = []
    for row in rows:
        answer = answer_question(model, tokenizer, row["question"], row["context"], max_length=MAX_LENGTH)
        assert row["context"][answer["start"] : answer["end"]] == answer["text"]
        predictions.append(answer["text"])
    return metrics.squad(predictions, [[row["answer"]["text"]] for row in rows])


def windows_of(tokenizer, row: dict) -> list[tuple[int, int]]:
    from modelforge.strategies import span_qa

    features = span_qa.features(tokenizer, [row], MAX_LENGTH)
    return list(zip(features["start_positions"], features["end_positions"]))


def test_lora_on_the_span_head_learns_to_answer_short_and_long_contexts(engine, demo_qa_path):
    """Measured here (EM / F1, 0-100, held-out): 18 / 62 untrained -> 100 / 100 on contexts of 4 facts, and 7 / 40 ->
    97 / 97 on contexts of 14 facts split into 2-3 windows with the answer beyond the first, after 80 LoRA steps."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_qa_path)
    short, long = fact_rows(2, 50, animals=4), fact_rows(3, 30, animals=14, asked_from_last=3)
    # Every long held-out context needs several windows, and its answer lies beyond the first.
    assert all(len(windows_of(tokenizer, row)) > 1 and windows_of(tokenizer, row)[0] == (0, 0) for row in long)
    base = AutoModelForQuestionAnswering.from_pretrained(demo_qa_path)
    before = {"short": squad_scores(base, tokenizer, short), "long": squad_scores(base, tokenizer, long)}
    config = JobConfig(
        name="facts", task="extractive-qa", dataset=str(SAMPLE),  # no model: the span-QA demo
        training={"max_steps": 80, "batch_size": 16, "learning_rate": 3e-3, "max_length": MAX_LENGTH,
                  "save_steps": 100, "logging_steps": 10},
    )
    job = engine.runner.wait(engine.submit(config).id)
    assert job.status == "completed", job.error
    assert "eval_loss" in job.final_metrics
    adapter = PeftConfig.from_pretrained(job.output_dir)
    assert adapter.task_type == "QUESTION_ANS" and "qa_outputs" in adapter.modules_to_save  # the head trained too

    tuned = PeftModel.from_pretrained(base, job.output_dir)
    after = {"short": squad_scores(tuned, tokenizer, short), "long": squad_scores(tuned, tokenizer, long)}
    for kind in ("short", "long"):
        assert after[kind]["exact_match"] >= 80 and after[kind]["f1"] >= 85, (kind, before, after)
        assert after[kind]["exact_match"] >= before[kind]["exact_match"] + 50, (kind, before, after)


def test_qlora_trains_the_span_head_beside_adapters_on_a_4bit_encoder(engine, demo_qa_path):
    """The span head (2 outputs) stays in full precision, the encoder's linear layers are 4-bit, and it learns."""
    from bitsandbytes.nn import Linear4bit
    from peft import PeftModel
    from transformers import AutoTokenizer

    from modelforge.providers import PROVIDERS
    from modelforge.runtime import Runtime

    config = JobConfig(
        name="facts-4bit", task="extractive-qa", strategy="qlora", dataset=str(SAMPLE),
        training={"max_steps": 60, "batch_size": 16, "learning_rate": 3e-3, "save_steps": 100, "logging_steps": 10},
    )
    job = engine.runner.wait(engine.submit(config).id)
    assert job.status == "completed", job.error

    loaded = PROVIDERS["huggingface"].load(JobConfig.load(f"{job.output_dir}/modelforge.yaml"), Runtime("cpu", "fp32", False), str(demo_qa_path))
    quantized = [name for name, module in loaded.model.named_modules() if isinstance(module, Linear4bit)]
    assert len(quantized) == 4 * 6 and "qa_outputs" not in quantized  # q, k, v, o, up and down in each layer
    tuned = PeftModel.from_pretrained(loaded.model, job.output_dir)
    scores = squad_scores(tuned, AutoTokenizer.from_pretrained(demo_qa_path), fact_rows(2, 50, animals=4))
    assert scores["exact_match"] >= 80, scores


def test_a_window_without_the_whole_answer_points_at_its_first_token(demo_qa_path):
    from transformers import AutoTokenizer

    from modelforge.strategies import span_qa

    tokenizer = AutoTokenizer.from_pretrained(demo_qa_path)
    row = fact_rows(5, 1, animals=14, asked_from_last=1)[0]
    features = span_qa.features(tokenizer, [row], MAX_LENGTH)
    positions = list(zip(features["start_positions"], features["end_positions"]))
    assert len(positions) >= 2 and all(len(ids) <= MAX_LENGTH for ids in features["input_ids"])
    answered = [index for index, (start, _) in enumerate(positions) if start != 0]
    assert answered and answered[0] > 0 and all(positions[index] == (0, 0) for index in range(answered[0]))
    start, end = positions[answered[0]]
    ids = features["input_ids"][answered[0]][start : end + 1]
    assert tokenizer.decode(ids) == row["answer"]["text"]


def test_a_question_that_leaves_no_room_for_the_context_is_refused(demo_qa_path):
    from transformers import AutoTokenizer

    from modelforge.strategies import span_qa

    tokenizer = AutoTokenizer.from_pretrained(demo_qa_path)
    row = {**fact_rows(6, 1, animals=3)[0], "question": "where " * 60}
    with pytest.raises(DatasetError, match="raise training.max_length or shorten the question"):
        span_qa.features(tokenizer, [row], MAX_LENGTH)


def test_a_row_whose_answer_is_not_in_its_context_is_refused_with_its_line(engine, tmp_path):
    rows = fact_rows(7, 12, animals=3)
    rows[4] = {**rows[4], "answer": "the moon"}
    data = tmp_path / "facts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DatasetError, match="line 5: answer 'the moon' does not occur in the context"):
        engine.submit(JobConfig(name="bad-qa", task="extractive-qa", dataset=str(data)))
    assert engine.list_jobs() == []
