"""Saved datasets: uploads land safely in the data folder, records persist, and the preview is what the model sees."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from modelforge import dataset_store
from modelforge.db import DatasetRecord
from modelforge.errors import DatasetError, ModelLoadError

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
PAIRS = [{"input": f"say {word}", "output": f"{word} {word}"} for word in ("cat", "dog", "cow", "owl", "fox")]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def upload(tmp_path):
    """A valid file as a browser upload leaves it: somewhere outside the data folder."""
    return write_jsonl(tmp_path / "upload.jsonl", PAIRS)


@pytest.fixture
def demo_tokenizer(demo_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_path)


# -- uploads -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "original, stored",
    [
        ("../../evil.jsonl", "evil.jsonl"),
        ("..\\..\\windows.csv", "windows.csv"),
        ("/etc/cron.d/job.json", "job.json"),
        ("my data (1).JSONL", "my_data_1.jsonl"),
        ("..jsonl", "dataset.jsonl"),
        ("ünïcode näme.parquet", "n_code_n_me.parquet"),
    ],
)
def test_upload_is_stored_under_the_data_folder_with_a_sanitised_name(settings, upload, original, stored):
    path = dataset_store.store_upload(settings, upload, original)
    assert path.parent == settings.datasets_dir.resolve()
    assert path.name == stored
    assert path.read_bytes() == upload.read_bytes()


def test_uploads_with_the_same_name_never_overwrite_each_other(settings, upload, tmp_path):
    other = write_jsonl(tmp_path / "other.jsonl", PAIRS[:2])
    first = dataset_store.store_upload(settings, upload, "../../data.jsonl")
    second = dataset_store.store_upload(settings, other, "data.jsonl")
    assert (first.name, second.name) == ("data.jsonl", "data-2.jsonl")
    assert first.read_bytes() == upload.read_bytes()
    assert second.read_bytes() == other.read_bytes()


@pytest.mark.parametrize("original", ["payload.exe", "archive.jsonl.gz", "no_extension", "..", "../../"])
def test_unsupported_file_types_are_refused(settings, upload, original):
    with pytest.raises(DatasetError, match="unsupported file type; upload one of .jsonl, .json, .csv, .parquet"):
        dataset_store.store_upload(settings, upload, original)
    assert not settings.datasets_dir.exists() or not any(settings.datasets_dir.iterdir())


def test_upload_over_the_size_limit_is_refused(settings, tmp_path, monkeypatch):
    big = write_jsonl(tmp_path / "big.jsonl", PAIRS * 40)  # about 2 KB
    monkeypatch.setenv("MODELFORGE_MAX_UPLOAD_MB", "0.001")  # about 1 KB
    limit = r"big.jsonl is [\d.]+ KB, over the upload limit of 0.001 MB; .* with MODELFORGE_MAX_UPLOAD_MB"
    with pytest.raises(DatasetError, match=limit):
        dataset_store.store_upload(settings, big, "big.jsonl")
    assert not settings.datasets_dir.exists() or not any(settings.datasets_dir.iterdir())
    monkeypatch.setenv("MODELFORGE_MAX_UPLOAD_MB", "1")
    assert dataset_store.store_upload(settings, big, "big.jsonl").stat().st_size == big.stat().st_size


def test_default_size_limit_is_200_mb(monkeypatch):
    monkeypatch.delenv("MODELFORGE_MAX_UPLOAD_MB", raising=False)
    assert dataset_store.max_upload_mb() == 200


# -- saved datasets ----------------------------------------------------------------------------------------------


def test_saved_dataset_is_recorded_listed_and_offered_to_training(engine, upload):
    settings = engine.settings
    stored = dataset_store.store_upload(settings, upload, "pairs.jsonl")
    saved = dataset_store.save_dataset(settings, "word-pairs_v1.0", stored, "text-generation", None)
    assert {key: saved[key] for key in ("name", "task", "path", "columns", "rows")} == {
        "name": "word-pairs_v1.0",
        "task": "text-generation",
        "path": str(stored),
        "columns": {"input": "input", "output": "output"},
        "rows": 5,
    }
    record = DatasetRecord.get(DatasetRecord.name == "word-pairs_v1.0")
    assert (record.path, json.loads(record.columns), record.rows) == (str(stored), saved["columns"], 5)
    assert [dataset["name"] for dataset in dataset_store.list_datasets()] == ["word-pairs_v1.0"]
    assert ("word-pairs_v1.0 (5 rows)", "word-pairs_v1.0") in engine.dataset_choices("text-generation")


def test_the_finetune_tab_offers_the_samples_of_the_task_or_of_the_strategy(engine):
    def samples(task, strategy="sft"):
        return [label for label, _ in engine.dataset_choices(task, strategy) if label.startswith("sample:")]

    assert samples("summarization") == ["sample: summarization.jsonl", "sample: summarization-demo.jsonl"]
    assert samples("text-generation", "dpo") == samples("chat", "rlhf") == ["sample: preference.jsonl"]


def test_save_records_the_column_mapping_used(engine, tmp_path):
    source = write_jsonl(tmp_path / "renamed.jsonl", [{"q": row["input"], "a": row["output"]} for row in PAIRS])
    mapping = {"input": "q", "output": "a"}
    saved = dataset_store.save_dataset(engine.settings, "renamed", source, "text-generation", mapping)
    assert saved["columns"] == {"input": "q", "output": "a"}
    assert json.loads(DatasetRecord.get(DatasetRecord.name == "renamed").columns) == {"input": "q", "output": "a"}


def test_duplicate_name_is_refused_clearly(engine, upload):
    dataset_store.save_dataset(engine.settings, "pairs", upload, "text-generation", None)
    with pytest.raises(DatasetError, match="a dataset named 'pairs' already exists; choose another name"):
        dataset_store.save_dataset(engine.settings, "pairs", upload, "text-generation", None)
    assert DatasetRecord.select().count() == 1


@pytest.mark.parametrize("name", ["", "  ", "with space", "../escape", "semi;colon", "x" * 101, ".."])
def test_names_outside_the_rules_are_refused(engine, upload, name):
    with pytest.raises(DatasetError, match="use letters, digits, '.', '_' and '-'"):
        dataset_store.save_dataset(engine.settings, name, upload, "text-generation", None)
    assert DatasetRecord.select().count() == 0


def test_invalid_dataset_is_not_saved(engine, tmp_path):
    source = write_jsonl(tmp_path / "bad.jsonl", [*PAIRS, {"input": "no answer"}])
    with pytest.raises(DatasetError, match=r"(?s)not saved: the dataset has errors.*line 6: output is missing"):
        dataset_store.save_dataset(engine.settings, "bad", source, "text-generation", None)
    assert DatasetRecord.select().count() == 0


def test_delete_removes_the_record_and_only_files_under_the_data_folder(engine, upload):
    settings = engine.settings
    stored = dataset_store.store_upload(settings, upload, "pairs.jsonl")
    dataset_store.save_dataset(settings, "stored", stored, "text-generation", None)
    dataset_store.save_dataset(settings, "elsewhere", upload, "text-generation", None)
    dataset_store.delete_dataset(settings, "stored")
    dataset_store.delete_dataset(settings, "elsewhere")
    assert dataset_store.list_datasets() == []
    assert not stored.exists()
    assert upload.exists()  # the user's own file outside the data folder is never removed
    with pytest.raises(DatasetError, match="no saved dataset is named 'stored'"):
        dataset_store.delete_dataset(settings, "stored")


# -- what the model sees -----------------------------------------------------------------------------------------


def test_preview_applies_the_demo_chat_template_exactly_as_transformers(demo_model_path, demo_tokenizer):
    rows = dataset_store.preview(PAIRS, "text-generation", demo_model_path, limit=2)
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
    (chat,) = dataset_store.preview([{"messages": messages}], "chat", demo_model_path)
    assert chat == "<s><|system|>be brief<|user|>hi<|assistant|>hello</s>"
    assert chat == demo_tokenizer.apply_chat_template(messages, tokenize=False)
    record = {"context": "The sky is blue.", "question": "What colour?", "answer": {"text": "blue", "start": 11}}
    # A span model reads the question and the context as its tokenizer pairs them: the preview shows those tokens.
    from transformers import AutoTokenizer

    from modelforge.strategies.span_qa import encode_windows

    qa_tokenizer = AutoTokenizer.from_pretrained(demo_qa_path)
    trained_ids = encode_windows(qa_tokenizer, [record["question"]], [record["context"]], 384, None)["input_ids"][0]
    assert dataset_store.load_tokenizer(demo_qa_path).encode([record], "extractive-qa") == [trained_ids]
    (qa,) = dataset_store.preview([record], "extractive-qa", demo_qa_path)
    assert qa == qa_tokenizer.decode(trained_ids)
    assert qa.index("What colour?") < qa.index("The sky is blue.")


def test_preview_without_chat_template_is_prompt_newline_answer(demo_model_path, tmp_path):
    folder = tmp_path / "plain"
    shutil.copytree(demo_model_path, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert dataset_store.preview(PAIRS[:1], "text-generation", folder) == ["say cat\ncat cat</s>"]


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
    stats = dataset_store.token_stats(records, "summarization", demo_model_path, max_length=max_length)
    assert stats["lengths"] == expected
    assert stats["count"] == 40
    assert (stats["min"], stats["max"]) == (min(expected), max(expected))
    assert stats["mean"] == pytest.approx(np.mean(expected))
    assert stats["median"] == pytest.approx(np.median(expected))
    assert stats["p95"] == pytest.approx(np.percentile(expected, 95))
    assert stats["max_length"] == max_length
    assert stats["over_max_length"] == sum(length > max_length for length in expected) > 0


def test_token_stats_by_hand():
    lengths = [10, 20, 30, 40]
    figure = dataset_store.token_histogram(lengths, max_length=25)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert sum(patch.get_height() for patch in axes.patches) == 4  # every row counted once
    assert axes.get_lines()[0].get_xdata()[0] == 25  # the max_length line


def test_demo_model_is_the_default_and_an_unavailable_hub_model_falls_back_with_a_note(settings, demo_model_path):
    folder, note = dataset_store.resolve_model_folder(settings, None)
    assert (folder.resolve(), note) == (demo_model_path.resolve(), "")
    assert dataset_store.resolve_model_folder(settings, str(demo_model_path)) == (demo_model_path, "")
    folder, note = dataset_store.resolve_model_folder(settings, "someone/not-cached-model")
    assert folder.resolve() == demo_model_path.resolve()
    assert "someone/not-cached-model is not available offline" in note
    assert "demo model's tokenizer" in note


def test_missing_local_model_folder_is_an_error(settings, tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        dataset_store.resolve_model_folder(settings, str(tmp_path / "missing" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no tokenizer.json"):
        dataset_store.resolve_model_folder(settings, str(tmp_path / "empty"))
