"""History tab: every job in the database."""

from __future__ import annotations

import gradio as gr

COLUMNS = ["id", "name", "status", "stage", "step", "loss", "created"]


def job_rows(engine) -> list[list]:
    return [
        [job.id, job.name, job.status, job.stage, f"{job.step}/{job.total_steps or '?'}",
         round(job.loss, 4) if job.loss is not None else None, str(job.created_at)[:19]]
        for job in engine.list_jobs()
    ]


def build(engine) -> None:
    table = gr.Dataframe(headers=COLUMNS, value=lambda: job_rows(engine), interactive=False, label="Jobs")
    refresh = gr.Button("Refresh")
    refresh.click(lambda: job_rows(engine), outputs=table, api_name="list_jobs")
