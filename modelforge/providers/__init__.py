"""Provider registry: the libraries that load a model for training, keyed by the config's `provider`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelforge.loading import LoadedModel
from modelforge.providers.huggingface import HuggingFaceProvider
from modelforge.providers.unsloth import UnslothProvider
from modelforge.settings import Settings


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""


class Provider(Protocol):
    name: str
    description: str

    def availability(self, settings: Settings) -> Availability:
        """Whether this provider can train here (its library, or its own environment, named in `settings`)."""

    def load(self, config, runtime, model_path: str) -> LoadedModel: ...

    def supports(self, config) -> str | None:
        """Why this provider cannot train the config, known before a worker starts; None when it can."""

    def worker_python(self, settings: Settings) -> str:
        """The interpreter, in the provider's own environment, that runs its jobs' workers."""


PROVIDERS: dict[str, Provider] = {
    "huggingface": HuggingFaceProvider(),
    "unsloth": UnslothProvider(),
}

