"""The finished-job picker the Playground and Hub tabs share: a dropdown of the signed-in user's completed jobs,
newest first, and its refresh button."""

from __future__ import annotations

import gradio as gr

from modelforge.accounts import NOBODY, Account
from modelforge.ui.session import as_user


def job_choices(engine, account: Account) -> list[tuple[str, int]]:
    """The account's completed jobs, newest first, as (label, job id) dropdown choices."""
    return [(f"#{job.id} {job.name}", job.id) for job in engine.completed_jobs(account)]


def refresh_jobs(engine, account: Account) -> gr.Dropdown:
    return gr.Dropdown(choices=job_choices(engine, account))


def picker(engine, api_name: str) -> tuple[gr.Dropdown, tuple]:
    """The dropdown and its refresh button (named `api_name` in the API), placed in the caller's row; returns the
    dropdown and the (function, output) pair that fills it with the user's jobs when a page loads."""
    job = gr.Dropdown(choices=job_choices(engine, NOBODY), value=None, label="Finished job", scale=3)
    refresh = gr.Button("↻ Refresh jobs", scale=1)
    jobs_of_user = as_user(engine, refresh_jobs)
    refresh.click(jobs_of_user, outputs=job, api_name=api_name)
    return job, (jobs_of_user, job)
