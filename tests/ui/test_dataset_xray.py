"""The Dataset tab's label-mask X-ray through the running app's API: each previewed row's trained tokens, and the
three refusals (every row masked, no assistant marks, no end-of-turn token) shown at Validate with their fix."""

import json
from pathlib import Path

from gradio_client import handle_file

from sft_labels import ENDLESS_TEMPLATE, UNMARKED_TEMPLATE, tokenizer_with_template
from modelforge.ui.dataset_tab import PREVIEW_ROWS, SLOTS

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"


def validate(client, path: Path, task: str, model: str = "", max_length: int = 512):
    """(report without markdown escapes, the X-ray rows) of pressing Validate."""
    outputs = client.predict(
        file=handle_file(str(path)), hub_id="", task=task, strategy=None, model=model, max_length=max_length,
        **{f"column_{slot}": None for slot in range(1, SLOTS + 1)}, api_name="/dataset_validate",
    )
    return outputs[0].replace("\\", ""), outputs[-PREVIEW_ROWS:]


def spans(row: dict) -> list[tuple[str, str | None]]:
    return [(span["token"], span["class_or_confidence"]) for span in row["value"]]


def test_the_xray_marks_each_answer_as_trained(app_client):
    report, rows = validate(app_client, SAMPLES / "text-generation.jsonl", "text-generation")
    assert report.startswith("### ✅ Valid")
    first = [json.loads(line) for line in (SAMPLES / "text-generation.jsonl").read_text().splitlines()[:PREVIEW_ROWS]]
    for row, record in zip(rows, first):
        assert row["visible"] is True
        assert spans(row) == [(f"<s><|user|>{record['input']}<|assistant|>", None), (f"{record['output']}</s>", "trained")]
    assert rows[0]["label"] == "Row 1: 3 of 8 tokens trained"  # roar, squeak, </s> of <s> <|user|> lion mouse <|assistant|> …


def test_the_three_refusals_are_shown_at_validate_with_their_fix(app_client, demo_model_path, tmp_path):
    long_prompts = tmp_path / "long.jsonl"
    long_prompts.write_text("".join(json.dumps({"input": "cat dog " * 10, "output": "meow"}) + "\n" for _ in range(3)))
    report, rows = validate(app_client, long_prompts, "text-generation", max_length=8)
    assert report.startswith("❌ Every row is masked") and "raise max length (training.max_length) to" in report
    assert all(label is None for _, label in spans(rows[0]))  # the X-ray shows why: nothing is marked

    unmarked = tokenizer_with_template(demo_model_path, tmp_path / "unmarked", UNMARKED_TEMPLATE)
    report, _ = validate(app_client, SAMPLES / "chat.jsonl", "chat", model=str(unmarked))
    assert report.startswith("❌ The chat template of unmarked does not mark the assistant") and "Fix: wrap" in report

    endless = tokenizer_with_template(demo_model_path, tmp_path / "endless", ENDLESS_TEMPLATE)
    report, rows = validate(app_client, SAMPLES / "text-generation.jsonl", "text-generation", model=str(endless))
    assert report.startswith("❌ Row 1's answer ends without an end-of-turn token") and "Fix: end" in report
    assert spans(rows[0])[-1] == ("roar squeak", "trained")
