"""Provider registry: the libraries that load a model for training, keyed by the config's `provider`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Protocol

from modelforge.providers.huggingface import HuggingFaceProvider
from modelforge.providers.unsloth import UnslothProvider


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any


class Provider(Protocol):
    name: str
    description: str

    def availability(self) -> Availability: ...

    def load(self, config, runtime, model_path: str) -> LoadedModel: ...


PROVIDERS: dict[str, Provider] = {
    "huggingface": HuggingFaceProvider(),
    "unsloth": UnslothProvider(),
}


# A provider may declare two optional hooks, which the Hugging Face one does not need: `supports(config)` says why it
# cannot train a config before a worker starts, and `worker_python()` names the interpreter of its own environment.
def refusal(config) -> str | None:
    """Why the config's provider cannot train it, known before a worker starts; None when it can."""
    supports = getattr(PROVIDERS[config.provider], "supports", None)
    return supports(config) if supports else None


def worker_python(provider: str) -> str:
    """The interpreter that runs the worker of a job with this provider."""
    own = getattr(PROVIDERS[provider], "worker_python", None)
    return own() if own else sys.executable
