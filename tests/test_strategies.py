"""The strategy registry is the one list of strategies: a strategy added to it is accepted by the job config and
offered by the Finetune and Dataset tabs and the command line, with no name written anywhere else."""

from dataclasses import replace

import gradio as gr
import pytest

from modelforge import cli
from modelforge.config import JobConfig
from modelforge.errors import ConfigError
from modelforge.strategies import STRATEGIES
from modelforge.tasks import PREFERENCE_FIELDS
from modelforge.ui import dataset_tab, finetune_tab


@pytest.fixture
def rrhf(monkeypatch):
    """A new preference strategy, registered as its one line in STRATEGIES would register it."""
    strategy = replace(STRATEGIES["dpo"], name="rrhf", description="Preference optimisation by ranking.")
    monkeypatch.setitem(STRATEGIES, "rrhf", strategy)
    return strategy


def dropdown_choices(build, engine) -> dict[str, list]:
    with gr.Blocks() as app:
        build(engine)
    return {
        block.label: [value for _, value in block.choices]
        for block in app.blocks.values() if isinstance(block, gr.Dropdown)
    }


def test_a_registered_strategy_is_accepted_by_the_config_and_offered_by_the_ui_and_the_cli(rrhf, engine, tmp_path):
    config = JobConfig.parse({"dataset": "pairs.jsonl", "strategy": "rrhf", "init_from": "3"})
    assert config.strategy == "rrhf" and config.init_from == "3"  # a pairs strategy may start from a job
    names = r"sft, qlora, dpo, rlhf, orpo, simpo, cpo, kto or rrhf"
    with pytest.raises(ConfigError, match=rf"strategy: must be one of {names} \(got 'slic'\)"):
        JobConfig.parse({"dataset": "pairs.jsonl", "strategy": "slic"})
    starting = "only the dpo, rlhf, orpo, simpo, cpo, kto and rrhf strategies start from a finished job"
    with pytest.raises(ConfigError, match=starting):
        JobConfig.parse({"dataset": "d.jsonl", "strategy": "sft", "init_from": "3"})

    assert dropdown_choices(finetune_tab.build, engine)["Strategy"] == list(STRATEGIES)
    assert dropdown_choices(dataset_tab.build, engine)["Strategy (optional)"] == list(STRATEGIES)
    assert "rrhf" in STRATEGIES and engine.dataset_fields("chat", "rrhf") == PREFERENCE_FIELDS
    assert [label for label, _ in engine.dataset_choices("chat", "rrhf")] == ["sample: preference.jsonl"]

    assert cli.build_parser().parse_args(["validate", "rows.jsonl", "--strategy", "rrhf"]).strategy == "rrhf"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["validate", "rows.jsonl", "--strategy", "slic"])


def test_unknown_names_are_refused_with_the_registries_choices():
    with pytest.raises(ConfigError, match=r"provider: must be one of huggingface or unsloth \(got 'vllm'\)"):
        JobConfig.parse({"dataset": "d.jsonl", "provider": "vllm"})
