"""Line charts of training curves, drawn right whatever the page was shown first.

Gradio 6.31's LinePlot builds its Vega-Lite spec once, from the value it shows when it appears, and afterwards only
swaps the data. The spec takes each axis's type from the DataFrame's dtypes and the colour domain from the series
present then. So an empty frame (object columns) fixed categorical "point" axes for every later curve (loss values as
sorted labels, the learning rate upside down), and a series that joined later (eval loss, a second job) had no colour,
so no line. Hence every frame carries numeric dtypes, empty or not; and a chart with series gets, after each new
value, a colour map naming the series shown: a changed map rebuilds the spec. It must come in a later event than the
value, because Gradio's frontend applies an update's other properties before its value.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

# Vega's category10: a series keeps its colour when others join it.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def curve_frame(chart: dict, rows: list[dict]) -> pd.DataFrame:
    """The rows (dicts keyed by the chart's x, y and colour: a LinePlot's keywords) with an integer x and a float y,
    also when there are none."""
    dtypes = {chart["x"]: "int64", chart["y"]: "float64"} | ({chart["color"]: "str"} if "color" in chart else {})
    return pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)


def series_colours(plot: gr.LinePlot, shown) -> dict:
    """A colour per series of the value the page shows (`shown`: the plot's payload as an event's input)."""
    if shown is None:
        return gr.skip()
    column = shown["columns"].index(plot.color)
    series = dict.fromkeys(row[column] for row in shown["data"])
    return gr.update(color_map={name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)})


def colour_after(event, plot: gr.LinePlot):
    """Chain the colour map of `plot` after an event that set its value."""
    return event.then(lambda shown: series_colours(plot, shown), plot, plot, show_progress="hidden", api_visibility="private")
