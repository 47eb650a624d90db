"""Unsloth's fast kernels for causal LMs. Optional: its version caps conflict with ours, so it needs its own environment."""

from __future__ import annotations

import importlib.util

from modelforge.errors import UnavailableError


class UnslothProvider:
    name = "unsloth"
    description = "Unsloth's patched kernels for causal-LM LoRA/QLoRA; faster and leaner on NVIDIA GPUs."

    def availability(self):
        from modelforge.providers import Availability

        if importlib.util.find_spec("unsloth") is None:
            return Availability(
                False, "unsloth is not installed (it needs an environment of its own: its version caps conflict with ModelForge's)"
            )
        return Availability(False, "training through Unsloth is not wired into ModelForge yet")

    def load(self, config, runtime, model_path: str):
        raise UnavailableError(f"Provider unsloth is unavailable: {self.availability().reason}.")
