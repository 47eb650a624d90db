"""Resolve a config's `auto` settings against the hardware the worker actually has (imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

from modelforge.config import JobConfig


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    precision: str  # fp32 | fp16 | bf16
    gradient_checkpointing: bool
    device_index: int = 0  # this rank's GPU: torchrun's LOCAL_RANK among the visible ones (0 for one process)

    @property
    def device_map(self) -> dict[str, int] | str:
        """Where from_pretrained puts the whole model: this rank's own GPU, or the CPU."""
        return {"": self.device_index} if self.device == "cuda" else "cpu"

    @property
    def use_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]

    @property
    def device_label(self) -> str:
        return f"cuda:{self.device_index}" if self.device == "cuda" else "cpu"

    def describe(self) -> str:
        """The hardware a job trained on, in words, for its record and model card."""
        import os

        import torch

        if self.device == "cuda":
            return f"{torch.cuda.get_device_name(self.device_index)} ({self.precision})"
        return f"CPU ({os.cpu_count()} cores, {self.precision})"


def resolve_runtime(config: JobConfig) -> Runtime:
    import os

    import torch

    from modelforge.errors import ConfigError

    training = config.training
    if not torch.cuda.is_available():
        if training.precision in ("fp16", "bf16"):
            raise ConfigError(
                f"training.precision: {training.precision} needs a GPU and none is available here; use auto or fp32."
            )
        # Checkpointing only costs time on CPU, where memory is rarely the limit.
        checkpointing = training.gradient_checkpointing is True
        return Runtime("cpu", "fp32", checkpointing)
    precision = training.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("training.precision: this GPU does not support bf16; use auto or fp16.")
    checkpointing = training.gradient_checkpointing
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return Runtime("cuda", precision, True if checkpointing == "auto" else checkpointing, local_rank)
