"""A job's log file in its output folder, which the worker writes and the runner, the UI and the CLI read."""

from __future__ import annotations

from pathlib import Path

LOG_FILE = "train.log"


def log_path(job) -> Path:
    return Path(job.output_dir) / LOG_FILE


def log_tail(job, lines: int = 20) -> str:
    try:
        text = log_path(job).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
