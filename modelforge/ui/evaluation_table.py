"""The before/after evaluation of finished jobs as tables: one job's base against tuned, or several side by side."""

from __future__ import annotations

from modelforge.formatting import BEFORE_AFTER_COLUMNS, before_after, number

EXAMPLE_COLUMNS = ["input", "expected", "base model", "tuned model"]


def evaluation_table(views: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): metric | base | tuned | change for one job; metric | #id base | #id tuned | ... for several."""
    evaluated = [view for view in views if "evaluation" in view["metrics"]]
    names: list[str] = []
    for view in evaluated:
        names += [name for name in view["metrics"]["evaluation"]["metrics"] if name not in names]
    if len(evaluated) == 1:
        return BEFORE_AFTER_COLUMNS, before_after(evaluated[0]["metrics"]["evaluation"]["metrics"])
    headers = ["metric"] + [f"#{view['id']} {column}" for view in evaluated for column in ("base", "tuned")]
    rows = []
    for name in names:
        row = [name]
        for view in evaluated:
            values = view["metrics"]["evaluation"]["metrics"].get(name, {})
            row += [number(values.get("base")), number(values.get("tuned"))]
        rows.append(row)
    return headers, rows


def example_rows(view: dict) -> list[list[str]]:
    """A few held-out rows with the expected answer and what each model answered."""
    examples = view["metrics"].get("evaluation", {}).get("examples", [])
    return [[row["input"], row["expected"], row["base"] or "", row["tuned"]] for row in examples]


def scalar_metrics(metrics: dict) -> str:
    """The run's single-number metrics (loss, steps, speed...) on one line."""
    parts = [f"{key}: {value:.4g}" for key, value in metrics.items() if isinstance(value, (int, float))]
    if "hardware" in metrics:
        parts.append(f"hardware: {metrics['hardware']}")
    return " · ".join(parts)
