"""Provider registry: the libraries that load a model for training, keyed by the config's `provider`."""

from __future__ import annotations

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
