"""Reading, mapping and validating datasets: each test writes a small file and checks what the user is told."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelforge import data
from modelforge.data import FORMATS, detect_columns, load_records, read_rows, validate
from modelforge.errors import DatasetError
from modelforge.tasks import PREFERENCE_FIELDS

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
PAIRS = [{"input": f"question {n}", "output": f"answer {n}"} for n in range(12)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def messages_of(report) -> list[str]:
    return [str(issue) for issue in report.errors]


# -- reading -----------------------------------------------------------------------------------------------------


def test_formats_are_the_four_file_types():
    assert FORMATS == ("jsonl", "json", "csv", "parquet")


def test_jsonl_rows_keep_their_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n\n{"input": "c", "output": "d"}\n', encoding="utf-8")
    rows = read_rows(path)
    assert [(row.number, row.unit, row.values["input"]) for row in rows] == [(1, "line", "a"), (3, "line", "c")]


def test_malformed_json_line_is_named_with_its_line_and_reason(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": "c" "output": "d"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 2: not valid JSON: Expecting ',' delimiter \(column 15\)"):
        read_rows(path)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"input": "a", "output": "b"}, ["a", "b"]])
    with pytest.raises(DatasetError, match=r"line 2: expected a JSON object \{\.\.\.\}, got a list"):
        read_rows(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="file not found: .*nope.jsonl"):
        read_rows(tmp_path / "nope.jsonl")


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("hello\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unknown file type \.txt; use one of \.jsonl, \.json, \.csv, \.parquet"):
        read_rows(path)


@pytest.mark.parametrize("name, text", [("d.jsonl", "\n  \n"), ("d.json", ""), ("d.json", "[]"), ("d.csv", "a,b\n")])
def test_empty_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match="is empty: it has no rows"):
        read_rows(path)


def test_json_must_be_a_list_of_objects(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"input": "a", "output": "b"}', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"expected a JSON array of objects \[\{\.\.\.\}, \.\.\.\], got an object"):
        read_rows(path)
    path.write_text('[{"input": "a"}, "b"]', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"row 2: expected a JSON object \{\.\.\.\}, got text"):
        read_rows(path)


def test_json_lines_saved_as_json_are_read_as_lines(tmp_path):
    path = write_jsonl(tmp_path / "d.json", PAIRS[:2])
    assert [(row.number, row.unit) for row in read_rows(path)] == [(1, "line"), (2, "line")]


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("input,output\ncaf\u00e9,x\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"d.csv, line 2, byte 4: not UTF-8 text \(byte 0xe9\).*save it as UTF-8"):
        read_rows(path)


def test_csv_numbers_its_lines_from_the_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('input,output\na,b\n"multi\nline",c\nd,e\n', encoding="utf-8")
    rows = read_rows(path)
    assert [(row.number, row.values) for row in rows] == [
        (2, {"input": "a", "output": "b"}),
        (3, {"input": "multi\nline", "output": "c"}),
        (5, {"input": "d", "output": "e"}),
    ]


def test_csv_row_with_the_wrong_number_of_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("input,output\na,b\nc,d,e\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 3: has 3 values but the header names 2 columns"):
        read_rows(path)


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("not parquet", encoding="utf-8")
    with pytest.raises(DatasetError, match="is not a readable parquet file"):
        read_rows(path)


def test_folder_is_not_a_data_file(tmp_path):
    with pytest.raises(DatasetError, match="is a folder; give a data file"):
        read_rows(tmp_path)


# -- round trips -------------------------------------------------------------------------------------------------


def test_csv_json_and_parquet_give_the_same_records_as_jsonl(tmp_path):
    expected = load_records(write_jsonl(tmp_path / "d.jsonl", PAIRS), "text-generation")
    (tmp_path / "d.json").write_text(json.dumps(PAIRS), encoding="utf-8")
    (tmp_path / "d.csv").write_text(
        "input,output\n" + "".join(f"{row['input']},{row['output']}\n" for row in PAIRS), encoding="utf-8"
    )
    pq.write_table(pa.Table.from_pylist(PAIRS), tmp_path / "d.parquet")
    assert expected == PAIRS
    for name in ("d.json", "d.csv", "d.parquet"):
        assert load_records(tmp_path / name, "text-generation") == PAIRS, name


def test_parquet_rows_are_numbered_as_rows(tmp_path):
    rows = [*PAIRS[:3], {"input": "", "output": "x"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    report = validate(tmp_path / "d.parquet", "text-generation")
    assert messages_of(report) == ["row 4: input is empty"]


def test_numbers_in_csv_are_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("input,output\n" + "".join(f"{n} + {n},{2 * n}\n" for n in range(12)), encoding="utf-8")
    assert load_records(path, "text-generation")[3] == {"input": "3 + 3", "output": "6"}


# -- columns -----------------------------------------------------------------------------------------------------


def test_exact_names_win_over_aliases():
    assert detect_columns(["prompt", "input", "output"], ("input", "output")) == {"input": "input", "output": "output"}


@pytest.mark.parametrize(
    "names, fields, expected",
    [
        (["instruction", "response"], ("input", "output"), {"input": "instruction", "output": "response"}),
        (["Document", "Summary"], ("input", "output"), {"input": "Document", "output": "Summary"}),
        (["conversations"], ("messages",), {"messages": "conversations"}),
        (["passage", "question", "answers"], ("context", "question", "answer"),
         {"context": "passage", "question": "question", "answer": "answers"}),
        (["question", "chosen", "rejected"], PREFERENCE_FIELDS,
         {"prompt": "question", "chosen": "chosen", "rejected": "rejected"}),
        (["text"], ("input", "output"), {"input": "text"}),
    ],
)
def test_aliases_are_detected(names, fields, expected):
    assert detect_columns(names, fields) == expected


def test_user_mapping_wins_and_its_column_is_not_reused():
    mapping = detect_columns(["prompt", "question", "answer"], ("input", "output"), {"input": "question"})
    assert mapping == {"input": "question", "output": "answer"}


def test_validate_uses_the_user_mapping(tmp_path):
    rows = [{"q": row["input"], "a": row["output"], "input": "ignored"} for row in PAIRS]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    records = load_records(path, "text-generation", columns={"input": "q", "output": "a"})
    assert records == PAIRS


def test_missing_field_is_named_with_the_existing_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"input": row["input"], "label": "x"} for row in PAIRS])
    report = validate(path, "text-generation")
    assert not report.ok
    assert messages_of(report) == [
        "no column for output; the columns are: input, label. "
        "Rename one to 'output' or map it, e.g. columns: {output: <column>}"
    ]


def test_mapping_to_an_unknown_column_lists_the_existing_ones(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", PAIRS)
    report = validate(path, "text-generation", columns={"output": "reply"})
    assert messages_of(report) == [
        "columns maps output to 'reply', which is not a column; the columns are: input, output"
    ]


# -- rows --------------------------------------------------------------------------------------------------------


def test_row_problems_are_reported_with_their_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(row) for row in PAIRS]
    lines[2] = json.dumps({"input": "   ", "output": "x"})
    lines[4] = json.dumps({"input": "x", "output": 42})
    lines[6] = json.dumps({"input": "x"})
    lines[8] = '{"input": "x", "output": }'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = validate(path, "text-generation")
    assert messages_of(report) == [
        "line 3: input is empty",
        "line 5: output must be text, got a number",
        "line 7: output is missing",
        "line 9: not valid JSON: Expecting value (column 26)",
    ]
    assert report.rows == 12 and len(report.records) == 8
    assert [(issue.number, issue.field) for issue in report.errors] == [
        (3, "input"), (5, "output"), (7, "output"), (9, None)
    ]


def test_problems_name_the_column_when_it_differs_from_the_field(tmp_path):
    rows = [{"instruction": row["input"], "response": row["output"]} for row in PAIRS]
    rows[1]["response"] = ""
    report = validate(write_jsonl(tmp_path / "d.jsonl", rows), "text-generation")
    assert messages_of(report) == ["line 2: output (column 'response') is empty"]


def test_duplicates_are_a_warning(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [*PAIRS, PAIRS[1]])
    report = validate(path, "text-generation")
    assert report.ok
    assert [str(issue) for issue in report.warnings] == ["line 13: duplicate of line 2"]
    assert len(report.records) == 13


def test_too_few_rows(tmp_path):
    report = validate(write_jsonl(tmp_path / "one.jsonl", PAIRS[:1]), "text-generation")
    assert messages_of(report) == ["only 1 valid row; training needs at least 2"]
    report = validate(write_jsonl(tmp_path / "five.jsonl", PAIRS[:5]), "text-generation")
    assert report.ok
    assert [str(issue) for issue in report.warnings] == ["only 5 rows; fine-tuning usually needs hundreds of examples"]


def test_load_records_raises_the_summary(tmp_path):
    rows = [*PAIRS, *({"input": "", "output": "x"} for _ in range(14))]
    with pytest.raises(DatasetError) as caught:
        load_records(write_jsonl(tmp_path / "d.jsonl", rows), "text-generation")
    summary = str(caught.value)
    assert summary.splitlines()[:3] == [
        f"{tmp_path / 'd.jsonl'}: 26 rows, 12 valid; columns: input, output",
        "14 errors:",
        "  line 13: input is empty",
    ]
    assert summary.splitlines()[-1] == "  ... and 4 more errors"


def test_summary_of_a_clean_source(tmp_path):
    report = validate(write_jsonl(tmp_path / "d.jsonl", PAIRS), "summarization")
    assert report.summary().splitlines()[1] == "No problems found."


# -- chat --------------------------------------------------------------------------------------------------------


def chat(*turns):
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


GOOD_CHAT = chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"))


@pytest.mark.parametrize(
    "row, message",
    [
        ({"messages": "Hi"}, "messages must be a list of {role, content} turns, got text"),
        ({"messages": []}, "messages is empty"),
        ({"messages": ["Hi"]}, "messages turn 1 must be an object with role and content, got text"),
        (chat(("user", "Hi"), ("bot", "Hello")), "messages turn 2 has role 'bot'; use one of system, user, assistant"),
        (chat(("user", "Hi"), ("assistant", 3)), "messages turn 2 content must be non-empty text, got a number"),
        (chat(("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")),
         "messages must end with an assistant turn, but the last turn is from the user"),
    ],
)
def test_wrong_messages_are_reported(tmp_path, row, message):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD_CHAT, GOOD_CHAT, row])
    assert messages_of(validate(path, "chat")) == [f"line 3: {message}"]


def test_sharegpt_conversations_become_messages(tmp_path):
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    records = load_records(write_jsonl(tmp_path / "d.jsonl", [row, row]), "chat")
    assert records[0] == chat(("user", "Hi"), ("assistant", "Hello!"))


# -- extractive QA and preference pairs --------------------------------------------------------------------------

CONTEXT = "The Amazon flows into the Atlantic Ocean. It crosses Brazil."


def qa(answer, question="Where does it flow?"):
    return {"context": CONTEXT, "question": question, "answer": answer}


def test_answers_are_normalised_to_text_and_offset(tmp_path):
    rows = [
        qa("the Atlantic Ocean"),
        qa({"text": ["Brazil"], "answer_start": [53]}, "Which country?"),
        qa({"text": ["Brazil"], "answer_start": [0]}, "Which country, again?"),  # a wrong offset is corrected
    ]
    records = load_records(write_jsonl(tmp_path / "d.jsonl", rows), "extractive-qa")
    assert [record["answer"] for record in records] == [
        {"text": "the Atlantic Ocean", "start": 22},
        {"text": "Brazil", "start": 53},
        {"text": "Brazil", "start": 53},
    ]


def test_normalised_answers_read_back_the_same(tmp_path):
    """A file of records this module wrote keeps each answer's offset, even where the text occurs earlier too."""
    row = {"context": "a cat and a cat", "question": "Which cat?", "answer": {"text": "cat", "start": 12}}
    records = load_records(write_jsonl(tmp_path / "d.jsonl", [row, row]), "extractive-qa")
    assert records[0]["answer"] == {"text": "cat", "start": 12}


def test_answer_not_in_context_is_an_error_with_its_line(tmp_path):
    rows = [qa("the Atlantic Ocean"), qa("Brazil", "Which country?"), qa("the Pacific", "Where else?")]
    report = validate(write_jsonl(tmp_path / "d.jsonl", rows), "extractive-qa")
    assert messages_of(report) == ["line 3: answer 'the Pacific' does not occur in the context"]


def test_squad_answers_column_without_text(tmp_path):
    rows = [
        {"context": CONTEXT, "question": "q1", "answers": {"text": ["Brazil"], "answer_start": [53]}},
        {"context": CONTEXT, "question": "q2", "answers": {"text": ["Brazil"], "answer_start": [53]}},
        {"context": CONTEXT, "question": "q3", "answers": {"text": [], "answer_start": []}},
    ]
    report = validate(write_jsonl(tmp_path / "d.jsonl", rows), "extractive-qa")
    assert messages_of(report) == [
        "line 3: answer (column 'answers') has no text (questions without an answer are not supported)"
    ]


def test_preference_pair_with_the_same_answers(tmp_path):
    rows = [{"prompt": "p", "chosen": "good", "rejected": "bad"}, {"prompt": "q", "chosen": "same", "rejected": "same"}]
    report = validate(write_jsonl(tmp_path / "d.jsonl", rows * 2), "text-generation", fields=PREFERENCE_FIELDS)
    assert messages_of(report)[0] == (
        "line 2: chosen and rejected are the same text; a preference pair needs two different answers"
    )
    assert report.errors[0].field == "rejected"


# -- hub datasets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("squad", ("squad", "train")),
        ("owner/name", ("owner/name", "train")),
        ("owner/name:validation", ("owner/name", "validation")),
        ("owner/name:train[:100]", ("owner/name", "train[:100]")),
        ("data.jsonl", None),
        ("owner/data.csv", None),
        ("./data", None),
        ("a/b/c", None),
    ],
)
def test_hub_ids_are_told_from_file_names(source, expected):
    assert data.parse_hub_id(source) == expected


def test_existing_local_path_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mydata").mkdir()
    assert data.is_hub_id("owner/name") and not data.is_hub_id("mydata")


def test_hub_dataset_offline_is_a_dataset_error(monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # the libraries read those variables when first imported, which may have happened before this test
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match=r"could not download someone/missing-set \(split test\) .*"
                       r"Check the id, your network, or use a local file\."):
        validate("someone/missing-set:test", "text-generation")


def test_hub_dataset_rows_are_validated(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(dataset_id, split):
        calls.append((dataset_id, split))
        return datasets.Dataset.from_list([{"document": row["input"], "summary": row["output"]} for row in PAIRS])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    report = validate("someone/news:validation", "summarization")
    assert calls == [("someone/news", "validation")]
    assert report.ok and report.records == PAIRS
    assert report.columns == {"input": "document", "output": "summary"}


def test_missing_local_file_that_is_not_a_hub_id(tmp_path):
    with pytest.raises(DatasetError, match="file not found: .*missing.csv"):
        validate(tmp_path / "missing.csv", "text-generation")


# -- shipped samples ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, task, fields",
    [
        ("summarization", "summarization", None),
        ("extractive-qa", "extractive-qa", None),
        ("preference", "text-generation", PREFERENCE_FIELDS),
    ],
)
def test_shipped_samples_validate_cleanly(name, task, fields):
    report = validate(SAMPLES / f"{name}.jsonl", task, fields=fields)
    assert report.ok and not report.warnings, report.summary()
    assert report.rows >= 40
