"""History tab: every job in the database; inspect one, compare several, delete finished ones."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from modelforge.errors import ModelForgeError
from modelforge.formatting import duration
from modelforge.ui.charts import colour_after, curve_frame
from modelforge.ui.evaluation_table import evaluation_table, scalar_metrics
from modelforge.ui.ranks_table import ranks_markdown
from modelforge.ui.session import as_user

COLUMNS = ["id", "name", "status", "task", "strategy", "model", "dataset", "started", "duration", "final loss", "eval loss",
           "launch"]


COMPARE_CHART = {"x": "step", "y": "loss", "color": "job"}


def _duration(view: dict) -> str:
    if not view["started_at"]:
        return ""
    end = view["finished_at"]
    if end is None:
        return "running"
    return duration((end - view["started_at"]).total_seconds())


def _row(view: dict) -> list:
    config = view["config"]
    metrics = view["metrics"]
    return [
        view["id"], view["name"], view["status"], config.task, config.strategy, config.model or "demo",
        config.dataset.rsplit("/", 1)[-1], str(view["started_at"] or "")[:19], _duration(view),
        round(metrics["train_loss"], 4) if "train_loss" in metrics else None,
        round(metrics["eval_loss"], 4) if "eval_loss" in metrics else None,
        view["launch"],
    ]


def _label(view: dict) -> str:
    return f"#{view['id']} {view['name']}"


def _ids(labels: list[str] | None) -> list[int]:
    return [int(label.split()[0].lstrip("#")) for label in labels or []]


def tracker_markdown(view: dict) -> str:
    """Where each of the job's trackers wrote, and the command that opens it (the server serves none of them)."""
    lines = [f"- **{t['name']}**: `{t['store']}` · open with `{t['viewer']}`" for t in view["trackers"]]
    return "\n\n**Trackers** (in the job's folder)\n" + "\n".join(lines) if lines else ""


def refresh(engine, account):
    """The account's jobs as the table's rows, and the labels to inspect or compare them by."""
    views = [engine.job_view(job.id, account) for job in engine.list_jobs(account)]
    return (
        pd.DataFrame([_row(view) for view in views], columns=COLUMNS),
        gr.update(choices=[_label(view) for view in views]),
    )


def inspect_jobs(engine, account, labels):
    """The first selected job's summary, config and log, every selected job's loss curve and evaluation."""
    ids = _ids(labels)
    if not ids:
        empty = pd.DataFrame(columns=["metric"])
        return "Select a job to see its config, log and curves.", "", "", curve_frame(COMPARE_CHART, []), empty
    try:
        views = [engine.job_view(job_id, account) for job_id in ids]
    except ModelForgeError as exc:
        return f"**{exc}**", "", "", curve_frame(COMPARE_CHART, []), pd.DataFrame(columns=["metric"])
    curves = []
    for view in views:
        curves += [{"step": p["step"], "loss": p["loss"], "job": _label(view)} for p in view["points"] if p["loss"] is not None]
    first = views[0]
    summary = f"**{_label(first)}** · {first['status']}" + (f"\n\n> {first['error']}" if first["error"] else "")
    summary += "\n\n" + ranks_markdown(first)
    summary += tracker_markdown(first)
    if first["metrics"]:
        summary += "\n\n" + scalar_metrics(first["metrics"])
        summary += "".join(f"\n\n> ♻️ {note}" for note in first["metrics"].get("healing", []))  # what a retry changed
    headers, rows = evaluation_table(views)
    return (
        summary,
        first["config"].to_yaml(),
        engine.log_tail(ids[0], 40, account),
        curve_frame(COMPARE_CHART, curves),
        pd.DataFrame(rows, columns=headers),
    )


def _sweep_label(sweep: int, name: str, runs: int) -> str:
    return f"sweep #{sweep} · {runs} runs · {name}"


def sweep_choices(engine, account):
    """The sweeps `account` may see, newest first, to compare."""
    return gr.update(choices=[_sweep_label(*entry) for entry in engine.sweeps(account)])


def compare_sweep(engine, account, label):
    """A sweep's runs side by side (values, status, main metric before/after, the best marked) and their full
    before/after tables."""
    empty = pd.DataFrame(columns=["metric"])
    if not label:
        return "Select a sweep to compare its runs.", pd.DataFrame(), empty
    try:
        comparison = engine.compare_sweep(int(label.split()[1].lstrip("#")), account)
    except ModelForgeError as exc:
        return f"**{exc}**", pd.DataFrame(), empty
    best = next((row for row in comparison.rows if row[0] == comparison.best), None)
    summary = (f"Best by **{comparison.metric}**: job #{best[0]} {best[1]}" if best
               else f"No completed run has **{comparison.metric}** yet.")
    summary += "".join(f"\n\n> #{view['id']} {view['status']}: {view['error'].splitlines()[0]}"
                       for view in comparison.views if view["error"])
    headers, rows = evaluation_table(comparison.views)
    runs = pd.DataFrame(comparison.shown_rows(), columns=comparison.headers)
    return summary, runs, pd.DataFrame(rows, columns=headers)


def delete_jobs(engine, account, labels):
    messages = []
    for job_id in _ids(labels):
        try:
            engine.delete_job(job_id, account)
            messages.append(f"Deleted job #{job_id}.")
        except ModelForgeError as exc:
            messages.append(str(exc))
    return "\n\n".join(messages) or "Select the jobs to delete.", gr.update(visible=False)


def ask_to_confirm():
    return gr.update(visible=True)


def build(engine) -> list:
    """Returns (function, outputs) pairs the app runs when a page loads."""
    table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Jobs", elem_id="history-table")
    with gr.Row():
        refresh_button = gr.Button("Refresh")
        selected = gr.Dropdown([], multiselect=True, label="Jobs to inspect or compare", scale=3)
    summary = gr.Markdown()
    compare = gr.LinePlot(**COMPARE_CHART, title="Training loss", height=280, elem_id="history-chart")
    evaluation = gr.Dataframe(
        interactive=False, elem_id="history-evaluation",
        label="Evaluation on held-out rows: base and tuned model of each selected job, side by side",
    )
    with gr.Row():
        config_view = gr.Code(label="config", language="yaml", interactive=False)
        log_view = gr.Textbox(label="log (last lines)", lines=14, max_lines=14, interactive=False)
    with gr.Accordion("Sweeps: the runs of one sweep side by side", open=False):
        sweep_select = gr.Dropdown([], label="Sweep to compare")
        sweep_summary = gr.Markdown()
        sweep_runs = gr.Dataframe(interactive=False, elem_id="history-sweep",
                                  label="Runs: the values each tried, how it ended, the main metric before and after")
        sweep_evaluation = gr.Dataframe(interactive=False, label="Every metric: base and tuned model of each run")
    with gr.Row():
        delete_button = gr.Button("Delete selected…", variant="stop")
        confirm_button = gr.Button("Yes, delete them and their files", variant="stop", visible=False)
    result = gr.Markdown()

    refresh_of_user, sweeps_of_user = as_user(engine, refresh), as_user(engine, sweep_choices)
    refresh_button.click(refresh_of_user, outputs=[table, selected], api_name="history")
    refresh_button.click(sweeps_of_user, outputs=sweep_select, api_name="history_sweeps")
    sweep_select.change(as_user(engine, compare_sweep), sweep_select, [sweep_summary, sweep_runs, sweep_evaluation],
                        api_name="history_sweep")
    colour_after(
        selected.change(
            as_user(engine, inspect_jobs), selected, [summary, config_view, log_view, compare, evaluation],
            api_name="history_inspect",
        ),
        compare,
    )
    delete_button.click(ask_to_confirm, outputs=confirm_button, api_name=False)
    confirm_button.click(as_user(engine, delete_jobs), selected, [result, confirm_button], api_name="history_delete").then(
        refresh_of_user, outputs=[table, selected], api_visibility="private"
    )
    return [(refresh_of_user, [table, selected]), (sweeps_of_user, sweep_select)]
