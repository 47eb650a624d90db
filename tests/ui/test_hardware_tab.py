"""The Hardware tab through the running app's API: the machine's report and the will-it-fit estimate."""

import re
import types

import gradio as gr
import pytest
from gradio_client.exceptions import AppError

from modelforge import fit
from modelforge.hardware import detect, profile
from modelforge.settings import Settings
from modelforge.tasks import TASKS
from modelforge.ui import hardware_tab


def test_hardware_report_describes_this_machine(engine, app_client):
    markdown, facts = app_client.predict(api_name="/hardware_report")
    expected = detect(engine.settings.home)
    assert facts["profile"] == profile(expected)
    assert f"### Profile: {facts['profile']}" in markdown
    assert f"**CPU cores:** {expected.cpu_cores}" in markdown and str(engine.settings.home) in markdown
    if not expected.gpus:  # this CI machine: no driver, so cpu-only sized by the RAM
        assert facts["profile"] == "cpu-only" and facts["gpus"] == []
        assert f"**GPU:** none: {expected.gpu_error}" in markdown
        assert facts["memory_budget"] == "available RAM"
    else:
        assert all(gpu.name in markdown for gpu in expected.gpus)


def test_fit_estimate_gives_a_verdict_and_a_breakdown(app_client):
    table, verdict, suggestions = app_client.predict(
        model="HuggingFaceTB/SmolLM2-135M-Instruct", params_b=None, method="lora", precision="fp32", batch_size=1,
        seq_length=512, lora_rank=16, checkpointing=False, budget_gb=16, api_name="/fit_estimate")
    assert verdict.startswith("### ✅ fits: about ") and "of 16.0 GB" in verdict
    assert "HuggingFaceTB/SmolLM2-135M-Instruct: 135M parameters (recommended list); 5.25M trainable (LoRA)" in verdict
    parts = dict(table["data"])
    assert list(parts) == ["weights", "adapters", "gradients", "optimizer", "activations", "overhead", "total"]
    assert parts["weights"] == pytest.approx(0.135e9 * 4 / fit.GB, rel=1e-3) and 0 < parts["total"] < 16
    assert suggestions == ""


def test_fit_estimate_suggests_what_would_fit(app_client):
    _, verdict, suggestions = app_client.predict(
        model=None, params_b=7, method="full", precision="bf16", batch_size=1, seq_length=512, lora_rank=16,
        checkpointing=True, budget_gb=24, api_name="/fit_estimate")
    assert verdict.startswith("### ❌ does not fit: about ") and "of 24.0 GB" in verdict
    lines = suggestions.splitlines()[1:]
    assert any(line.startswith("- use QLoRA") for line in lines)
    for line in lines:  # every suggestion is re-estimated under the budget
        value, unit = re.search(r": ([\d.]+) (GB|MB)$", line).groups()
        assert float(value) <= (24 if unit == "GB" else 24 * 1024), line


def test_fit_estimate_uses_the_detected_memory_and_explains_bad_input(engine, app_client):
    _, verdict, _ = app_client.predict(
        model="demo", params_b=None, method="lora", precision="fp32", batch_size=1, seq_length=128, lora_rank=8,
        checkpointing=False, budget_gb=None, api_name="/fit_estimate")
    shown = float(re.search(r"of ([\d.]+) GB", verdict).group(1))
    assert shown == pytest.approx(detect(engine.settings.home).to_dict()["memory_budget_gb"], abs=1.0)  # RAM moves
    with pytest.raises(AppError, match="enter its parameter count in billions"):
        app_client.predict(
            model="someone/unknown-model", params_b=None, method="lora", precision="bf16", batch_size=1, seq_length=512,
            lora_rank=16, checkpointing=True, budget_gb=24, api_name="/fit_estimate")


def test_the_forms_choices_are_the_registries(tmp_path):
    engine = types.SimpleNamespace(settings=Settings(home=tmp_path))
    with gr.Blocks() as demo:
        hardware_tab.build(engine)
    by_label = {block.label: block for block in demo.blocks.values() if isinstance(block, (gr.Radio, gr.Dropdown))}
    assert [value for _, value in by_label["Method"].choices] == list(fit.METHODS)
    assert [value for _, value in by_label["Precision"].choices] == list(fit.PRECISION_BYTES)
    assert [value for _, value in by_label["Task"].choices] == list(TASKS)
