"""Reads and writes of a job's state, shared by the runner, the worker and the UI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelforge.db import Job, MetricPoint, database, utcnow
from modelforge.errors import JobError

LOG_FILE = "train.log"


def get_job(job_id: int | str) -> Job:
    try:
        return Job.get_by_id(int(job_id))
    except (Job.DoesNotExist, ValueError):
        raise JobError(f"No job with id {job_id}; `python -m modelforge jobs` lists them.") from None


def log_path(job: Job) -> Path:
    return Path(job.output_dir) / LOG_FILE


def log_tail(job: Job, lines: int = 20) -> str:
    try:
        text = log_path(job).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def update(job_id: int, **fields: Any) -> None:
    Job.update(**fields).where(Job.id == job_id).execute()


def set_stage(job_id: int, stage: str) -> None:
    update(job_id, stage=stage)


def cancel_requested(job_id: int) -> bool:
    return Job.select(Job.cancel_requested_at).where(Job.id == job_id).scalar() is not None


def record_metrics(job_id: int, step: int, **values: float | None) -> None:
    with database.atomic():
        MetricPoint.create(job=job_id, step=step, **values)
        update(job_id, step=step, **{key: value for key, value in values.items() if value is not None})


def finish(job_id: int, status: str, error: str | None = None, metrics: dict | None = None) -> None:
    fields: dict[str, Any] = dict(status=status, stage=status, finished_at=utcnow(), error=error, eta_seconds=None)
    if metrics is not None:
        fields["metrics"] = json.dumps(metrics)
    update(job_id, **fields)


def finish_queued(job_id: int, status: str, error: str) -> bool:
    """Finish a job only while it is still queued; False when a runner claimed it first."""
    fields = dict(status=status, stage=status, finished_at=utcnow(), error=error)
    return bool(Job.update(**fields).where(Job.id == job_id, Job.status == "queued").execute())


def metric_points(job_id: int) -> list[MetricPoint]:
    return list(MetricPoint.select().where(MetricPoint.job == job_id).order_by(MetricPoint.step, MetricPoint.id))
