"""A corpus of bad (and oddly shaped but good) datasets, written by the test that uses it: nothing binary is committed.

Each case writes one file and says what a user must be told about it: `expected` is a piece of the first error (or
None where the file is valid and must be accepted, e.g. a BOM or CRLF line ends).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

PAIRS = [{"input": f"say {word}", "output": f"{word} {word}"} for word in ("cat", "dog", "cow", "owl", "fox", "bee")]
TURNS = [{"messages": [{"role": "user", "content": f"hi {n}"}, {"role": "assistant", "content": f"ho {n}"}]} for n in range(4)]
PREFERENCES = [{"prompt": f"name {n}", "chosen": f"good {n}", "rejected": f"bad {n}"} for n in range(4)]
CONTEXT = "The Seine flows through Paris and reaches the sea at Le Havre."
QA = [{"context": CONTEXT, "question": f"Where does it reach the sea? ({n})", "answer": "Le Havre"} for n in range(3)]
BIG_ROWS = 1_000_000
BIG_BAD_LINE = 777_777  # the one bad line among BIG_ROWS
LONG_LINE_BYTES = 10 * 2**20


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # the file name written: its extension picks the reader
    write: Callable[[Path], None]
    expected: str | None  # part of the first error; None: the file is valid
    task: str = "text-generation"
    strategy: str | None = None  # a strategy whose fields differ from the task's (dpo: preference pairs)
    max_length: int | None = None  # where it matters: the label-mask check of the demo model's template, at Validate


def lines(text_lines: list[str], newline: str = "\n", encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda path: path.write_bytes((newline.join(text_lines) + newline).encode(encoding))


def rows(records: list, **options) -> Callable[[Path], None]:
    return lines([json.dumps(record, ensure_ascii=False) for record in records], **options)


def raw(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def parquet(table: pa.Table, cut: int | None = None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        pq.write_table(table, path)
        if cut is not None:
            path.write_bytes(path.read_bytes()[:cut])

    return write


def messages(*turns) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


_PAIRS_TABLE = pa.table({"input": [p["input"] for p in PAIRS], "output": [p["output"] for p in PAIRS]})
_GOOD = [json.dumps(pair) for pair in PAIRS]

CASES: list[Case] = [
    # -- encodings and line ends
    Case("utf-16 with BOM", "d.jsonl", rows(PAIRS, encoding="utf-16"), "is UTF-16 text"),
    Case("utf-16 without BOM", "d.jsonl", rows(PAIRS, encoding="utf-16-le"), "is UTF-16 text"),
    Case("utf-32", "d.jsonl", rows(PAIRS, encoding="utf-32"), "is UTF-32 text"),
    Case("latin-1 on line 4", "d.jsonl", lines([*_GOOD[:3], '{"input": "café", "output": "crème"}'], encoding="latin-1"),
         "line 4, byte 15: not UTF-8 text (byte 0xe9)"),
    Case("cp1252 csv", "d.csv", lines(["input,output", "say “hi”,hi", "a,b"], encoding="cp1252"), "line 2, byte 5: not UTF-8 text (byte 0x93)"),
    Case("UTF-8 BOM jsonl (valid)", "d.jsonl", rows(PAIRS, encoding="utf-8-sig"), None),
    Case("UTF-8 BOM csv header (valid)", "d.csv", lines(["input,output", "a,b", "c,d"], encoding="utf-8-sig"), None),
    Case("CRLF jsonl (valid)", "d.jsonl", rows(PAIRS, newline="\r\n"), None),
    Case("CRLF csv (valid)", "d.csv", lines(["input,output", "a,b", "c,d"], newline="\r\n"), None),
    Case("CR-only line ends (valid)", "d.jsonl", rows(PAIRS, newline="\r"), None),
    Case("lone surrogate escape", "d.jsonl", lines([*_GOOD[:2], '{"input": "bad \\ud800 text", "output": "x"}']),
         "line 3: input holds an invalid character"),
    Case("binary noise", "d.jsonl", raw(random.Random(0).randbytes(4096)), "not UTF-8 text"),
    Case("NUL bytes", "d.jsonl", raw(b"\x00" * 64 + b"\n" + _GOOD[0].encode()), "line 1: not valid JSON"),
    Case("NUL byte in csv", "d.csv", raw(b"input,output\na\x00,b\nc,d\n"), "line 2: input holds an invalid character at position 2: a NUL character"),
    # -- empty, truncated, wrong shape
    Case("empty file", "d.jsonl", raw(b""), "is empty: it has no rows"),
    Case("only blank lines", "d.jsonl", raw(b"\n  \n\t\n"), "is empty: it has no rows"),
    Case("csv header only", "d.csv", lines(["input,output"]), "is empty: it has no rows, only a header line"),
    Case("empty parquet", "d.parquet", parquet(_PAIRS_TABLE.slice(0, 0)), "is empty: it has no rows"),
    Case("truncated parquet", "d.parquet", parquet(_PAIRS_TABLE, cut=200), "is not a readable parquet file"),
    Case("text named .parquet", "d.parquet", lines(_GOOD), "is not a readable parquet file"),
    Case("truncated json array", "d.json", raw(json.dumps(PAIRS).encode()[:-20]), "is not valid JSON"),
    Case("json object, not array", "d.json", raw(json.dumps(PAIRS[0]).encode()), "expected a JSON array of objects"),
    Case("json array of strings", "d.json", raw(json.dumps(["a", "b", "c"]).encode()), "row 1: expected a JSON object"),
    Case("jsonl line is an array", "d.jsonl", lines([*_GOOD[:2], '["say cat", "cat cat"]', _GOOD[3]]),
         "line 3: expected a JSON object"),
    Case("deeply nested json", "d.jsonl", lines([*_GOOD[:2], "[" * 100_000 + "]" * 100_000]),
         "line 3: not valid JSON: nested too deeply"),
    Case("csv ragged row", "d.csv", lines(["input,output", "a,b", "c,d,e", "f,g"]), "line 3: has 3 values"),
    Case("csv unclosed quote", "d.csv", lines(["input,output", "a,b", '"c,d', "e,f"]),
         "line 3: not valid CSV: unexpected end of data; a quoted value that starts here is never closed"),
    # -- values of the wrong kind
    Case("nested object value", "d.jsonl", rows([*PAIRS[:2], {"input": {"text": "a"}, "output": "b"}]),
         "line 3: input must be text, got an object"),
    Case("NaN value", "d.jsonl", lines([*_GOOD[:2], '{"input": NaN, "output": "b"}']), "line 3: input must be text, got NaN"),
    Case("Infinity value", "d.jsonl", lines([*_GOOD[:2], '{"input": "a", "output": Infinity}']),
         "line 3: output must be text, got Infinity"),
    Case("numbers instead of text", "d.jsonl", rows([*PAIRS[:2], {"input": 12, "output": 3.5}]),
         "line 3: input must be text, got a number"),
    Case("true/false instead of text", "d.jsonl", rows([*PAIRS[:2], {"input": True, "output": "b"}]),
         "line 3: input must be text, got true/false"),
    Case("null value", "d.jsonl", rows([*PAIRS[:2], {"input": None, "output": "b"}]), "line 3: input is empty"),
    Case("parquet NaN and numbers", "d.parquet",
         parquet(pa.table({"input": [1.5, float("nan"), 3.0], "output": ["a", "b", "c"]})),
         "row 1: input must be text, got a number"),
    Case("parquet list column", "d.parquet", parquet(pa.table({"input": [["a"], ["b"]], "output": ["x", "y"]})),
         "row 1: input must be text, got a list"),
    # -- columns and tasks
    Case("wrong columns", "d.jsonl", rows([{"foo": "a", "bar": "b"}] * 3), "no column for input; the columns are: foo, bar"),
    Case("wrong csv header", "d.csv", lines(["question_text,reply_text", "a,b", "c,d"]), "no column for input"),
    Case("mixed tasks in one file", "d.jsonl", rows([*TURNS[:2], PAIRS[0], TURNS[2]]), "line 3: messages is missing",
         task="chat"),
    Case("chat rows for text generation", "d.jsonl", rows(TURNS), "no column for input"),
    Case("preference rows need rejected", "d.jsonl", rows([{"prompt": "a", "chosen": "b"}] * 3), "no column for rejected",
         strategy="dpo"),
    Case("chosen equals rejected", "d.jsonl", rows([*PREFERENCES[:2], {"prompt": "p", "chosen": "same", "rejected": "same"}]),
         "line 3: chosen and rejected are the same text", strategy="dpo"),
    Case("qa answer not in context", "d.jsonl", rows([*QA, {**QA[0], "answer": "Lyon"}]),
         "line 4: answer 'Lyon' does not occur in the context", task="extractive-qa"),
    Case("qa answer of the wrong type", "d.jsonl", rows([*QA, {**QA[0], "answer": {"text": [7], "answer_start": [0]}}]),
         "line 4: answer must be text", task="extractive-qa"),
    # -- chat turns
    Case("chat ends with the user", "d.jsonl", rows([*TURNS[:2], messages(("user", "a"), ("assistant", "b"), ("user", "c"))]),
         "line 3: messages must end with an assistant turn", task="chat"),
    Case("chat starts with the assistant", "d.jsonl",
         rows([*TURNS[:2], messages(("assistant", "a"), ("user", "b"), ("assistant", "c"))]),
         "line 3: messages turn 1 is from the assistant", task="chat"),
    Case("chat user twice in a row", "d.jsonl",
         rows([*TURNS[:2], messages(("user", "a"), ("user", "b"), ("assistant", "c"))]),
         "line 3: messages turn 2 is from the user again", task="chat"),
    Case("chat system turn in the middle", "d.jsonl",
         rows([*TURNS[:2], messages(("user", "a"), ("system", "b"), ("assistant", "c"))]),
         "line 3: messages turn 2 is a system turn", task="chat"),
    Case("chat unknown role", "d.jsonl", rows([*TURNS[:2], messages(("user", "a"), ("bot", "b"))]),
         "line 3: messages turn 2 has role 'bot'", task="chat"),
    Case("chat messages as a string", "d.jsonl", rows([*TURNS[:2], {"messages": json.dumps(TURNS[0]["messages"])}]),
         "line 3: messages must be a list", task="chat"),
    Case("chat content not text", "d.jsonl",
         rows([*TURNS[:2], {"messages": [{"role": "user", "content": ["a"]}, {"role": "assistant", "content": "b"}]}]),
         "line 3: messages turn 1 content must be non-empty text", task="chat"),
    # -- sizes
    Case("a 10 MB line", "d.jsonl",
         lines([*_GOOD[:2], json.dumps({"input": "a", "output": "x" * LONG_LINE_BYTES}), _GOOD[3]]),
         "line 3: output is 10,485,760 characters long"),
    Case("a 10 MB csv field", "d.csv", lines(["input,output", "a,b", "c," + "y" * LONG_LINE_BYTES]),
         "line 3: output is 10,485,760 characters long"),
    # -- what the model would learn (the label-mask check; the template cases are in tests/ui/test_dataset_xray.py)
    Case("every label masked", "d.jsonl", rows([{"input": f"cat dog {n} " * 10, "output": "meow"} for n in range(3)]),
         "Every row is masked: no row has an answer token within max_length 8", max_length=8),
    Case("1e6 rows, one bad", "big.jsonl", lambda path: write_big(path), f"line {BIG_BAD_LINE}: output is missing"),
]


def write_big(path: Path) -> None:
    """BIG_ROWS rows, distinct and valid except line BIG_BAD_LINE, which lacks its output."""
    with path.open("w", encoding="utf-8") as out:
        for number in range(1, BIG_ROWS + 1):
            row = {"input": f"w{number}"} if number == BIG_BAD_LINE else {"input": f"w{number}", "output": f"v{number}"}
            out.write(json.dumps(row) + "\n")


def write_corpus(folder: Path) -> list[tuple[Case, Path]]:
    """Every case's file, each in its own subfolder (the readers name files by their extension)."""
    written = []
    for number, case in enumerate(CASES, start=1):
        path = folder / f"{number:02d}" / case.file
        path.parent.mkdir(parents=True, exist_ok=True)
        case.write(path)
        written.append((case, path))
    return written
