import pytest

from modelforge.config import PRESETS, JobConfig, model_size, preset_overrides
from modelforge.errors import ConfigError

FULL_YAML = """
name: my-run
task: chat
model: Qwen/Qwen2.5-0.5B
provider: huggingface
strategy: sft
dataset: data/train.jsonl
columns: {messages: conversation}
output_dir: runs/my-run
training: {epochs: 2, max_steps: -1, batch_size: 4, gradient_accumulation: 2, learning_rate: 1.0e-4,
           scheduler: linear, warmup_ratio: 0.05, max_length: 256, eval_split: 0.2, seed: 7,
           precision: auto, gradient_checkpointing: auto, packing: true, save_steps: 25}
lora: {r: 8, alpha: 16, dropout: 0.1, target_modules: [q_proj, v_proj]}
"""


def test_yaml_round_trip_keeps_every_value():
    config = JobConfig.from_yaml(FULL_YAML)
    assert config.task == "chat"
    assert config.training.gradient_accumulation == 2
    assert config.lora.target_modules == ["q_proj", "v_proj"]
    assert JobConfig.from_yaml(config.to_yaml()) == config
    assert JobConfig.from_json(config.to_json()) == config


def test_defaults_use_lora_and_the_demo_model():
    config = JobConfig.from_yaml("dataset: data.jsonl")
    assert config.model is None
    assert config.lora is not None and config.lora.r == 16
    assert config.training.precision == "auto"


def test_null_lora_means_full_fine_tuning():
    assert JobConfig.from_yaml("dataset: d.jsonl\nlora: null").lora is None


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dataset: d.jsonl\ntask: poetry", "task: must be one of text-generation, chat, summarization or extractive-qa (got 'poetry')"),
        ("dataset: d.jsonl\nstrategy: ppo", "strategy: must be one of sft, qlora, dpo, rlhf, orpo, simpo, cpo or kto (got 'ppo')"),
        ("dataset: d.jsonl\ntraining: {precision: fp8}", "training.precision: must be one of auto, fp32, fp16 or bf16"),
        ("dataset: d.jsonl\ntraining: {epochs: 0}", "training.epochs: Input should be greater than 0"),
        ("dataset: d.jsonl\ntraining: {batchsize: 4}", "training.batchsize: is not a known key"),
        ("task: chat", "dataset: is required"),
        ("dataset: d.jsonl\nname: 'bad name/..'", "name: use letters, digits"),
        ("dataset: d.jsonl\ncolumns: {answer: a}", "columns: unknown field answer"),
        ("dataset: [unclosed", "is not valid YAML"),
        ("- a\n- b", "expected a mapping"),
    ],
)
def test_invalid_configs_name_the_key_and_allowed_values(text, expected):
    with pytest.raises(ConfigError) as error:
        JobConfig.from_yaml(text)
    assert expected in str(error.value)


def test_overrides_parse_dotted_keys_as_yaml():
    config = JobConfig.from_yaml("dataset: d.jsonl").with_overrides(
        ["training.epochs=1.5", "lora=null", "task=chat", "training.packing=true"]
    )
    assert config.training.epochs == 1.5
    assert config.lora is None
    assert config.task == "chat"
    assert config.training.packing is True


def test_override_errors_are_config_errors():
    base = JobConfig.from_yaml("dataset: d.jsonl")
    with pytest.raises(ConfigError, match="expected key=value"):
        base.with_overrides(["training.epochs"])
    with pytest.raises(ConfigError, match="training.batch_size"):
        base.with_overrides(["training.batch_size=zero"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        JobConfig.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "params_b, size, balanced_rate",
    [(0.0009, "tiny", 3e-3), (0.135, "standard", 2e-4), (7.6, "standard", 2e-4), (70.0, "large", 1e-4),
     (None, "standard", 2e-4)],
)
def test_presets_take_their_learning_rate_from_the_model_size(params_b, size, balanced_rate):
    assert model_size(params_b) == size
    assert preset_overrides("balanced", params_b)["training"]["learning_rate"] == balanced_rate
    # every preset sets the same keys, so choosing one replaces what another set
    keys = {preset: {(section, key) for section, values in preset_overrides(preset, params_b).items() for key in values}
            for preset in PRESETS}
    assert len(set(map(frozenset, keys.values()))) == 1
    assert all(JobConfig.parse({"dataset": "d.jsonl", **preset_overrides(preset, params_b)}) for preset in PRESETS)
