"""The model card of a pushed job, read without a Hub: the snippet's loader for each model family, the settings it
names. (What a push uploads, the card's text among it, is tested in test_hub.py.)"""

import json

import pytest

from modelforge.config import JobConfig
from modelforge.model_card import hyperparameters, model_family, usage_snippet


@pytest.mark.parametrize(
    "files, family, loader",
    [
        ({"adapter_config.json": {"task_type": "CAUSAL_LM"}}, "causal", "AutoPeftModelForCausalLM"),
        ({"adapter_config.json": {"task_type": "SEQ_2_SEQ_LM"}}, "seq2seq", "AutoPeftModelForSeq2SeqLM"),
        ({"adapter_config.json": {"task_type": "QUESTION_ANS"}}, "qa", "AutoPeftModelForQuestionAnswering"),
        ({"config.json": {"architectures": ["LlamaForCausalLM"]}}, "causal", "AutoModelForCausalLM"),
        ({"config.json": {"architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True}}, "seq2seq",
         "AutoModelForSeq2SeqLM"),
        ({"config.json": {"architectures": ["BertForQuestionAnswering"]}}, "qa", "AutoModelForQuestionAnswering"),
    ],
)
def test_the_usage_snippet_uses_the_auto_class_of_the_pushed_model(tmp_path, files, family, loader):
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    assert model_family(tmp_path) == family
    snippet = usage_snippet("alice/demo", family, adapter="adapter_config.json" in files, has_chat_template=False)
    compile(snippet, "snippet", "exec")
    assert f'model = {loader}.from_pretrained("alice/demo")' in snippet


def test_a_preference_jobs_card_names_its_settings_and_starting_point_without_local_paths():
    config = JobConfig(dataset="p.jsonl", strategy="dpo", init_from="3", preference={"beta": 0.2})
    values = hyperparameters(config)
    assert values["init_from"] == "job 3" and values["preference.beta"] == 0.2
    folder = JobConfig(dataset="p.jsonl", strategy="dpo", init_from="/home/someone/runs/sft-adapter")
    assert hyperparameters(folder)["init_from"] == "sft-adapter"
    assert "init_from" not in hyperparameters(JobConfig(dataset="p.jsonl"))
