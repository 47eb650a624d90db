"""Each task entry says what its rows mean: the models that learn it and the answer a row expects."""

import pytest
from transformers import AutoConfig

from modelforge import data
from modelforge.config import JobConfig
from modelforge.demo_model import DEMO_MODELS, demo_kind
from modelforge.training.evaluation import references
from modelforge.loading import model_class_for
from modelforge.settings import ASSETS_DIR
from modelforge.tasks import TASKS


@pytest.mark.parametrize("name", list(TASKS))
def test_a_task_sample_row_yields_its_question_and_expected_answer(name):
    task = TASKS[name]
    records = data.load_records(ASSETS_DIR / "samples" / f"{name}.jsonl", name)
    assert all(task.shown(record) and task.expected(record) for record in records)
    assert references(JobConfig(task=name, dataset="d.jsonl"), records[:1]) == [task.expected(records[0])]
    assert demo_kind(name) in DEMO_MODELS  # its first family has a demo model


@pytest.mark.parametrize(
    "name, encoder_decoder, loaded_as",
    [
        ("chat", False, "AutoModelForCausalLM"),
        ("summarization", True, "AutoModelForSeq2SeqLM"),
        ("summarization", False, "AutoModelForCausalLM"),  # a causal LM learns summaries too
        ("extractive-qa", False, "AutoModelForQuestionAnswering"),
    ],
)
def test_the_model_class_follows_the_task_family_and_the_model_shape(name, encoder_decoder, loaded_as):
    model_config = AutoConfig.for_model("t5" if encoder_decoder else "bert")
    assert model_class_for(name, model_config).__name__ == loaded_as
