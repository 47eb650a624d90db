"""QLoRA: the SFT recipe on a base model loaded in 4-bit NF4 (bitsandbytes runs on this CPU too)."""

import json

import pytest

from modelforge.config import JobConfig
from modelforge.errors import ConfigError


def test_qlora_trains_adapters_on_a_4bit_model_and_learns_the_mapping(engine, mapping_dataset, demo_model_path):
    from bitsandbytes.nn import Linear4bit
    from peft import PeftModel

    from modelforge.prediction import generate_reply
    from modelforge.providers import PROVIDERS
    from modelforge.runtime import Runtime

    config = JobConfig(
        name="qlora", strategy="qlora", dataset=str(mapping_dataset["train"]),
        training={"max_steps": 80, "batch_size": 16, "learning_rate": 3e-3, "save_steps": 100, "logging_steps": 10},
    )
    job = engine.runner.wait(engine.submit(config).id)
    assert job.status == "completed", job.error
    saved = JobConfig.load(f"{job.output_dir}/modelforge.yaml")
    assert saved.quantization == "4bit" and saved.strategy == "qlora"

    # The worker's loading path, as it loaded the base for training: its linear layers are 4-bit.
    loaded = PROVIDERS["huggingface"].load(saved, Runtime("cpu", "fp32", False), str(demo_model_path))
    quantized = [module for module in loaded.model.modules() if isinstance(module, Linear4bit)]
    assert len(quantized) == 4 * 7  # q, k, v, o, gate, up, down in each of the 4 layers
    assert all(module.weight.quant_type == "nf4" for module in quantized)

    model = PeftModel.from_pretrained(loaded.model, job.output_dir).eval()
    rows = [json.loads(line) for line in mapping_dataset["train"].read_text().splitlines()[:40]]
    hits = sum(generate_reply(model, loaded.tokenizer, row["input"]) == row["output"] for row in rows)
    assert hits / len(rows) >= 0.95


def test_qlora_needs_lora(engine, mapping_dataset):
    with pytest.raises(ConfigError, match="lora: strategy qlora trains LoRA adapters"):
        engine.submit(JobConfig(name="q", strategy="qlora", dataset=str(mapping_dataset["train"]), lora=None))


def test_a_model_this_cpu_cannot_train_in_4bit_fails_with_the_reason(engine, mapping_dataset, demo_model_path, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    odd = AutoConfig.from_pretrained(demo_model_path)
    odd.intermediate_size = 344  # not a multiple of 32
    folder = tmp_path / "odd-model"
    AutoModelForCausalLM.from_config(odd).save_pretrained(folder)
    AutoTokenizer.from_pretrained(demo_model_path).save_pretrained(folder)

    config = JobConfig(
        name="odd", strategy="qlora", model=str(folder), dataset=str(mapping_dataset["train"]),
        training={"max_steps": 5, "batch_size": 4},
    )
    job = engine.runner.wait(engine.submit(config).id)
    if job.status == "completed":
        pytest.skip("this CPU's bitsandbytes kernels take any output size")
    assert job.status == "failed"
    assert "multiple of 32" in job.error
