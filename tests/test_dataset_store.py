"""Saved datasets: uploads land safely in the data folder, and their records persist."""

import json
from pathlib import Path

import pytest

from modelforge import dataset_store
from modelforge.db import DatasetRecord
from modelforge.errors import DatasetError

PAIRS = [{"input": f"say {word}", "output": f"{word} {word}"} for word in ("cat", "dog", "cow", "owl", "fox")]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def upload(tmp_path):
    """A valid file as a browser upload leaves it: somewhere outside the data folder."""
    return write_jsonl(tmp_path / "upload.jsonl", PAIRS)


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
