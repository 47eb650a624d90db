"""A sweep's runs side by side: the values each tried, how it ended and its before/after evaluation, the best marked.

A sweep is queued as ordinary jobs (JobConfig.sweep_runs), one per combination of values, linked by Job.sweep; this
module only compares what they stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelforge.strategies import STRATEGIES
from modelforge.tasks import TASKS

BEST = "best"


@dataclass(frozen=True)
class SweepComparison:
    sweep: int  # the id of the sweep's first job
    metric: str  # the evaluation metric the best run is chosen by (higher is better)
    headers: list[str]
    rows: list[list[Any]]  # one per run, in the order they were queued; None where a run has no value
    best: int | None  # the job id of the best completed run; None when no run has the metric
    views: list[dict]  # Engine.job_view of each run: their full before/after tables

    def shown_rows(self, missing: str = "") -> list[list[str]]:
        """The rows as text: numbers to 4 significant digits, `missing` where a run has no value."""
        return [[missing if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
                 for value in row] for row in self.rows]


def main_metric(config) -> str:
    """The metric that ranks runs of this config: preference accuracy for strategies that learn from pairs, else the
    task's own."""
    return "preference_accuracy" if STRATEGIES[config.strategy].pairs else TASKS[config.task].main_metric


def _tuned(view: dict, name: str) -> float | None:
    return view["metrics"].get("evaluation", {}).get("metrics", {}).get(name, {}).get("tuned")


def compare(sweep: int, views: list[dict]) -> SweepComparison:
    """The runs' table: job, name, status, the values tried, the main metric before and after, the final eval loss,
    and `best` on the completed run with the highest main metric (ties: the lower perplexity, then the earlier run).
    Failed and cancelled runs keep their row, without values they never measured."""
    metric = main_metric(views[0]["config"])
    headers = ["job", "name", "status", "learning rate", "LoRA rank", f"{metric} base", f"{metric} tuned", "change",
               "eval loss", BEST]
    ranked = [view for view in views if view["status"] == "completed" and _tuned(view, metric) is not None]
    best = max(ranked, key=lambda view: (_tuned(view, metric), -(_tuned(view, "perplexity") or 0.0)), default=None)
    rows = []
    for view in views:
        config, values = view["config"], view["metrics"].get("evaluation", {}).get("metrics", {}).get(metric, {})
        base, tuned = values.get("base"), values.get("tuned")
        rows.append([
            view["id"], view["name"], view["status"], config.training.learning_rate,
            config.lora.r if config.lora else None, base, tuned,
            tuned - base if base is not None and tuned is not None else None,
            view["metrics"].get("eval_loss"), BEST if view is best else "",
        ])
    return SweepComparison(sweep, metric, headers, rows, best["id"] if best else None, views)


def format_comparison(comparison: SweepComparison) -> str:
    """The comparison as aligned text, for the command line."""
    cells = [comparison.headers] + comparison.shown_rows(missing="-")
    widths = [max(len(row[column]) for row in cells) for column in range(len(comparison.headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.append(f"best by {comparison.metric}: job {comparison.best}" if comparison.best is not None
                 else f"no completed run has {comparison.metric} yet")
    return "\n".join(lines)
