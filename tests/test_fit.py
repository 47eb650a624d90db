"""The will-it-fit estimate against known figures, and suggestions that really bring it under the budget."""

import json
import struct

import pytest

from modelforge import fit
from modelforge.errors import ConfigError
from modelforge.fit import FitSetup, ModelShape, estimate, resolve_model
from modelforge.hardware import PROFILES, recommended_models
from modelforge.tasks import TASKS

LLAMA_31_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "hidden_act": "silu",
               "tie_word_embeddings": False}
QWEN25_7B = {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "hidden_act": "silu",
             "tie_word_embeddings": False}
FLAN_T5_SMALL = {"model_type": "t5", "d_model": 512, "d_ff": 1024, "d_kv": 64, "num_heads": 6, "num_layers": 8,
                 "num_decoder_layers": 8, "vocab_size": 32128, "feed_forward_proj": "gated-gelu",
                 "tie_word_embeddings": False}
GPT2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None, "vocab_size": 50257,
        "activation_function": "gelu_new"}
DISTILBERT_CASED = {"model_type": "distilbert", "dim": 768, "hidden_dim": 3072, "n_layers": 6, "n_heads": 12,
                    "vocab_size": 28996, "activation": "gelu"}


@pytest.mark.parametrize("config, params", [
    (LLAMA_31_8B, 8.03e9), (QWEN25_7B, 7.62e9), (FLAN_T5_SMALL, 77.0e6), (GPT2, 124.4e6), (DISTILBERT_CASED, 65.2e6),
])
def test_parameters_from_config_match_the_published_counts(config, params):
    assert ModelShape.from_config(config).params == pytest.approx(params, rel=0.015)


def test_full_fine_tuning_of_7b_in_bf16_needs_over_100_gb():
    result = estimate(ModelShape.from_params(7), FitSetup(method="full", precision="bf16"), budget_gb=80)
    assert result.total_gb > 100 and result.verdict == fit.NO_FIT
    assert result.weights_gb == pytest.approx(7e9 * 2 / fit.GB)
    assert result.optimizer_gb == pytest.approx(7e9 * 12 / fit.GB)  # AdamW's two fp32 moments + fp32 master weights
    assert result.gradients_gb == pytest.approx(7e9 * 2 / fit.GB)
    fp32 = estimate(ModelShape.from_params(7), FitSetup(method="full", precision="fp32"))
    assert fp32.optimizer_gb == pytest.approx(7e9 * 8 / fit.GB)  # no master copy when the weights are fp32


def test_7b_qlora_fits_a_24_gb_gpu_at_batch_1_and_length_512():
    setup = FitSetup(method="qlora", batch_size=1, seq_length=512, lora_rank=16)
    for shape in (ModelShape.from_params(7), resolve_model("Qwen/Qwen2.5-7B-Instruct"),
                  ModelShape.from_config(LLAMA_31_8B)):
        result = estimate(shape, setup, budget_gb=24)
        assert result.verdict == fit.FITS and result.total_gb < 12 and result.suggestions == [], shape.source
        assert result.weights_gb < 6.5  # 4-bit linear layers, 16-bit embeddings


def test_lora_adapters_of_llama_8b():
    """PEFT's count for all-linear r=16 on Llama-3.1-8B is 41.9 M; the estimate counts k and v h wide (upper bound)."""
    trainable = fit.trainable_params(ModelShape.from_config(LLAMA_31_8B), FitSetup(method="lora", lora_rank=16))
    assert 41.9e6 <= trainable <= 1.1 * 41.9e6
    result = estimate(ModelShape.from_config(LLAMA_31_8B), FitSetup(method="lora"))
    assert result.adapters_gb == result.gradients_gb == pytest.approx(trainable * 4 / fit.GB)
    assert result.optimizer_gb == pytest.approx(trainable * 8 / fit.GB)


def test_activations_grow_with_batch_and_length_and_shrink_with_checkpointing():
    shape = ModelShape.from_config(QWEN25_7B)
    base = fit.activation_bytes(shape, FitSetup(batch_size=2, seq_length=1024, gradient_checkpointing=False))
    assert fit.activation_bytes(shape, FitSetup(batch_size=4, seq_length=1024, gradient_checkpointing=False)) == (
        pytest.approx(2 * base))
    assert fit.activation_bytes(shape, FitSetup(batch_size=2, seq_length=2048, gradient_checkpointing=False)) == (
        pytest.approx(2 * base))
    checkpointed = fit.activation_bytes(shape, FitSetup(batch_size=2, seq_length=1024, gradient_checkpointing=True))
    assert checkpointed < base / 3
    # the logits alone: 2 × 1024 tokens × 152064 × (2 + 8) bytes
    assert checkpointed > 2 * 1024 * 152064 * 10


def assert_suggestions_fit(result, budget):
    assert result.suggestions
    for suggestion in result.suggestions:
        again = estimate(result.shape, suggestion.setup, budget)
        assert suggestion.total_gb <= budget, suggestion.text
        assert suggestion.text.endswith(fit.format_gb(suggestion.total_gb))
        if not suggestion.text.startswith("a smaller model"):
            assert again.total_gb == pytest.approx(suggestion.total_gb) and again.verdict != fit.NO_FIT


def test_single_changes_are_suggested_when_each_is_enough():
    shape = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    result = estimate(shape, FitSetup(method="lora", batch_size=2, seq_length=512, gradient_checkpointing=False), 24)
    assert result.verdict == fit.NO_FIT
    assert_suggestions_fit(result, 24)
    texts = [suggestion.text for suggestion in result.suggestions]
    assert texts[0].startswith("turn on gradient checkpointing")
    assert any(text.startswith("batch size 1 with gradient_accumulation 2") for text in texts)
    assert any(text.startswith("use QLoRA") for text in texts)


def test_combined_changes_when_no_single_one_is_enough():
    shape = ModelShape.from_params(7)
    result = estimate(shape, FitSetup(method="full", batch_size=8, seq_length=2048, gradient_checkpointing=False), 24)
    assert result.total_gb > 150
    assert_suggestions_fit(result, 24)
    assert result.suggestions[0].text.startswith("combine gradient checkpointing, QLoRA")


def test_a_smaller_model_when_nothing_else_is_enough():
    result = estimate(ModelShape.from_params(70), FitSetup(method="full", batch_size=8, seq_length=2048), 8)
    assert_suggestions_fit(result, 8)
    (suggestion,) = result.suggestions
    assert suggestion.text.startswith("a smaller model, up to about")
    assert suggestion.setup.method == "qlora" and suggestion.setup.batch_size == 1


def test_tight_setups_get_suggestions_with_a_margin():
    shape = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    setup = FitSetup(method="qlora", batch_size=4, seq_length=512)
    total = estimate(shape, setup).total_gb
    result = estimate(shape, setup, budget_gb=total / 0.95)
    assert result.verdict == fit.TIGHT
    assert all(estimate(shape, s.setup, result.budget_gb).verdict == fit.FITS for s in result.suggestions)
    assert estimate(shape, setup).verdict == "unknown"  # no budget, no verdict


@pytest.mark.parametrize("profile, budget_gb, precision, checkpointing", [
    ("cpu-only", 8, "fp32", False), ("low", 6, "bf16", True), ("mid", 12, "bf16", True), ("high", 32, "bf16", True),
])
def test_every_recommended_model_fits_its_profiles_smaller_machines(profile, budget_gb, precision, checkpointing):
    assert profile in PROFILES
    for task in TASKS:
        for model in recommended_models(profile, task):
            setup = FitSetup(method=model["method"], precision=precision, gradient_checkpointing=checkpointing)
            result = estimate(resolve_model(model["id"]), setup, budget_gb)
            assert result.verdict == fit.FITS, (model["id"], result.total_gb)


def write_safetensors(path, tensors):
    """A .safetensors file with zeroed float32 tensors: 8-byte header length, JSON header, data."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4 * shape[0] * shape[1]
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))


def test_a_local_folder_counts_its_safetensors_exactly(tmp_path):
    config = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
              "num_attention_heads": 4, "vocab_size": 512, "hidden_act": "silu", "tie_word_embeddings": True}
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    from_config = resolve_model(str(folder))
    assert from_config.params == 512 * 128 + 4 * (4 * 128 * 128 + 3 * 128 * 384)
    assert (from_config.hidden_size, from_config.layers, from_config.vocab_size) == (128, 4, 512)

    write_safetensors(folder / "model.safetensors", {"embed": (512, 128), "layer": (1000, 3)})
    write_safetensors(folder / "adapter_model.safetensors", {"lora_A": (8, 128)})  # not the model's weights
    assert resolve_model("tiny", models_dir=tmp_path).params == 512 * 128 + 3000
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": {"load_in_4bit": True}}))
    assert resolve_model(str(folder)).params == from_config.params  # packed 4-bit elements are not parameters


def test_resolve_model_by_id_count_or_both():
    qwen = resolve_model("Qwen/Qwen2.5-7B-Instruct")
    assert (qwen.params, qwen.hidden_size, qwen.layers, qwen.vocab_size) == (7.62e9, 3584, 28, 152064)
    assert resolve_model("demo").params == pytest.approx(0.9e6)
    assert resolve_model(None, 3).params == 3e9
    near = resolve_model("Qwen/Qwen2.5-7B-Instruct", 7.0)
    assert (near.params, near.hidden_size) == (7e9, 3584)  # a close count keeps the model's shape
    far = resolve_model("Qwen/Qwen2.5-7B-Instruct", 70)
    assert far == ModelShape.from_params(70)
    with pytest.raises(ConfigError, match="enter its parameter count"):
        resolve_model("someone/unknown-model")
    with pytest.raises(ConfigError, match="no config.json"):
        ModelShape.from_folder("/nonexistent")
    with pytest.raises(ConfigError, match="method must be one of full, lora, qlora"):
        FitSetup(method="dora")
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        FitSetup(batch_size=0)


@pytest.mark.parametrize(
    "model, params_b",
    [(None, 0.0009), ("Qwen/Qwen2.5-7B", 7.62), ("meta-llama/Llama-3.3-70B-Instruct", 70.0),
     ("someone/SmolLM3-135M-tuned", 0.135), ("facebook/opt-1.3b", 1.3), ("Qwen/Qwen3-30B-A3B", 30.0), ("gpt2", None)],
)
def test_model_params_from_the_recommended_list_or_the_name(model, params_b):
    assert fit.model_params_b(model) == params_b


def test_a_gpu_of_a_sharded_job_holds_its_share_of_the_weights_and_optimizer_state():
    shape, one = ModelShape.from_params(7), FitSetup(method="full", precision="bf16", batch_size=1, seq_length=512)
    alone = estimate(shape, one)
    ddp = estimate(shape, FitSetup(**{**one.__dict__, "processes": 8}))
    zero2 = estimate(shape, FitSetup(**{**one.__dict__, "processes": 8, "sharding": "zero2"}))
    full = estimate(shape, FitSetup(**{**one.__dict__, "processes": 8, "sharding": "full"}))
    assert ddp.total_gb == pytest.approx(alone.total_gb)  # DDP: a full copy on every GPU
    assert zero2.weights_gb == alone.weights_gb and zero2.optimizer_gb == pytest.approx(alone.optimizer_gb / 8)
    assert full.weights_gb == pytest.approx(alone.weights_gb / 8) and full.gradients_gb == pytest.approx(alone.gradients_gb / 8)
    assert full.activations_gb == alone.activations_gb
    assert alone.total_gb > 100 > full.total_gb  # a 7B full fine-tune fits 8 GPUs of 80 GB only sharded
    with pytest.raises(ConfigError, match="sharding must be one of none, zero2, full"):
        FitSetup(sharding="zero9")
