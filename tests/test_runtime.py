"""Where and how a model runs: the one resolver every loader takes its device, precision, quantization and
placement from."""

import pytest
from modelforge.config import JobConfig
from modelforge.errors import ConfigError
from modelforge.runtime import Runtime, gpu_index, inference_runtime, resolve_runtime


def test_training_and_the_playground_resolve_the_same_runtime_on_this_cpu():
    trained = resolve_runtime(JobConfig(name="r", dataset="d.jsonl"))
    assert trained == inference_runtime() == Runtime("cpu", "fp32", gradient_checkpointing=False)
    assert trained.device_map == "cpu"
    with pytest.raises(ConfigError, match="training.precision: bf16 needs a GPU and none is available here"):
        resolve_runtime(JobConfig(name="r", dataset="d.jsonl", training={"precision": "bf16"}))


def test_a_process_started_by_a_distributed_launcher_places_its_model_on_its_own_gpu(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert gpu_index() == 0
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert Runtime("cuda", "bf16", False, gpu_index()).device_map == {"": 3}


def test_quantized_loading_keeps_a_span_head_in_full_precision():
    import torch

    runtime = Runtime("cpu", "fp32", False)
    assert runtime.quantization_config(None) is None
    four_bit = runtime.quantization_config("4bit", "extractive-qa")
    assert four_bit.load_in_4bit and four_bit.bnb_4bit_quant_type == "nf4"
    assert four_bit.bnb_4bit_compute_dtype == torch.float32 and four_bit.llm_int8_skip_modules == ["qa_outputs"]
    eight_bit = runtime.quantization_config("8bit", "text-generation")
    assert eight_bit.load_in_8bit and eight_bit.llm_int8_skip_modules is None


def test_a_sharded_job_stores_its_4bit_weights_in_the_compute_dtype_fsdp_can_split():
    import torch

    config = JobConfig(name="r", dataset="d.jsonl", distributed={"strategy": "fsdp"})
    sharded = resolve_runtime(config)
    assert sharded.sharded
    assert sharded.quantization_config("4bit").bnb_4bit_quant_storage == torch.float32
    assert resolve_runtime(JobConfig(name="r", dataset="d.jsonl")).quantization_config("4bit").bnb_4bit_quant_storage == torch.uint8
