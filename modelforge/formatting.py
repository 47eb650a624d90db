"""How a duration, a score and the before/after evaluation read, wherever they are shown: the CLI, the tabs and the
model card say them alike."""

from __future__ import annotations

from typing import Any

BEFORE_AFTER_COLUMNS = ["metric", "base", "tuned", "change"]


def duration(seconds: float | None) -> str:
    """`45 s`, `1 min 30 s`, `2 h 05 min`; `-` when not known."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def number(value: Any) -> str:
    """A score or setting: four significant digits for a float, `-` when missing."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def before_after(table: dict[str, dict[str, float | None]]) -> list[list[str]]:
    """The rows of the before/after table, one per metric: metric, base, tuned, change (tuned - base).

    `table` is an evaluation's {"metric": {"base": value or None, "tuned": value}}."""
    rows = []
    for name, scores in table.items():
        base, tuned = scores.get("base"), scores.get("tuned")
        change = f"{tuned - base:+.4g}" if base is not None and tuned is not None else "-"
        rows.append([name, number(base), number(tuned), change])
    return rows
