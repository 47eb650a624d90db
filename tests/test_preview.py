"""What the model will see: a model's tokenizer and chat template read without transformers render rows exactly as
transformers does, their token lengths, and which tokenizer is used."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelforge import preview
from modelforge.errors import ModelLoadError

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
PAIRS = [{"input": f"say {word}", "output": f"{word} {word}"} for word in ("cat", "dog", "cow", "owl", "fox")]


@pytest.fixture
def demo_tokenizer(demo_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_path)


def test_preview_applies_the_demo_chat_template_exactly_as_transformers(demo_model_path, demo_tokenizer):
    rows = preview.preview(PAIRS, "text-generation", demo_model_path, limit=2)
    assert rows[0] == "<s><|user|>say cat<|assistant|>cat cat</s>"
    for row, record in zip(rows, PAIRS):
        messages = [{"role": "user", "content": record["input"]}, {"role": "assistant", "content": record["output"]}]
        assert row == demo_tokenizer.apply_chat_template(messages, tokenize=False)
    assert len(rows) == 2


def test_preview_of_chat_and_extractive_qa(demo_model_path, demo_tokenizer, demo_qa_path):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    (chat,) = preview.preview([{"messages": messages}], "chat", demo_model_path)
    assert chat == "<s><|system|>be brief<|user|>hi<|assistant|>hello</s>"
    assert chat == demo_tokenizer.apply_chat_template(messages, tokenize=False)
    record = {"context": "The sky is blue.", "question": "What colour?", "answer": {"text": "blue", "start": 11}}
    # A span model reads the question and the context as its tokenizer pairs them: the preview shows those tokens.
    from transformers import AutoTokenizer

    from modelforge.strategies.span_qa import encode_windows

    qa_tokenizer = AutoTokenizer.from_pretrained(demo_qa_path)
    trained_ids = encode_windows(qa_tokenizer, [record["question"]], [record["context"]], 384, None)["input_ids"][0]
    assert preview.load_tokenizer(demo_qa_path).encode([record], "extractive-qa") == [trained_ids]
    (qa,) = preview.preview([record], "extractive-qa", demo_qa_path)
    assert qa == qa_tokenizer.decode(trained_ids)
    assert qa.index("What colour?") < qa.index("The sky is blue.")


def test_preview_without_chat_template_is_prompt_newline_answer(demo_model_path, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(demo_model_path, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert preview.preview(PAIRS[:1], "text-generation", folder) == ["say cat\ncat cat</s>"]


def test_token_stats_of_a_known_file(demo_model_path, demo_tokenizer):
    from modelforge import data

    records = data.load_records(SAMPLES / "summarization.jsonl", "summarization")
    expected = [
        len(demo_tokenizer.apply_chat_template(
            [{"role": "user", "content": r["input"]}, {"role": "assistant", "content": r["output"]}], tokenize=True
        )["input_ids"])
        for r in records
    ]
    max_length = int(np.median(expected))
    stats = preview.token_stats(records, "summarization", demo_model_path, max_length=max_length)
    assert stats["lengths"] == expected
    assert stats["count"] == 40
    assert (stats["min"], stats["max"]) == (min(expected), max(expected))
    assert stats["mean"] == pytest.approx(np.mean(expected))
    assert stats["median"] == pytest.approx(np.median(expected))
    assert stats["p95"] == pytest.approx(np.percentile(expected, 95))
    assert stats["max_length"] == max_length
    assert stats["over_max_length"] == sum(length > max_length for length in expected) > 0


def test_demo_model_is_the_default_and_an_unavailable_hub_model_falls_back_with_a_note(settings, demo_model_path):
    folder, note = preview.resolve_model_folder(settings, None)
    assert (folder.resolve(), note) == (demo_model_path.resolve(), "")
    assert preview.resolve_model_folder(settings, str(demo_model_path)) == (demo_model_path, "")
    folder, note = preview.resolve_model_folder(settings, "someone/not-cached-model")
    assert folder.resolve() == demo_model_path.resolve()
    assert "someone/not-cached-model is not available offline" in note
    assert "demo model's tokenizer" in note


def test_missing_local_model_folder_is_an_error(settings, tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        preview.resolve_model_folder(settings, str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no tokenizer.json"):
        preview.resolve_model_folder(settings, str(tmp_path / "empty"))
