"""Loads models with transformers: the task's model class, optional bitsandbytes quantization."""

from __future__ import annotations

import os
import sys

from modelforge.config import SHARDING_STRATEGIES
from modelforge.errors import ModelLoadError


def hub_token() -> str | None:
    """The user's Hub token from the environment; never stored anywhere by ModelForge."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGINGFACE_TOKEN") or None


def describe_load_failure(model: str, exc: Exception) -> str:
    text = str(exc)
    lowered = text.lower()
    if "gated" in lowered or "401" in text or "403" in text:
        return (
            f"Model '{model}' is gated or private: accept its license on the Hugging Face Hub and set "
            "HF_TOKEN to a token that has access."
        )
    if os.path.sep in model or model.startswith("."):
        return f"Model folder '{model}' could not be loaded: {text.splitlines()[0] if text else type(exc).__name__}"
    if "offline" in lowered or "connect" in lowered or "resolve" in lowered or "cannot find the requested files" in lowered:
        return (
            f"Model '{model}' could not be downloaded: the Hugging Face Hub is unreachable from here. "
            "Check your network, or point `model` at a local folder (omit it to use the built-in demo model)."
        )
    return (
        f"Model '{model}' was not found: it is neither a local folder nor a model id on the Hugging Face Hub. "
        "Check the spelling (e.g. Qwen/Qwen2.5-0.5B)."
    )


def model_class_for(task: str, model_config):
    import transformers

    if task == "extractive-qa":
        return transformers.AutoModelForQuestionAnswering
    if task == "summarization" and getattr(model_config, "is_encoder_decoder", False):
        return transformers.AutoModelForSeq2SeqLM
    return transformers.AutoModelForCausalLM


def restore_4bit_training_layout(model) -> None:
    """Undo bitsandbytes' CPU repacking of 4-bit weights, which its first eval-mode forward pass does in place for a
    faster inference kernel, and which its training path does not read: a model scored before training would then
    train on scrambled weights. bitsandbytes itself unpacks this way before saving."""
    if "bitsandbytes" not in sys.modules:
        return
    from bitsandbytes.nn import Linear4bit
    from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse

    for module in model.modules():
        state = getattr(module.weight, "quant_state", None) if isinstance(module, Linear4bit) else None
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)


def quantization_config(kind: str | None, runtime, task: str | None = None, sharded: bool = False):
    """`sharded`: FSDP or ZeRO-3 will split the weights, which they only do for float storage (bitsandbytes packs
    4-bit weights into the compute dtype for them)."""
    if kind is None:
        return None
    from transformers import BitsAndBytesConfig

    # A span head (2 outputs) stays in full precision: it is trained whole beside the adapters, which peft refuses
    # on quantized weights. Other models keep transformers' default list (the output embeddings).
    skip = {"llm_int8_skip_modules": ["qa_outputs"]} if task == "extractive-qa" else {}
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, **skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=runtime.torch_dtype,
        **({"bnb_4bit_quant_storage": runtime.torch_dtype} if sharded else {}),
        **skip,
    )


class HuggingFaceProvider:
    name = "huggingface"
    description = "transformers + peft: every task, LoRA or full fine-tuning, 4/8-bit loading."

    def availability(self):
        from modelforge.providers import Availability

        return Availability(True)

    def supports(self, config) -> str | None:
        return None  # every task, strategy and loading option

    def worker_python(self) -> str:
        return sys.executable  # the app's own environment

    def load(self, config, runtime, model_path: str):
        from transformers import AutoConfig, AutoTokenizer

        from modelforge.providers import LoadedModel

        token = hub_token()
        try:
            model_config = AutoConfig.from_pretrained(model_path, token=token)
            tokenizer = AutoTokenizer.from_pretrained(model_path, token=token)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(describe_load_failure(config.model or model_path, exc)) from exc
        model_class = model_class_for(config.task, model_config)
        try:
            model = model_class.from_pretrained(
                model_path,
                token=token,
                dtype=runtime.torch_dtype,
                quantization_config=quantization_config(
                    config.quantization, runtime, config.task, config.distributed.strategy in SHARDING_STRATEGIES
                ),
                device_map=runtime.device_map,
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(describe_load_failure(config.model or model_path, exc)) from exc
        if config.init_from:  # a finished job's adapter (training.resolve_init_from gives its folder), trained further
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, config.init_from, is_trainable=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return LoadedModel(model=model, tokenizer=tokenizer)
