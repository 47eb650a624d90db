"""Reading a user's dataset: load its rows, map its columns to the task's fields, check every row, report what to fix.

A source is a local file (jsonl, json, csv or parquet) or a Hugging Face Hub dataset id (`name`, `owner/name` or
`owner/name:split`). This module imports no torch or transformers, since the web UI imports it; `datasets` is
imported only when a hub dataset is downloaded.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge.errors import DatasetError
from modelforge.tasks import PREFERENCE_FIELDS, TASKS, UNPAIRED_FIELDS

FORMATS = ("jsonl", "json", "csv", "parquet")
MIN_ROWS = 2  # fewer valid rows is an error: too little to train on
FEW_ROWS = 10  # fewer valid rows is a warning
ROLES = ("system", "user", "assistant")
# Longer text is surely a mistake (a whole book in one cell; training keeps max_length tokens of a row anyway), and
# tokenizing it would stall the preview.
MAX_TEXT_CHARS = 1_000_000

# Column names commonly used for each field, tried in order (ignoring case) when no column has the field's name.
ALIASES: dict[str, tuple[str, ...]] = {
    "input": ("instruction", "prompt", "question", "query", "text", "document", "article", "dialogue", "source"),
    "output": ("response", "answer", "completion", "target", "summary", "highlights"),
    "messages": ("conversations", "conversation", "chat", "dialog"),
    "context": ("passage", "paragraph", "document", "text"),
    "question": ("query", "prompt"),
    "answer": ("answers", "answer_text"),
    "prompt": ("instruction", "question", "input", "query"),
    "chosen": ("chosen_response", "preferred", "accepted"),
    "rejected": ("rejected_response", "dispreferred"),
    "completion": ("response", "answer", "output"),
    "label": ("desirable", "good", "thumbs_up"),
}
LABELS = {"true": True, "false": False}  # a label written as text, as a CSV file holds every value

# ShareGPT-style turns ({"from": "human", "value": ...}) are read as {"role": "user", "content": ...}.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}

_HUB_ID = re.compile(
    r"(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)?)(?::(?P<split>[A-Za-z0-9_.%:\[\]+-]+))?"
)
_FORMAT_LIST = ", ".join(f".{name}" for name in FORMATS)
# JSON strings hold no raw CR or LF, so any line end splits JSON lines safely; U+2028 does not (str.splitlines would).
_LINE_END = re.compile(r"\r\n|\r|\n")
# NUL: the sign of a binary or UTF-16 file; a lone surrogate (from an escape such as \ud800) cannot be encoded.
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_WIDE_ENCODINGS = (  # longest BOM first: UTF-32-LE's starts with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)
_KINDS = {
    str: "text",
    int: "a number",
    float: "a number",
    bool: "true/false",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


@dataclass(slots=True)  # not frozen: a frozen dataclass is several times slower to create, for millions of rows
class Row:
    """One row of a source and where it came from."""

    number: int  # 1-based: the line of a jsonl or csv file (a csv header is line 1), else the row's position
    values: dict[str, Any]
    unit: str = "line"  # what `number` counts: "line" or "row"


@dataclass(frozen=True)
class Issue:
    """One problem: where it is (None for the whole source), the field it concerns (or None), and what is wrong."""

    number: int | None
    field: str | None
    message: str
    unit: str = "line"

    def __str__(self) -> str:
        return self.message if self.number is None else f"{self.unit} {self.number}: {self.message}"


@dataclass
class ValidationReport:
    """What `validate` found: the column mapping used, the canonical records of the valid rows, and the problems."""

    source: str
    fields: tuple[str, ...]
    columns: dict[str, str] = field(default_factory=dict)  # field -> column of the source
    rows: int = 0  # rows in the source, malformed ones included
    records: list[dict[str, Any]] = field(default_factory=list)  # one per valid row, keyed by exactly `fields`
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self, limit: int = 10) -> str:
        """A few lines for a person: the counts, the first `limit` errors and warnings, and how many more there are."""
        mapping = ", ".join(name if column == name else f"{name} <- {column}" for name, column in self.columns.items())
        lines = [f"{self.source}: {_count(self.rows, 'row')}, {len(self.records)} valid; columns: {mapping or 'none'}"]
        for kind, issues in (("error", self.errors), ("warning", self.warnings)):
            if issues:
                lines.append(f"{_count(len(issues), kind)}:")
                lines += [f"  {issue}" for issue in issues[:limit]]
                if len(issues) > limit:
                    lines.append(f"  ... and {_count(len(issues) - limit, 'more ' + kind)}")
        if not self.errors and not self.warnings:
            lines.append("No problems found.")
        return "\n".join(lines)


def read_rows(path: str | Path) -> list[Row]:
    """The rows of a local file; DatasetError when it is missing, of an unknown type, empty or malformed."""
    rows, malformed = _read_file(Path(path))
    if malformed:
        others = len(malformed) - 1
        more = f" (and {_count(others, 'more malformed ' + malformed[0].unit)})" if others else ""
        raise DatasetError(f"{path}, {malformed[0]}{more}")
    return rows


def read_hub_rows(dataset_id: str, split: str = "train") -> list[Row]:
    """The rows of one split of a Hugging Face Hub dataset; DatasetError when it cannot be downloaded or is empty."""
    import datasets

    try:
        data = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # offline, unknown id, gated, bad split: the hub client raises many unrelated types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"could not download {dataset_id} (split {split}) from the Hugging Face Hub: {reason}. "
            "Check the id, your network, or use a local file."
        ) from None
    rows = [Row(number, values, "row") for number, values in enumerate(data, start=1)]
    if not rows:
        raise DatasetError(f"{dataset_id} (split {split}) is empty: it has no rows")
    return rows


def is_hub_id(source: str | Path) -> bool:
    """Whether `source` names a Hugging Face Hub dataset: no such local path, and shaped like one (see parse_hub_id)."""
    return parse_hub_id(str(source)) is not None and not Path(source).exists()


def parse_hub_id(source: str) -> tuple[str, str] | None:
    """(dataset id, split) when `source` looks like `name`, `owner/name` or `owner/name:split` (the split defaults to
    train), or None when it looks like a file name: a path, or a name ending in one of FORMATS."""
    match = _HUB_ID.fullmatch(source)
    if match is None or Path(match["id"]).suffix.lower().lstrip(".") in FORMATS:
        return None
    return match["id"], match["split"] or "train"


def detect_columns(
    column_names: list[str], fields: tuple[str, ...], columns: dict[str, str] | None = None
) -> dict[str, str]:
    """Map each field to a column: the user's `columns` first, then a column named as the field, then an alias.

    A column serves one field at most. Fields with no column are left out of the result.
    """
    mapping = {name: column for name, column in (columns or {}).items() if name in fields}
    free = [column for column in column_names if column not in mapping.values()]
    for name in fields:
        if name not in mapping and name in free:
            mapping[name] = name
            free.remove(name)
    for name in fields:
        if name in mapping:
            continue
        by_lower = {column.lower(): column for column in free}
        found = next((by_lower[alias] for alias in (name, *ALIASES.get(name, ())) if alias in by_lower), None)
        if found is not None:
            mapping[name] = found
            free.remove(found)
    return {name: mapping[name] for name in fields if name in mapping}


def validate(
    source: str | Path,
    task: str,
    columns: dict[str, str] | None = None,
    fields: tuple[str, ...] | None = None,
    min_rows: int = MIN_ROWS,
) -> ValidationReport:
    """Check a source against the task's fields, or against `fields` (e.g. PREFERENCE_FIELDS for dpo).

    Unpaired fields (kto) read a source of preference pairs as its pairs: the report's fields say so, and the
    strategy turns each pair into a good and a bad answer.
    Raises DatasetError when the source cannot be read at all; every other problem goes into the report.
    """
    fields = tuple(fields or TASKS[task].fields)
    rows, malformed = _read_source(str(source))
    names = list(dict.fromkeys(column for row in rows for column in row.values))
    if fields == UNPAIRED_FIELDS and _holds_pairs_instead(names, columns):
        fields = PREFERENCE_FIELDS
    report = ValidationReport(str(source), fields, detect_columns(names, fields, columns), len(rows) + len(malformed))
    report.errors += malformed
    if not rows:  # every line malformed: the column mapping of nothing would only add noise
        return report
    mapping_errors = _mapping_errors(report.columns, fields, names)
    if mapping_errors:
        report.errors = mapping_errors + report.errors
        return report

    first_seen: dict[tuple, int] = {}
    for row in rows:
        record, issues = _check_row(row, report.columns)
        report.errors += issues
        if record is None:
            continue
        # the same fields in the same order for every record: its values identify it
        key = tuple(value if isinstance(value, str) else json.dumps(value, sort_keys=True) for value in record.values())
        if key in first_seen:
            report.warnings.append(Issue(row.number, None, f"duplicate of {row.unit} {first_seen[key]}", row.unit))
        else:
            first_seen[key] = row.number
        report.records.append(record)

    valid = len(report.records)
    if valid < min_rows:
        message = f"only {_count(valid, 'valid row')}; training needs at least {min_rows}"
        report.errors.append(Issue(None, None, message))
    elif valid < FEW_ROWS:
        report.warnings.append(
            Issue(None, None, f"only {_count(valid, 'row')}; fine-tuning usually needs hundreds of examples")
        )
    report.errors.sort(key=lambda issue: issue.number or 0)
    return report


def _holds_pairs_instead(names: list[str], columns: dict[str, str] | None) -> bool:
    """Whether columns lack the unpaired fields but hold every field of a preference pair."""
    unpaired, pairs = detect_columns(names, UNPAIRED_FIELDS, columns), detect_columns(names, PREFERENCE_FIELDS, columns)
    return len(unpaired) < len(UNPAIRED_FIELDS) and len(pairs) == len(PREFERENCE_FIELDS)


def load_records(
    source: str | Path, task: str, columns: dict[str, str] | None = None, fields: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """The canonical records of a source, or DatasetError with the report's summary when it has errors."""
    report = validate(source, task, columns, fields)
    if not report.ok:
        raise DatasetError(report.summary())
    return report.records


def split_records(records: list[dict], eval_split: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): the same split from the same seed, for training and for a later evaluation."""
    if eval_split <= 0 or len(records) < 10:
        return records, []
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    held_out = max(1, round(len(shuffled) * eval_split))
    return shuffled[held_out:], shuffled[:held_out]


# -- reading -----------------------------------------------------------------------------------------------------


def _read_source(source: str) -> tuple[list[Row], list[Issue]]:
    """Rows and malformed lines of a local file, or the rows of a hub dataset."""
    if is_hub_id(source):
        return read_hub_rows(*parse_hub_id(source)), []
    return _read_file(Path(source))


def _read_file(path: Path) -> tuple[list[Row], list[Issue]]:
    if not path.exists():
        raise DatasetError(f"file not found: {path}")
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; give a data file ({_FORMAT_LIST})")
    kind = path.suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise DatasetError(f"{path}: unknown file type {path.suffix or '(no extension)'}; use one of {_FORMAT_LIST}")
    rows, malformed = _READERS[kind](path)
    if not rows and not malformed:
        raise DatasetError(f"{path} is empty: it has no rows")
    return rows, malformed


def _read_text(path: Path) -> str:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from None
    encoding = _wide_encoding(content)
    if encoding:
        raise DatasetError(f"{path} is {encoding} text; save it as UTF-8 (e.g. `iconv -f {encoding} -t UTF-8`)")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, line_start = content.count(b"\n", 0, exc.start) + 1, content.rfind(b"\n", 0, exc.start) + 1
        where = f"line {line}, byte {exc.start - line_start + 1}"
        raise DatasetError(
            f"{path}, {where}: not UTF-8 text (byte {content[exc.start]:#04x}); it may be Latin-1 or Windows-1252: "
            "save it as UTF-8"
        ) from None


def _wide_encoding(content: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when the bytes start with that BOM, or look like UTF-16 text without one (NUL bytes at
    every other position: ASCII in UTF-16); None otherwise."""
    for bom, encoding in _WIDE_ENCODINGS:
        if content.startswith(bom):
            return encoding
    start = content[:4096]
    nuls = sorted((start[0::2].count(0), start[1::2].count(0)))
    return "UTF-16" if len(start) >= 8 and nuls[1] > len(start) // 4 and nuls[0] < nuls[1] // 8 else None


def _loads(text: str) -> Any:
    """json.loads, with nesting too deep to read reported as a JSONDecodeError (it raises RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _read_jsonl(path: Path) -> tuple[list[Row], list[Issue]]:
    return _parse_json_lines(_read_text(path))


def _parse_json_lines(text: str) -> tuple[list[Row], list[Issue]]:
    rows, malformed = [], []
    for number, line in enumerate(_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        try:
            values = _loads(line)
        except json.JSONDecodeError as exc:
            malformed.append(Issue(number, None, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        if isinstance(values, dict):
            rows.append(Row(number, values))
        else:
            malformed.append(Issue(number, None, f"expected a JSON object {{...}}, got {_kind(values)}"))
    return rows, malformed


def _read_json(path: Path) -> tuple[list[Row], list[Issue]]:
    text = _read_text(path)
    if not text.strip():
        return [], []
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # JSON lines saved as .json
            return _parse_json_lines(text)
        raise DatasetError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON array of objects [{{...}}, ...], got {_kind(data)}")
    rows, malformed = [], []
    for number, values in enumerate(data, start=1):
        if isinstance(values, dict):
            rows.append(Row(number, values, "row"))
        else:
            malformed.append(Issue(number, None, f"expected a JSON object {{...}}, got {_kind(values)}", "row"))
    return rows, malformed


def _read_csv(path: Path) -> tuple[list[Row], list[Issue]]:
    # strict: an unclosed quote is an error, not a value that swallows the rest of the file
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    csv.field_size_limit(2**31 - 1)  # the default 128 KB would hide MAX_TEXT_CHARS's clearer error
    header: list[str] | None = None
    rows, malformed = [], []
    end = 0  # the line the previous record ended on; a quoted value may span lines
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:
                continue
            if header is None:
                header = record
            elif len(record) == len(header):
                rows.append(Row(start, dict(zip(header, record))))
            else:
                message = f"has {_count(len(record), 'value')} but the header names {_count(len(header), 'column')}"
                malformed.append(Issue(start, None, message))
    except csv.Error as exc:
        hint = "; a quoted value that starts here is never closed" if "end of data" in str(exc) else ""
        raise DatasetError(f"{path}, line {end + 1}: not valid CSV: {exc}{hint}") from None
    if header is not None and not rows and not malformed:
        raise DatasetError(f"{path} is empty: it has no rows, only a header line")
    return rows, malformed


def _read_parquet(path: Path) -> tuple[list[Row], list[Issue]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path} is not a readable parquet file: {exc}") from None
    return [Row(number, values, "row") for number, values in enumerate(table.to_pylist(), start=1)], []


_READERS = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "parquet": _read_parquet}


# -- checking ----------------------------------------------------------------------------------------------------


def _mapping_errors(columns: dict[str, str], fields: tuple[str, ...], names: list[str]) -> list[Issue]:
    existing = ", ".join(names) or "none"
    errors = []
    for name in fields:
        if name not in columns:
            message = (
                f"no column for {name}; the columns are: {existing}. "
                f"Rename one to {name!r} or map it, e.g. columns: {{{name}: <column>}}"
            )
            errors.append(Issue(None, name, message))
        elif columns[name] not in names:
            message = f"columns maps {name} to {columns[name]!r}, which is not a column; the columns are: {existing}"
            errors.append(Issue(None, name, message))
    return errors


def _check_row(row: Row, columns: dict[str, str]) -> tuple[dict[str, Any] | None, list[Issue]]:
    """The canonical record of a row, or None and the row's problems."""
    record, issues = {}, []
    for name, column in columns.items():
        try:
            record[name] = _value(name, row.values, column)
        except ValueError as exc:
            issues.append(Issue(row.number, name, f"{_label(name, column)} {exc}", row.unit))
    if not issues and "answer" in record and "context" in record:
        try:
            record["answer"] = _answer(record["answer"], record["context"])
        except ValueError as exc:
            issues.append(Issue(row.number, "answer", f"{_label('answer', columns['answer'])} {exc}", row.unit))
    if not issues and "chosen" in record and record["chosen"] == record["rejected"]:
        message = "chosen and rejected are the same text; a preference pair needs two different answers"
        issues.append(Issue(row.number, "rejected", message, row.unit))
    return (None, issues) if issues else (record, [])


def _value(name: str, values: dict[str, Any], column: str) -> Any:
    if column not in values:
        raise ValueError("is missing")
    value = values[column]
    if value is None or value in ([], {}) or (isinstance(value, str) and not value.strip()):
        raise ValueError("is empty")
    if name == "messages":
        return _messages(value)
    if name == "answer":  # text or SQuAD style, checked against its context once the whole row is read
        return value
    if name == "label":
        return _label_value(value)
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {_kind(value)}")
    return _checked_text(value)


def _checked_text(value: str) -> str:
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(
            f"is {len(value):,} characters long; a value can be at most {MAX_TEXT_CHARS:,} (training keeps only "
            "max_length tokens of a row): shorten it or split it into several rows"
        )
    bad = _BAD_CHARACTER.search(value)
    if bad:
        what = "a NUL character (a binary file?)" if bad[0] == "\x00" else f"an unpaired surrogate \\u{ord(bad[0]):04x}"
        raise ValueError(f"holds an invalid character at position {bad.start() + 1}: {what}; fix or remove it")
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of {{role, content}} turns, got {_kind(value)}")
    turns = []
    for number, turn in enumerate(value, start=1):
        if isinstance(turn, dict) and "from" in turn and "role" not in turn:
            turn = {"role": SHAREGPT_ROLES.get(turn["from"], turn["from"]), "content": turn.get("value")}
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ValueError(f"turn {number} must be an object with role and content, got {_kind(turn)}")
        if turn["role"] not in ROLES:
            raise ValueError(f"turn {number} has role {turn['role']!r}; use one of {', '.join(ROLES)}")
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            raise ValueError(f"turn {number} content must be non-empty text, got {_kind(turn['content'])}")
        try:
            _checked_text(turn["content"])
        except ValueError as exc:
            raise ValueError(f"turn {number} content {exc}") from None
        turns.append({"role": turn["role"], "content": turn["content"]})
    _check_turn_order([turn["role"] for turn in turns])
    if turns[-1]["role"] != "assistant":
        raise ValueError(f"must end with an assistant turn, but the last turn is from the {turns[-1]['role']}")
    return turns


def _check_turn_order(roles: list[str]) -> None:
    """An optional system turn, then user and assistant turns in turn, the user first (as chat templates expect)."""
    expected = "user"
    for number, role in enumerate(roles, start=1):
        if role == "system":
            if number > 1:
                raise ValueError(f"turn {number} is a system turn; a system turn can only come first")
            continue
        if role != expected:
            if expected == "user" and number == 1 + (roles[0] == "system"):
                raise ValueError(
                    f"turn {number} is from the assistant; a conversation starts with the user (after an optional "
                    "system turn)"
                )
            raise ValueError(f"turn {number} is from the {role} again; user and assistant turns must alternate")
        expected = "assistant" if role == "user" else "user"


def _label_value(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return LABELS[value.strip().lower()]
    shown = repr(value) if isinstance(value, (str, int, float)) else _kind(value)
    raise ValueError(f"must be true (a good answer) or false (a bad answer), got {shown}")


def _answer(value: Any, context: str) -> dict[str, Any]:
    """{"text", "start"}: an answer given as text or SQuAD style, and its offset in the context.

    A SQuAD `answer_start` (or the `start` this function writes, so its output reads back the same) is kept when it
    points at the text; otherwise the text's first occurrence is used.
    """
    text, start = value, None
    if isinstance(value, dict):
        text, start = value.get("text"), value.get("answer_start", value.get("start"))
        if isinstance(text, list):
            if not text:
                raise ValueError("has no text (questions without an answer are not supported)")
            text, start = text[0], start[0] if isinstance(start, list) and start else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'must be text or {{"text": [...], "answer_start": [...]}}, got {_kind(value)}')
    if not (isinstance(start, int) and start >= 0 and context[start : start + len(text)] == text):
        start = context.find(text)
    if start < 0:
        raise ValueError(f"{text!r} does not occur in the context")
    return {"text": text, "start": start}


def _label(name: str, column: str) -> str:
    return name if column == name else f"{name} (column {column!r})"


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity"
    return _KINDS.get(type(value), type(value).__name__)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
