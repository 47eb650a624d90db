"""The one model loader: training (the huggingface provider), the Playground, export, the reward model and evaluation
load through it, so token handling, the task's model class, quantization and device placement are decided once.

Where and in which precision a model runs comes from a Runtime (modelforge.runtime). This module imports torch,
transformers and peft only inside its functions: the web process imports it for `hub_token`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelforge import gguf
from modelforge.demo_model import demo_kind, ensure_demo_model
from modelforge.errors import ModelLoadError

if TYPE_CHECKING:  # annotations only: the config imports the providers, which load through this module
    from modelforge.config import JobConfig
    from modelforge.settings import Settings
from modelforge.tasks import TASKS


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any


def hub_token() -> str | None:
    """The user's Hub token from the environment; never stored anywhere by ModelForge."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGINGFACE_TOKEN") or None


def resolve_model_path(config: JobConfig, settings: Settings) -> str:
    """The folder or hub id the config's model loads from: a GGUF file's conversion, the demo model when empty."""
    if config.model:
        file = gguf.gguf_file(config.model)
        return str(gguf.ensure_converted(file, settings.models_dir)) if file else config.model
    return str(ensure_demo_model(settings.models_dir, demo_kind(config.task)))


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

    family = TASKS[task].family_for(getattr(model_config, "is_encoder_decoder", False))
    return {
        "causal": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "qa": transformers.AutoModelForQuestionAnswering,
    }[family]


def load(path: str, task: str, runtime, *, quantization: str | None = None, tokenizer: str | None = None,
         adapter: str | None = None, trainable: bool = False, name: str | None = None) -> LoadedModel:
    """The model at `path` (a folder or hub id) for `task`, with its tokenizer (from `tokenizer` when it lies
    elsewhere) and, when given, the LoRA `adapter` folder on top (`trainable` to train it further)."""
    processor = load_tokenizer(tokenizer or path, name=name)
    model = load_weights(path, task, runtime, quantization=quantization, name=name)
    if adapter:
        model = apply_adapter(model, adapter, trainable=trainable, base=name or path)
    return LoadedModel(model=model, tokenizer=processor)


def load_tokenizer(path: str, name: str | None = None):
    """The tokenizer at `path`, with a pad token (its EOS when it has none: batches and generation need one)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, token=hub_token())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(describe_load_failure(name or path, exc)) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_weights(path: str, task: str, runtime, *, quantization: str | None = None, model_class=None,
                 dtype: Any = None, name: str | None = None, **options):
    """The weights at `path` with the task's head (or `model_class`'s), in the runtime's precision (or `dtype`, e.g.
    "auto": as saved), bitsandbytes-quantized when asked, placed on the runtime's device; `options` go to
    from_pretrained (e.g. num_labels)."""
    from transformers import AutoConfig

    shown = name or path
    token = hub_token()
    try:
        if model_class is None:
            model_class = model_class_for(task, AutoConfig.from_pretrained(path, token=token))
        return model_class.from_pretrained(
            path,
            token=token,
            dtype=runtime.torch_dtype if dtype is None else dtype,
            quantization_config=runtime.quantization_config(quantization, task),
            device_map=runtime.device_map,
            **options,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            head = model_class.__name__.removeprefix("AutoModelFor")
            raise ModelLoadError(
                f"{shown} cannot be loaded for {task}: it has no {head} head. Pick the task the model was made for."
            ) from exc
        raise ModelLoadError(describe_load_failure(shown, exc)) from exc
    except OSError as exc:
        raise ModelLoadError(describe_load_failure(shown, exc)) from exc


def apply_adapter(model, folder: str, trainable: bool = False, base: str | None = None):
    """`model` with the peft adapter saved in `folder` on top."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    except (OSError, ValueError) as exc:
        base = base or model.config.name_or_path
        raise ModelLoadError(f"The adapter in {folder} could not be applied to {base}: {exc}") from exc


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
