"""Resolve where and how a model runs (device, precision, quantization, placement) against the hardware the process
actually has; torch is imported only inside the functions."""

from __future__ import annotations

import os
from dataclasses import dataclass

from modelforge.config import SHARDING_STRATEGIES, JobConfig
from modelforge.errors import ConfigError
from modelforge.tasks import TASKS


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    precision: str  # fp32 | fp16 | bf16
    gradient_checkpointing: bool
    device_index: int = 0  # the GPU this process uses (see gpu_index)
    sharded: bool = False  # FSDP or ZeRO-3 split the weights across ranks

    @property
    def use_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]

    @property
    def device_map(self) -> dict[str, int] | str:
        """Where from_pretrained places the whole model: this process's GPU, else the CPU."""
        return {"": self.device_index} if self.device == "cuda" else "cpu"

    @property
    def device_label(self) -> str:
        return f"cuda:{self.device_index}" if self.device == "cuda" else "cpu"

    def quantization_config(self, kind: str | None, task: str | None = None):
        """bitsandbytes loading for a config's `quantization` (4bit | 8bit), computing in this runtime's precision."""
        if kind is None:
            return None
        from transformers import BitsAndBytesConfig

        # A span head (2 outputs) stays in full precision: it is trained whole beside the adapters, which peft refuses
        # on quantized weights. Other models keep transformers' default list (the output embeddings).
        skip = {"llm_int8_skip_modules": ["qa_outputs"]} if task and TASKS[task].family == "qa" else {}
        if kind == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True, **skip)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=self.torch_dtype,
            # Sharding splits float storage only: bitsandbytes then packs 4-bit weights into the compute dtype.
            **({"bnb_4bit_quant_storage": self.torch_dtype} if self.sharded else {}),
            **skip,
        )

    def describe(self) -> str:
        """The hardware a job trained on, in words, for its record and model card."""
        import torch

        if self.device == "cuda":
            return f"{torch.cuda.get_device_name(self.device_index)} ({self.precision})"
        return f"CPU ({os.cpu_count()} cores, {self.precision})"


def gpu_index() -> int:
    """The GPU of this process: its LOCAL_RANK when a distributed launcher (torchrun, accelerate) started it, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_runtime(config: JobConfig) -> Runtime:
    """The runtime a training job's `training.precision` and `gradient_checkpointing` ask for, checked here."""
    import torch

    training = config.training
    sharded = config.distributed.strategy in SHARDING_STRATEGIES
    if not torch.cuda.is_available():
        if training.precision in ("fp16", "bf16"):
            raise ConfigError(
                f"training.precision: {training.precision} needs a GPU and none is available here; use auto or fp32."
            )
        # Checkpointing only costs time on CPU, where memory is rarely the limit.
        checkpointing = training.gradient_checkpointing is True
        return Runtime("cpu", "fp32", checkpointing, sharded=sharded)
    precision = training.precision
    if precision == "auto":
        precision = _gpu_precision()
    elif precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("training.precision: this GPU does not support bf16; use auto or fp16.")
    checkpointing = training.gradient_checkpointing
    return Runtime("cuda", precision, True if checkpointing == "auto" else checkpointing, gpu_index(), sharded)


def inference_runtime() -> Runtime:
    """The runtime of a model loaded to answer (the Playground): the GPU in half precision when there is one, the CPU
    in fp32 otherwise, as training's `precision: auto` resolves."""
    import torch

    if not torch.cuda.is_available():
        return Runtime("cpu", "fp32", gradient_checkpointing=False)
    return Runtime("cuda", _gpu_precision(), gradient_checkpointing=False, device_index=gpu_index())


def _gpu_precision() -> str:
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
