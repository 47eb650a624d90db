"""Dataset tab: upload a file or name a Hub dataset, map its columns, validate it, see what the model sees, save it."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from modelforge.data import FORMATS
from modelforge.dataset_store import NAME_RULE
from modelforge.engine import PREVIEW_ROWS
from modelforge.preview import DEFAULT_MAX_LENGTH, DEMO_MODEL
from modelforge.errors import DatasetError, ModelForgeError, NotReadyError
from modelforge.strategies import STRATEGIES
from modelforge.tasks import DEFAULT_TASK, PREFERENCE_FIELDS, TASKS
from modelforge.ui.session import as_user, signed_in_only

FILE_TYPES = [f".{name}" for name in FORMATS]
# One column dropdown per field; a task or strategy needs at most this many fields, the rest are hidden.
SLOTS = max(len(fields) for fields in [*(task.fields for task in TASKS.values()), PREFERENCE_FIELDS])
TABLE_COLUMNS = ["name", "task", "rows", "columns", "path", "saved"]
ISSUES_SHOWN = 50

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")


def _escape(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _failure(exc: ModelForgeError, file: str | None) -> str:
    """An error for the page: the upload's server-side temporary path shortened to its file name."""
    text = str(exc).replace(file, Path(file).name) if file else str(exc)
    return f"❌ {_escape(text)}"


def _mapping(fields: tuple[str, ...], values: tuple) -> dict[str, str]:
    return {name: value for name, value in zip(fields, values) if value}


def _slot_updates(fields: tuple[str, ...], columns: list[str], mapping: dict[str, str]) -> list:
    return [
        gr.update(visible=True, label=f"column for {fields[slot]}", choices=columns, value=mapping.get(fields[slot]))
        if slot < len(fields)
        else gr.update(visible=False, choices=[], value=None)
        for slot in range(SLOTS)
    ]


def _report_markdown(report) -> str:
    """A ValidationReport for the page: the verdict, the mapping, and the errors and warnings by line."""
    source = Path(report.source).name if Path(report.source).exists() else report.source
    mapping = ", ".join(name if column == name else f"{name} ← {column}" for name, column in report.columns.items())
    errors = len(report.errors)
    lines = [
        f"### {'✅ Valid' if report.ok else f'❌ {errors} error' + ('s' if errors != 1 else '') + ' to fix'}",
        f"**{_escape(source)}**: {report.rows} rows, **{len(report.records)} valid**; "
        f"columns: {_escape(mapping or 'none')}",
    ]
    for title, issues in (("Errors", report.errors), ("Warnings", report.warnings)):
        if issues:
            lines += ["", f"**{title}**", *(f"- {_escape(str(issue))}" for issue in issues[:ISSUES_SHOWN])]
            if len(issues) > ISSUES_SHOWN:
                lines.append(f"- … and {len(issues) - ISSUES_SHOWN} more")
    if report.ok:
        lines += ["", "Give it a name and press **Save** to use it in the Finetune tab."]
    return "\n".join(lines)


def _stats_markdown(stats: dict, model: str, note: str, sampled_from: int | None) -> str:
    over = stats["over_max_length"]
    lines = [
        f"**Token lengths** ({_escape(model)}): {stats['count']} rows · min {stats['min']} · "
        f"mean {stats['mean']:.1f} · median {stats['median']:.1f} · p95 {stats['p95']:.1f} · max {stats['max']}",
        f"{'⚠️ ' if over else ''}{over} rows over max_length {stats['max_length']}"
        + (" (training truncates them)" if over else ""),
    ]
    if sampled_from:
        lines.append(f"Estimated from a random sample of {stats['count']} of {sampled_from} rows.")
    if note:
        lines.append(f"> {_escape(note)}")
    return "\n\n".join(lines)


def _xray_updates(masks: list) -> list:
    """One HighlightedText per previewed row (label_mask.RowMask): its trained tokens marked, the masked ones plain."""
    return [
        gr.update(
            visible=True, value=mask.highlighted(),
            label=f"Row {number}: {sum(mask.trained)} of {len(mask.ids)} tokens trained",
        )
        if number <= len(masks) else gr.update(visible=False, value=None)
        for number, mask in enumerate(masks + [None] * (PREVIEW_ROWS - len(masks)), start=1)
    ]


def _look(engine, records: list[dict], task: str, strategy, model: str, max_length, file: str | None) -> tuple:
    """(preview text, token statistics as markdown, histogram, refusal or None, X-ray updates) of valid records, with
    the chosen model's tokenizer. The refusal says why the SFT strategy would train nothing useful on them."""
    try:
        look = engine.dataset_look(records, task, strategy, model, max_length)
    except NotReadyError as exc:
        return "", f"⏳ {_escape(str(exc))}", None, None, _xray_updates([])
    except ModelForgeError as exc:
        return "", _failure(exc, file), None, None, _xray_updates([])
    shown = "\n\n".join(f"── row {number} ──\n{text}" for number, text in enumerate(look.rows, start=1))
    stats = _stats_markdown(look.stats, look.model, look.note, look.sampled_from)
    return shown, stats, look.figure, look.refusal, _xray_updates(look.masks)


def saved_table(engine, account):
    """The account's saved datasets as the table shows them."""
    rows = [
        [
            record["name"], record["task"], record["rows"],
            ", ".join(f"{field} ← {column}" for field, column in record["columns"].items()),
            record["path"], str(record["created_at"])[:19],
        ]
        for record in engine.list_datasets(account)
    ]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _columns(columns: dict) -> tuple:
    """The column chosen in each slot, in slot order, from the slots' keyword values (column_1, column_2, ...)."""
    return tuple(columns.get(f"column_{slot}") for slot in range(1, SLOTS + 1))


def inspect_file(engine, file, task, strategy):
    """A newly chosen file: its columns, the automatic mapping and a suggested name."""
    fields = engine.dataset_fields(task, strategy)
    invalid = [gr.update(interactive=False), None]
    if not file:
        return "", [], *_slot_updates(fields, [], {}), gr.skip(), *invalid
    try:
        safe_name, rows, names, mapping = engine.inspect_upload(file, fields)
    except ModelForgeError as exc:
        return _failure(exc, file), [], *_slot_updates(fields, [], {}), gr.skip(), *invalid
    missing = [field for field in fields if field not in mapping]
    message = f"**{_escape(Path(file).name)}**: {rows} rows; columns: {_escape(', '.join(names))}."
    if missing:
        message += f" Choose a column for {', '.join(missing)}, then press **Validate**."
    else:
        message += " Columns mapped automatically: check them and press **Validate**."
    return message, names, *_slot_updates(fields, names, mapping), safe_name.rsplit(".", 1)[0], *invalid


def remap(engine, task, strategy, names):
    """Another task or strategy: its fields mapped afresh onto the file's columns; Save waits for a new Validate."""
    fields = engine.dataset_fields(task, strategy)
    return *_slot_updates(fields, names, engine.map_columns(names, fields)), gr.update(interactive=False), None


def unvalidated():
    """A changed input: Save waits for a new Validate."""
    return gr.update(interactive=False), None


def validate(engine, file, hub_id, task, strategy, model, max_length, **columns):
    """The validation report, the preview, token statistics and the X-ray; Save enabled when the rows are good."""
    fields = engine.dataset_fields(task, strategy)
    invalid = [gr.update(interactive=False), None]
    hidden = _xray_updates([])
    try:
        source = engine.dataset_source(file, hub_id)
        result = engine.validate_dataset(source, task, _mapping(fields, _columns(columns)), fields)
    except ModelForgeError as exc:
        return _failure(exc, file), "", "", None, *invalid, *[gr.skip()] * SLOTS, *hidden
    mapping = [gr.update(value=result.columns.get(field)) for field in fields]
    mapping += [gr.skip()] * (SLOTS - len(fields))
    shown, stats_text, figure, refusal, xray = ("", "", None, None, hidden)
    if result.records:
        shown, stats_text, figure, refusal, xray = _look(engine, result.records, task, strategy, model, max_length, file)
    if not result.ok:
        return _report_markdown(result), shown, stats_text, figure, *invalid, *mapping, *xray
    if refusal is not None:
        return _failure(refusal, file), shown, stats_text, figure, *invalid, *mapping, *xray
    # As the slots show it: kto's fields map none of a preference pair's chosen and rejected columns, found by validation.
    mapped = {field: column for field, column in result.columns.items() if field in fields}
    key = {"source": source, "task": task, "fields": fields, "columns": mapped}
    return _report_markdown(result), shown, stats_text, figure, gr.update(interactive=True), key, *mapping, *xray


def save(engine, account, name, file, hub_id, task, strategy, validated, **columns):
    """Save the validated dataset under `name` for `account`; refused when anything changed since Validate."""
    fields = engine.dataset_fields(task, strategy)
    try:
        source = engine.dataset_source(file, hub_id)
        current = {"source": source, "task": task, "fields": fields, "columns": _mapping(fields, _columns(columns))}
        if validated != current:
            raise DatasetError("Press Validate first: the dataset, task or columns changed since the last check.")
        record = engine.save_dataset(name, source, task, current["columns"], fields, account, upload=bool(file))
    except ModelForgeError as exc:
        return _failure(exc, file), saved_table(engine, account), gr.skip(), gr.skip()
    message = (
        f"✅ Saved **{_escape(record['name'])}**: {record['rows']} rows for {record['task']}. "
        "Choose it as the dataset in the Finetune tab."
    )
    return message, saved_table(engine, account), gr.update(interactive=False), None


def build(engine) -> list:
    """Build the tab; returns the (function, outputs) pairs to run when a page loads."""
    with gr.Row():
        file = gr.File(label="Upload a dataset", file_types=FILE_TYPES, type="filepath")
        with gr.Column():
            hub_id = gr.Textbox(
                label="… or a Hugging Face Hub dataset id", placeholder="owner/name or owner/name:split"
            )
            task = gr.Dropdown(list(TASKS), value=DEFAULT_TASK, label="Task")
            strategy = gr.Dropdown(
                list(STRATEGIES), value=None, label="Strategy (optional)",
                info="the strategy that will train on this data decides the fields, e.g. prompt/chosen/rejected",
            )
    inspection = gr.Markdown()
    columns = gr.State([])  # the columns of the uploaded file, for the mapping dropdowns
    validated = gr.State(None)  # what the last successful validation checked; Save requires it unchanged
    with gr.Row():
        initial = engine.dataset_fields(task.value)
        slots = [
            gr.Dropdown(
                [], value=None, allow_custom_value=True, visible=slot < len(initial),
                label=f"column for {initial[slot]}" if slot < len(initial) else "column",
            )
            for slot in range(SLOTS)
        ]
    with gr.Row():
        model = gr.Textbox(
            label="Preview with the tokenizer of", placeholder=DEMO_MODEL,
            info="empty: the built-in demo model; or a local model folder or a Hub model id",
        )
        max_length = gr.Number(DEFAULT_MAX_LENGTH, label="max length (tokens)", precision=0, minimum=8)
        validate_button = gr.Button("Validate", variant="primary")
    report = gr.Markdown()
    with gr.Row():
        preview = gr.Textbox(label="Preview: the first rows as the model sees them", lines=10, max_lines=30)
        with gr.Column():
            stats = gr.Markdown()
            histogram = gr.Plot(label="Token lengths")
    with gr.Column():
        gr.Markdown("**Label-mask X-ray**: the tokens the model is trained to write are marked; the rest is masked.")
        xray_rows = [
            gr.HighlightedText(visible=False, color_map={"trained": "#54a24b"}, show_legend=True,
                               show_inline_category=False)
            for _ in range(PREVIEW_ROWS)
        ]
    with gr.Row():
        name = gr.Textbox(label="Dataset name", info=NAME_RULE)
        save_button = gr.Button("Save", interactive=False)
    saved = gr.Markdown()
    with gr.Row():
        gr.Markdown("### Saved datasets")
        refresh_button = gr.Button("Refresh", size="sm")
    table = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False)  # filled when a page loads

    # Reading a new file, validating and saving run one after another, in the order pressed: a Validate pressed while
    # the file is still being read must not have its result undone when the reading ends.
    in_order = dict(concurrency_id="dataset", concurrency_limit=1)
    named_slots = {f"column_{slot}": component for slot, component in enumerate(slots, start=1)}
    file.change(
        signed_in_only(engine, inspect_file), [file, task, strategy],
        [inspection, columns, *slots, name, save_button, validated], api_name="dataset_inspect", **in_order,
    )
    for component in (task, strategy):
        component.change(partial(remap, engine), [task, strategy, columns], [*slots, save_button, validated], api_name=False)
    for component in (hub_id, *slots):
        component.input(unvalidated, None, [save_button, validated], api_name=False)
    validate_button.click(
        signed_in_only(engine, validate), [file, hub_id, task, strategy, model, max_length],
        [report, preview, stats, histogram, save_button, validated, *slots, *xray_rows], inputs_kwargs=named_slots,
        api_name="dataset_validate", **in_order,
    )
    save_button.click(
        as_user(engine, save), [name, file, hub_id, task, strategy, validated], [saved, table, save_button, validated],
        inputs_kwargs=named_slots, api_name="dataset_save", **in_order,
    )
    saved_of_user = as_user(engine, saved_table)
    refresh_button.click(saved_of_user, None, table, api_name="dataset_list")
    return [(saved_of_user, [table])]
