"""The charts drawn as images off-screen (matplotlib's Agg canvas, no pyplot state): a dataset's token lengths, and a
job's loss curve for its model card."""

from __future__ import annotations

import io


def token_histogram(lengths: list[int], max_length: int | None = None):
    """A matplotlib Figure of the token lengths, with the max_length line when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(lengths, bins=min(40, max(1, len(set(lengths)))), color="#4c78a8")
    if max_length is not None:
        axes.axvline(max_length, color="#e45756", linestyle="--", label=f"max_length {max_length}")
        axes.legend()
    axes.set_xlabel("tokens per row")
    axes.set_ylabel("rows")
    return figure


def loss_curve_png(points, title: str) -> bytes | None:
    """The training and evaluation loss of a job's metric points by step, as a PNG; None when no loss was recorded."""
    series = {
        "training loss": [(p.step, p.loss) for p in points if p.loss is not None],
        "evaluation loss": [(p.step, p.eval_loss) for p in points if p.eval_loss is not None],
    }
    if not any(series.values()):
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    for label, values in series.items():
        if values:
            axes.plot(*zip(*values), label=label, marker="o" if len(values) < 20 else None)
    axes.set(xlabel="step", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()
