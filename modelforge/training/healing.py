"""Runs that heal instead of dying: out of memory retries with half the batch, a NaN or exploding loss stops with a
checkpoint and a diagnosis. Worker side (imports torch and transformers).

A memory limit can be simulated, for tests and for trying a config out: with MODELFORGE_FAULT_OOM_STEP=N, every
training step from step N on fails with torch.OutOfMemoryError while the per-device batch is larger than
MODELFORGE_FAULT_OOM_BATCH (default 1), as an allocation on a full GPU does.
"""

from __future__ import annotations

import math
import os

import torch
from transformers import TrainerCallback

from modelforge.config import JobConfig

FAULT_OOM_STEP = "MODELFORGE_FAULT_OOM_STEP"
FAULT_OOM_BATCH = "MODELFORGE_FAULT_OOM_BATCH"
EXPLOSION_FACTOR = 10.0  # a logged loss above this many times the first one (or 1.0, if larger) has exploded
_MEMORY_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a failure is the device or the host running out of memory, however the allocator words it."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(words in str(exc).lower() for words in _MEMORY_WORDS)


def halved_batch(config: JobConfig) -> JobConfig | None:
    """The config with half the batch and twice the gradient accumulation (the same effective batch); None when the
    batch is already 1 or the user turned the retry off (training.retry_out_of_memory)."""
    training = config.training
    if not training.retry_out_of_memory or training.batch_size < 2:
        return None
    batch = training.batch_size // 2
    # Even batches keep their effective batch exactly; an odd one (5 -> 2 x 3) grows it by the least possible.
    accumulation = math.ceil(training.gradient_accumulation * training.batch_size / batch)
    return config.model_copy(
        update={"training": training.model_copy(update={"batch_size": batch, "gradient_accumulation": accumulation})}
    )


def free_memory() -> None:
    """Give back what a failed try held, on the GPU too, before the next one loads the model again."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def describe_change(before: JobConfig, after: JobConfig, step: int, checkpoint) -> str:
    old, new = before.training, after.training
    start = f"resumed from {checkpoint.name}" if checkpoint else "started again (no checkpoint yet)"
    return (
        f"Out of memory at step {step}: retried with batch_size {old.batch_size} -> {new.batch_size} and "
        f"gradient_accumulation {old.gradient_accumulation} -> {new.gradient_accumulation} (effective batch "
        f"{new.batch_size * new.gradient_accumulation}), {start}."
    )


class LossGuard(TrainerCallback):
    """Stops training when the gradients turn NaN/Inf (checked before the optimizer applies them, so the weights and
    the checkpoint saved at that step are still the last good ones) or when the logged loss explodes.

    The Trainer's logged loss hides NaN steps (logging_nan_inf_filter), hence the check on the gradients. Under fp16
    the gradient scaler skips overflowing steps by itself: there only the loss is watched.
    """

    def __init__(self, config: JobConfig, precision: str):
        self.config = config
        self.precision = precision
        self.diagnosis: str | None = None
        self._first_loss: float | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.precision == "fp16" or self.diagnosis:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            for parameter in model.parameters():
                parameter.grad = None  # the optimizer skips parameters without a gradient: this step changes nothing
            self._stop(control, state.global_step + 1, "the loss became NaN or infinite")

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None or self.diagnosis:
            return
        if not math.isfinite(loss):
            self._stop(control, state.global_step, "the loss became NaN or infinite")
        elif self._first_loss is None:
            self._first_loss = loss
        elif loss > EXPLOSION_FACTOR * max(self._first_loss, 1.0):
            self._stop(control, state.global_step, f"the loss exploded to {loss:.4g} (from {self._first_loss:.4g})")

    def _stop(self, control, step: int, what: str) -> None:
        control.should_save = True
        control.should_training_stop = True
        training = self.config.training
        fixes = [
            f"lower training.learning_rate ({training.learning_rate:g} -> {training.learning_rate / 10:g})",
            "raise training.warmup_ratio (e.g. 0.1)",
        ]
        if self.precision == "fp16":
            fixes.insert(0, "use bf16 (training.precision: bf16) where the GPU supports it, else fp32: fp16 overflows")
        self.diagnosis = (
            f"Stopped at step {step}: {what}, so training did not go on. Likely fixes: {'; '.join(fixes)}; "
            "check the data for extreme rows. Then start a new job."
        )


class MemoryLimitFault(TrainerCallback):
    """The simulated memory limit described in this module's docstring."""

    def __init__(self, step: int, largest_batch: int):
        self.step = step
        self.largest_batch = largest_batch

    @classmethod
    def from_env(cls) -> "MemoryLimitFault | None":
        if not os.environ.get(FAULT_OOM_STEP):
            return None
        return cls(int(os.environ[FAULT_OOM_STEP]), int(os.environ.get(FAULT_OOM_BATCH, "1")))

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 >= self.step and args.per_device_train_batch_size > self.largest_batch:
            raise torch.OutOfMemoryError(
                f"simulated out of memory ({FAULT_OOM_STEP}={self.step}): a batch of "
                f"{args.per_device_train_batch_size} rows does not fit, {self.largest_batch} does"
            )
