"""The Gradio app: assembles one module per tab; every tab calls the one engine."""

from __future__ import annotations

import gradio as gr

from modelforge.ui import history_tab

TITLE = "ModelForge"


def build_app(engine) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nFine-tune a language model: dataset → hardware check → training → playground → Hub.")
        with gr.Tabs():
            with gr.Tab("History", id="history"):
                history_tab.build(engine)
    return app
