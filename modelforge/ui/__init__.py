"""The Gradio app: assembles one module per tab; every tab calls the one engine."""

from __future__ import annotations

from functools import partial

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


def show_demo_build(engine):
    """The demo model's build while it runs or after it failed; polling stops once the model is ready."""
    state = engine.demo_model_state()
    text = f"⏳ {state.describe()} The Dataset preview and a first job wait for it." if state.building else (
        f"❌ {state.describe()}" if state.error else "")
    return gr.Markdown(text, visible=bool(text)), gr.Timer(active=not state.ready)


def build_app(engine) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nFine-tune a language model: dataset → hardware check → training → playground → Hub.")
        demo_status = gr.Markdown(visible=False, elem_id="demo-model-status")
        demo_timer = gr.Timer(2.0)
        show_demo = partial(show_demo_build, engine)
        app.load(show_demo, outputs=[demo_status, demo_timer], api_name="demo_model_status")
        demo_timer.tick(show_demo, outputs=[demo_status, demo_timer], show_progress="hidden", api_name=False)
        if engine.sign_in is not None and engine.sign_in.oauth:  # on a Space: each user signs in with Hugging Face
            gr.LoginButton()
        with gr.Tabs():
            for label, module in TABS:
                with gr.Tab(label, id=label.lower()) as tab:
                    refreshers = module.build(engine) or []
                # What a tab shows from the database is refreshed when a page loads and when the tab is opened (the
                # tabs' own named endpoints serve the API).
                for function, outputs, *inputs in refreshers:  # (function, outputs[, inputs[, inputs_kwargs]])
                    given = dict(zip(("inputs", "inputs_kwargs"), inputs), api_visibility="private")
                    app.load(function, outputs=outputs, **given)
                    tab.select(function, outputs=outputs, show_progress="hidden", **given)
    return app
