"""Trains with transformers + peft, loading through modelforge.loading."""

from __future__ import annotations

import sys

from modelforge import loading
from modelforge.settings import Settings


class HuggingFaceProvider:
    name = "huggingface"
    description = "transformers + peft: every task, LoRA or full fine-tuning, 4/8-bit loading."

    def availability(self, settings: Settings):
        from modelforge.providers import Availability

        return Availability(True)

    def supports(self, config) -> str | None:
        return None  # every task, strategy and loading option

    def worker_python(self, settings: Settings) -> str:
        return sys.executable  # the app's own environment

    def load(self, config, runtime, model_path: str) -> loading.LoadedModel:
        # An init_from adapter (training.resolve_init_from gives a finished job's folder) is trained further.
        return loading.load(
            model_path, config.task, runtime, quantization=config.quantization, adapter=config.init_from,
            trainable=True, name=config.model or model_path,
        )
