"""The label-mask X-ray marks exactly the tokens the SFT strategy trains (checked against a real SFTTrainer's labels),
and refuses before training data that trains nothing, a template without assistant marks, or answers that never end."""

import json
import shutil
from pathlib import Path

import pytest

from sft_labels import ENDLESS_TEMPLATE, UNMARKED_TEMPLATE, assert_xray_matches_the_trainer, tokenizer_with_template
from modelforge import label_mask, preview
from modelforge.config import JobConfig
from modelforge.errors import DatasetError

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


def sample(name: str, count: int) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines()[:count]]


def test_the_xray_of_demo_rows_marks_exactly_the_tokens_sft_trains(demo_model_path, tmp_path):
    pairs = assert_xray_matches_the_trainer(demo_model_path, "text-generation", sample("text-generation.jsonl", 3), tmp_path)
    assert pairs[0].highlighted() == [("<s><|user|>lion mouse<|assistant|>", None), ("roar squeak</s>", "trained")]

    # A multi-turn conversation: every assistant turn (inside the template's generation marks) is trained.
    conversation = next(row for row in sample("chat.jsonl", 10) if len(row["messages"]) == 4)
    (chat,) = assert_xray_matches_the_trainer(demo_model_path, "chat", [conversation], tmp_path)
    replies = [message["content"] + "</s>" for message in conversation["messages"][1::2]]
    assert [text for text, label in chat.highlighted() if label == "trained"] == replies


def test_without_a_chat_template_the_xray_shows_the_plain_prompt_format(demo_model_path, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(demo_model_path, plain, ignore=shutil.ignore_patterns("chat_template.jinja"))
    (row,) = assert_xray_matches_the_trainer(plain, "text-generation", sample("text-generation.jsonl", 1), tmp_path)
    assert row.highlighted() == [("lion mouse\n", None), ("roar squeak</s>", "trained")]  # as_turns: prompt, newline


def test_data_that_trains_nothing_is_refused_with_the_fix(demo_model_path):
    long_prompts = [{"input": " ".join(["cat dog"] * 10), "output": "meow woof"}] * 3
    tokenizer = preview.load_tokenizer(demo_model_path)
    with pytest.raises(DatasetError, match=r"Every row is masked: no row has an answer token within max_length 12 "
                       r"tokens .* raise max length \(training.max_length\) to \d+"):
        label_mask.check(tokenizer, long_prompts, "text-generation", max_length=12)
    label_mask.check(tokenizer, long_prompts, "text-generation", max_length=64)  # long enough: accepted


def test_a_template_without_assistant_marks_is_refused_for_multi_turn_chat(demo_model_path, tmp_path):
    tokenizer = preview.load_tokenizer(tokenizer_with_template(demo_model_path, tmp_path / "tok", UNMARKED_TEMPLATE))
    conversations = sample("chat.jsonl", 60)
    turns = sum(sum(m["role"] == "assistant" for m in row["messages"]) > 1 for row in conversations)
    with pytest.raises(DatasetError, match=rf"does not mark the assistant's turns .* {turns} of 60 conversations have "
                       r"earlier assistant replies .* Fix: wrap the assistant message"):
        label_mask.check(tokenizer, conversations, "chat", 512)
    single = [row for row in conversations if len(row["messages"]) == 2]
    label_mask.check(tokenizer, single, "chat", 512)  # one reply each: its last reply is all there is to train


def test_answers_without_an_end_of_turn_token_are_refused_at_submit(engine, demo_model_path, tmp_path):
    folder = tokenizer_with_template(demo_model_path, tmp_path / "endless", ENDLESS_TEMPLATE)
    shutil.copy(demo_model_path / "config.json", folder / "config.json")
    config = JobConfig(model=str(folder), dataset=str(SAMPLES / "text-generation.jsonl"))
    with pytest.raises(DatasetError, match=r"Row 1's answer ends without an end-of-turn token: its chat template writes "
                       r"no EOS token \(</s>\) .* Fix: end the assistant turn with \{\{ eos_token \}\}"):
        engine.submit(config)
    assert engine.list_jobs() == []
