"""The Gradio app: assembles one module per tab; every tab calls the one engine."""

from __future__ import annotations

import gradio as gr

from modelforge.ui import dataset_tab, finetune_tab, hardware_tab, history_tab, hub_tab, playground_tab

TITLE = "ModelForge"


def build_app(engine) -> gr.Blocks:
    on_load: list = []  # (function, outputs) that tabs want run whenever a page (re)loads
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nFine-tune a language model: dataset → hardware check → training → playground → Hub.")
        with gr.Tabs():
            with gr.Tab("Dataset", id="dataset"):
                on_load += dataset_tab.build(engine)
            with gr.Tab("Hardware", id="hardware"):
                hardware_tab.build(engine)
            with gr.Tab("Finetune", id="finetune"):
                on_load += finetune_tab.build(engine)
            with gr.Tab("Playground", id="playground"):
                on_load += playground_tab.build(engine)
            with gr.Tab("Hub", id="hub"):
                on_load += hub_tab.build(engine)
            with gr.Tab("History", id="history"):
                on_load += history_tab.build(engine)
        for function, outputs in on_load:
            app.load(function, outputs=outputs)
    return app
