"""The Gradio app: assembles one module per tab; every tab calls the one engine."""

from __future__ import annotations

import gradio as gr

from modelforge.ui import finetune_tab, history_tab

TITLE = "ModelForge"


def build_app(engine) -> gr.Blocks:
    on_load: list = []  # (function, outputs) that tabs want run whenever a page (re)loads
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nFine-tune a language model: dataset → hardware check → training → playground → Hub.")
        with gr.Tabs():
            with gr.Tab("Finetune", id="finetune"):
                finetune_tab.build(engine)
            with gr.Tab("History", id="history"):
                on_load += history_tab.build(engine)
        for function, outputs in on_load:
            app.load(function, outputs=outputs)
    return app
