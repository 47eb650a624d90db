"""Unsloth's fast kernels for causal LMs, in an environment of its own.

Unsloth caps transformers, trl and datasets below what the main environment needs, so it lives in a second virtual
environment (requirements-unsloth.txt; tests/setup.sh builds .venv-unsloth) whose interpreter runs the workers of
Unsloth jobs. The web process only asks whether that environment has unsloth; it never imports unsloth or torch.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from modelforge import hardware
from modelforge.errors import ModelLoadError, UnavailableError
from modelforge.loading import LoadedModel, describe_load_failure, hub_token
from modelforge.settings import Settings
from modelforge.tasks import TASKS

CAUSAL_TASKS = tuple(name for name, task in TASKS.items() if "causal" in task.families)
STRATEGIES = ("sft", "qlora", "dpo")
SETUP_HINT = (
    "`bash tests/setup.sh` builds it in .venv-unsloth, or set MODELFORGE_UNSLOTH_PYTHON to the python of an "
    "environment where requirements-unsloth.txt is installed"
)


@functools.cache
def _has_unsloth(python: str) -> bool:
    """Whether that interpreter can find unsloth; asked once per process (find_spec only: no import, ~0.1 s)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('unsloth') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _is_encoder_decoder_folder(model: str) -> bool:
    config_file = Path(model).expanduser() / "config.json"
    try:
        return bool(json.loads(config_file.read_text(encoding="utf-8")).get("is_encoder_decoder"))
    except (OSError, ValueError):
        return False  # a Hub id or an unreadable folder: the worker's loading decides


class UnslothProvider:
    name = "unsloth"
    description = "Unsloth's patched kernels for causal-LM LoRA/QLoRA; faster and leaner on NVIDIA GPUs."

    def availability(self, settings: Settings):
        from modelforge.providers import Availability

        if importlib.util.find_spec("unsloth") is not None:
            return Availability(True)
        python = settings.unsloth_python
        if python is None:
            return Availability(
                False, f"unsloth is not installed and there is no Unsloth environment (it needs its own): {SETUP_HINT}"
            )
        if not python.exists():
            return Availability(False, f"the Unsloth interpreter {python} does not exist: {SETUP_HINT}")
        if not _has_unsloth(str(python)):
            return Availability(
                False,
                f"the Unsloth interpreter {python} has no unsloth installed: install requirements-unsloth.txt there",
            )
        return Availability(True)

    def worker_python(self, settings: Settings) -> str:
        """The interpreter for an Unsloth job's worker: this one when it has unsloth, else the Unsloth environment's.

        Without either, this one: its worker then records why the provider is unavailable.
        """
        python = settings.unsloth_python
        if importlib.util.find_spec("unsloth") is not None or python is None or not python.exists():
            return sys.executable
        return str(python)

    def supports(self, config) -> str | None:
        """Why Unsloth cannot train this config, known before a worker starts; None when it can."""
        instead = "; use provider huggingface"
        if config.task not in CAUSAL_TASKS:
            return f"Unsloth trains causal language models ({', '.join(CAUSAL_TASKS)}), not {config.task}{instead}"
        if config.strategy not in STRATEGIES:
            return f"Unsloth runs the strategies {', '.join(STRATEGIES)}, not {config.strategy}{instead}"
        if config.model and _is_encoder_decoder_folder(config.model):
            return f"{config.model} is an encoder-decoder model; Unsloth trains causal language models only{instead}"
        if config.model is None and TASKS[config.task].family == "seq2seq":
            return (
                f"the built-in {config.task} demo model is an encoder-decoder, which Unsloth does not train; "
                f"name a causal model in `model`{instead}"
            )
        if not hardware.detect().gpus:
            # Without an NVIDIA GPU Unsloth trains on its CPU backend, which would quietly change these settings.
            on_cpu = "on CPU Unsloth cannot"
            if config.quantization == "8bit":
                return f"{on_cpu} load 8-bit weights (it would train 16-bit ones); set quantization to 4bit or null"
            if config.training.packing is True:
                return f"{on_cpu} keep packed rows apart (it needs FlashAttention); set training.packing to false"
        return None

    def load(self, config, runtime, model_path: str):
        """The model with Unsloth's LoRA already applied (none for full fine-tuning), and its tokenizer.

        The worker imported unsloth before transformers, trl and peft, as it must (it patches them).
        """
        from transformers import AutoConfig
        from unsloth import FastLanguageModel

        token = hub_token()
        try:
            if AutoConfig.from_pretrained(model_path, token=token).is_encoder_decoder:
                raise UnavailableError(
                    f"{config.model or model_path} is an encoder-decoder model and Unsloth trains causal language "
                    "models only; use provider huggingface."
                )
            model, tokenizer = FastLanguageModel.from_pretrained(
                # An init_from adapter folder: Unsloth loads its base with that adapter on top, trainable.
                model_name=config.init_from or model_path,
                max_seq_length=config.training.max_length,
                dtype=runtime.torch_dtype,
                load_in_4bit=config.quantization == "4bit",
                load_in_8bit=config.quantization == "8bit",
                full_finetuning=config.lora is None,
                token=token,
                use_gradient_checkpointing="unsloth" if runtime.gradient_checkpointing else False,
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(describe_load_failure(config.model or model_path, exc)) from exc
        if config.quantization == "4bit" and not getattr(model, "is_loaded_in_4bit", False):
            raise UnavailableError(
                "quantization: Unsloth could not load this model in 4-bit on this machine (bitsandbytes' kernels do "
                "not run here, or refused its layers) and would train 16-bit weights instead; use the sft strategy, "
                "or provider huggingface."
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        lora = config.lora
        if lora is not None:
            # Unsloth's own LoRA (its fused kernels on GPU); the trainers see a PEFT model and add none of their own.
            model = FastLanguageModel.get_peft_model(
                model,
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                use_gradient_checkpointing="unsloth" if runtime.gradient_checkpointing else False,
                random_state=config.training.seed,
            )
        return LoadedModel(model=model, tokenizer=tokenizer)
