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
def simpo(monkeypatch):
    """A new preference strategy, registered as its one line in STRATEGIES would register it."""
    strategy = replace(STRATEGIES["dpo"], name="simpo", description="Preference optimisation without a reference.")
    monkeypatch.setitem(STRATEGIES, "simpo", strategy)
    return strategy


def dropdown_choices(build, engine) -> dict[str, list]:
    with gr.Blocks() as app:
        build(engine)
    return {
        block.label: [value for _, value in block.choices]
        for block in app.blocks.values() if isinstance(block, gr.Dropdown)
    }


def test_a_registered_strategy_is_accepted_by_the_config_and_offered_by_the_ui_and_the_cli(simpo, engine, tmp_path):
    config = JobConfig.parse({"dataset": "pairs.jsonl", "strategy": "simpo", "init_from": "3"})
    assert config.strategy == "simpo" and config.init_from == "3"  # a pairs strategy may start from a job
    with pytest.raises(ConfigError, match=r"strategy: must be one of sft, qlora, dpo, rlhf or simpo \(got 'orpo'\)"):
        JobConfig.parse({"dataset": "pairs.jsonl", "strategy": "orpo"})
    with pytest.raises(ConfigError, match="only the dpo, rlhf and simpo strategies start from a finished job"):
        JobConfig.parse({"dataset": "d.jsonl", "strategy": "sft", "init_from": "3"})

    assert dropdown_choices(finetune_tab.build, engine)["Strategy"] == list(STRATEGIES)
    assert dropdown_choices(dataset_tab.build, engine)["Strategy (optional)"] == list(STRATEGIES)
    assert "simpo" in STRATEGIES and engine.dataset_fields("chat", "simpo") == PREFERENCE_FIELDS
    assert [label for label, _ in engine.dataset_choices("chat", "simpo")] == ["sample: preference.jsonl"]

    assert cli.build_parser().parse_args(["validate", "rows.jsonl", "--strategy", "simpo"]).strategy == "simpo"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["validate", "rows.jsonl", "--strategy", "orpo"])


def test_unknown_names_are_refused_with_the_registries_choices():
    with pytest.raises(ConfigError, match=r"provider: must be one of huggingface or unsloth \(got 'vllm'\)"):
        JobConfig.parse({"dataset": "d.jsonl", "provider": "vllm"})
