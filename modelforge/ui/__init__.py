"""The Gradio app: assembles one module per tab; every tab calls the one engine."""

from __future__ import annotations

import gradio as gr

from modelforge.ui import dataset_tab, finetune_tab, hardware_tab, history_tab, hub_tab, playground_tab

TITLE = "ModelForge"
TABS = (
    ("Dataset", dataset_tab),
    ("Hardware", hardware_tab),
    ("Finetune", finetune_tab),
    ("Playground", playground_tab),
    ("Hub", hub_tab),
    ("History", history_tab),
)


def build_app(engine) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nFine-tune a language model: dataset → hardware check → training → playground → Hub.")
        with gr.Tabs():
            for label, module in TABS:
                with gr.Tab(label, id=label.lower()) as tab:
                    refreshers = module.build(engine) or []
                # What a tab shows from the database is refreshed when a page loads and when the tab is opened.
                for function, outputs, *inputs in refreshers:  # (function, outputs[, inputs])
                    app.load(function, inputs=inputs[0] if inputs else None, outputs=outputs)
                    tab.select(function, inputs=inputs[0] if inputs else None, outputs=outputs, show_progress="hidden")
    return app
