"""The Dataset tab through the running app's API: inspect, validate good and bad files, save, list."""

import json
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from modelforge.db import DatasetRecord
from modelforge.strategies import STRATEGIES
from modelforge.tasks import TASKS
from modelforge.ui import dataset_tab

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
PAIRS = [{"input": f"say {word}", "output": f"{word} {word}"} for word in ("cat", "dog", "cow", "owl", "fox")]
CONTEXT = "The Seine flows through Paris and reaches the sea at Le Havre."
QA = [{"context": CONTEXT, "question": "Where does it reach the sea?", "answer": "Le Havre"}] * 3


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def columns(*mapping) -> dict:
    """The column slots' keywords: the column of each field in order, the other slots empty."""
    return {f"column_{slot}": column for slot, column in enumerate((*mapping, None, None, None)[:3], start=1)}


def validate(client, path, task, *mapping):
    """(report, preview, stats, plot, then the column of each of the three fields)."""
    return client.predict(
        file=handle_file(str(path)), hub_id="", task=task, strategy=None, model="", max_length=512, **columns(*mapping),
        api_name="/dataset_validate",
    )


def save(client, name, path, task, *mapping):
    """(message, saved table) of pressing Save."""
    return client.predict(
        name=name, file=handle_file(str(path)), hub_id="", task=task, strategy=None, **columns(*mapping),
        api_name="/dataset_save",
    )


def test_task_and_strategy_choices_are_the_registries(engine):
    with gr.Blocks() as app:
        dataset_tab.build(engine)
    dropdowns = {block.label: block for block in app.blocks.values() if isinstance(block, gr.Dropdown)}
    assert [value for _, value in dropdowns["Task"].choices] == list(TASKS)
    assert [value for _, value in dropdowns["Strategy (optional)"].choices] == list(STRATEGIES)
    assert engine.dataset_fields("extractive-qa", None) == TASKS["extractive-qa"].fields
    assert all(engine.dataset_fields("chat", name) == STRATEGIES[name].fields("chat") for name in STRATEGIES)


def test_inspect_fills_the_column_mapping(app_client, tmp_path):
    path = write_jsonl(tmp_path / "My Pairs.jsonl", [{"prompt": r["input"], "response": r["output"]} for r in PAIRS])
    message, first, second, third, name = app_client.predict(
        file=handle_file(str(path)), task="text-generation", strategy=None, api_name="/dataset_inspect"
    )
    assert "5 rows; columns: prompt, response" in message
    assert (first["label"], first["value"]) == ("column for input", "prompt")
    assert first["choices"] == [["prompt", "prompt"], ["response", "response"]]
    assert (second["label"], second["value"]) == ("column for output", "response")
    assert third["visible"] is False
    assert name == "My_Pairs"


def test_inspect_names_a_malformed_line_without_the_server_path(app_client, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n{not json}\n", encoding="utf-8")
    message, first, second, third, name = app_client.predict(
        file=handle_file(str(path)), task="text-generation", strategy=None, api_name="/dataset_inspect"
    )
    assert message.startswith("❌ broken.jsonl, line 2: not valid JSON")
    assert str(tmp_path) not in message and "/tmp" not in message
    assert (first["choices"], first["value"]) == ([], None)


def test_good_file_validates_previews_saves_and_is_listed(app_client, engine):
    report, preview, stats, plot, *mapping = validate(app_client, SAMPLES / "summarization.jsonl", "summarization")
    assert report.startswith("### ✅ Valid")
    assert "40 rows, **40 valid**" in report
    # Summarization trains the encoder-decoder demo: it reads the article and learns to write the summary.
    assert preview.startswith("── row 1 ──\nThe town council voted")
    assert preview.count("\n→ ") == 5
    assert "**Token lengths** (demo-seq2seq-v1): 40 rows" in stats
    assert plot["type"] == "matplotlib"
    assert [update["value"] for update in mapping[:2]] == ["input", "output"]

    message, table = save(app_client, "news", SAMPLES / "summarization.jsonl", "summarization", "input", "output")
    assert message.startswith("✅ Saved **news**: 40 rows for summarization")
    assert [row[:3] for row in table["data"]] == [["news", "summarization", 40]]
    record = DatasetRecord.get(DatasetRecord.name == "news")
    stored = Path(record.path)
    assert stored.parent == engine.settings.datasets_dir.resolve() and stored.name == "summarization.jsonl"
    assert (record.task, record.rows) == ("summarization", 40)
    assert json.loads(record.columns) == {"input": "input", "output": "output"}

    listed = app_client.predict(api_name="/dataset_list")
    assert listed["headers"] == dataset_tab.TABLE_COLUMNS
    assert [row[:3] for row in listed["data"]] == [["news", "summarization", 40]]


def test_save_needs_a_successful_validation_of_the_same_data(app_client, tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", PAIRS)
    bad = write_jsonl(tmp_path / "bad.jsonl", PAIRS[:1])
    args = ("text-generation", "input", "output")
    message, *_ = save(app_client, "early", good, *args)
    assert message.startswith("❌ Press Validate first")

    validate(app_client, bad, "text-generation")
    message, *_ = save(app_client, "bad", bad, *args)
    assert message.startswith("❌ Press Validate first")

    validate(app_client, good, "text-generation")
    message, *_ = save(app_client, "renamed", good, "chat")
    assert message.startswith("❌ Press Validate first")  # the task changed since the validation
    message, *_ = save(app_client, "bad name!", good, *args)
    assert "is not allowed; use letters, digits" in message
    assert DatasetRecord.select().count() == 0


@pytest.mark.parametrize(
    "task, lines, expected",
    [
        ("text-generation", [*map(json.dumps, PAIRS[:2]), '{"input": "a" "output": "b"}', json.dumps(PAIRS[3])],
         "line 3: not valid JSON: Expecting ',' delimiter (column 15)"),
        ("text-generation", [*map(json.dumps, PAIRS[:3]), json.dumps({"input": "x"})], "line 4: output is missing"),
        ("text-generation", [json.dumps(PAIRS[0]), json.dumps({"input": "x", "output": " "}), json.dumps(PAIRS[2])],
         "line 2: output is empty"),
        ("text-generation", [json.dumps(PAIRS[0])], "only 1 valid row; training needs at least 2"),
        ("extractive-qa", [*map(json.dumps, QA), json.dumps({**QA[0], "answer": "Lyon"})],
         "line 4: answer 'Lyon' does not occur in the context"),
    ],
    ids=["malformed-json", "missing-field", "empty-value", "too-few-rows", "answer-not-in-context"],
)
def test_bad_files_are_reported_with_line_numbers(app_client, tmp_path, task, lines, expected):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report, preview, stats, plot, *_ = validate(app_client, path, task)
    assert report.startswith("### ❌")
    assert f"- {expected}" in report.replace("\\", "")
    message, _ = save(app_client, "data", path, task)
    assert message.startswith("❌ Press Validate first")


def test_missing_source_and_unsupported_file_are_clear_errors(app_client, tmp_path):
    report, *_ = app_client.predict(
        file=None, hub_id="", task="chat", strategy=None, model="", max_length=512, **columns(), api_name="/dataset_validate"
    )
    assert report == "❌ Upload a file or enter a Hugging Face Hub dataset id first."
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(AppError, match=r"Invalid file type.*\.jsonl"):  # gradio refuses it before our handler
        validate(app_client, path, "chat")
