"""The bundled animal -> sound rows the demo model learns, split the same way by the tests that train on them."""

import json
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "text-generation.jsonl"


def mapping_rows() -> tuple[list[dict], list[dict]]:
    """The bundled animal -> sound rows, every fifth one held out."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    return [row for i, row in enumerate(rows) if i % 5 != 4], [row for i, row in enumerate(rows) if i % 5 == 4]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
