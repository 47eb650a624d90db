"""The charts' values as the app sends them (gradio_client): numeric step and value columns whether or not a job has
points yet, since the browser fixes a chart's axis types from the first value it shows."""

from modelforge.config import JobConfig
from modelforge.db import Job, MetricPoint
from modelforge.ui.charts import PALETTE, series_colours

LOSS_TYPES = {"step": "quantitative", "value": "quantitative", "series": "nominal"}
RATE_TYPES = {"step": "quantitative", "learning rate": "quantitative"}
# (step, loss, eval loss, learning rate) as a worker records them: an evaluation is a row of its own.
POINTS = [(5, 2.5, None, 1e-3), (10, 2.0, None, 2e-3), (10, None, 2.25, None), (15, 1.5, None, 1.5e-3)]


def _job_with_points(engine, name: str, points) -> Job:
    job = Job.create(name=name, config=JobConfig(dataset="words.jsonl", name=name).to_json(), status="completed",
                     output_dir=str(engine.settings.runs_dir / name), step=15, total_steps=15)
    for step, loss, eval_loss, rate in points:
        MetricPoint.create(job=job, step=step, loss=loss, eval_loss=eval_loss, learning_rate=rate)
    return job


def test_finetune_charts_are_numeric_before_any_job_and_hold_the_stored_points(app_client, engine):
    status, losses, rates, _, _ = app_client.predict(api_name="/job_status")
    assert status.startswith("No job yet")
    assert (losses["data"], losses["datatypes"]) == ([], LOSS_TYPES)
    assert (rates["data"], rates["datatypes"]) == ([], RATE_TYPES)

    _job_with_points(engine, "curves", POINTS)
    status, losses, rates, _, _ = app_client.predict(api_name="/job_status")
    assert "Job #1 · curves" in status
    assert losses["datatypes"] == LOSS_TYPES and rates["datatypes"] == RATE_TYPES
    assert losses["data"] == [[5, 2.5, "loss"], [10, 2.0, "loss"], [10, 2.25, "eval loss"], [15, 1.5, "loss"]]
    assert rates["data"] == [[5, 1e-3], [10, 2e-3], [15, 1.5e-3]]


def test_history_chart_is_numeric_for_no_job_a_job_without_points_and_several_jobs(app_client, engine):
    _job_with_points(engine, "first", POINTS)
    _job_with_points(engine, "queued", [])
    _job_with_points(engine, "second", [(5, 3.0, None, 1e-3), (10, 2.75, None, 1e-3)])
    app_client.predict(api_name="/history")
    for selection, expected in (
        ([], []),
        (["#2 queued"], []),
        (["#1 first", "#3 second"], [[5, 2.5, "#1 first"], [10, 2.0, "#1 first"], [15, 1.5, "#1 first"],
                                     [5, 3.0, "#3 second"], [10, 2.75, "#3 second"]]),
    ):
        _, _, _, curves, _ = app_client.predict(selection, api_name="/history_inspect")
        assert curves["datatypes"] == {"step": "quantitative", "loss": "quantitative", "job": "nominal"}, selection
        assert curves["data"] == expected, selection


def test_each_series_keeps_its_colour_as_others_join():
    class Plot:
        color = "series"

    shown = {"columns": ["step", "value", "series"], "data": [[1, 2.0, "loss"], [2, 1.5, "loss"]]}
    assert series_colours(Plot, shown)["color_map"] == {"loss": PALETTE[0]}
    shown["data"].append([2, 1.75, "eval loss"])
    assert series_colours(Plot, shown)["color_map"] == {"loss": PALETTE[0], "eval loss": PALETTE[1]}
