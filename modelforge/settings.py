"""Where ModelForge keeps its data: one home folder holding the database, uploads, runs and the demo models."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SPACES_PERSISTENT_DIR = Path("/data")
REPO_ROOT = Path(__file__).resolve().parent.parent
# The recommended models and the samples: the repository's assets/, linked into the package so that a wheel (and
# `pip install .`) carries them as package data.
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# Set (to anything but 0 or false) on a server whose jobs must not write TensorBoard event files.
DISABLE_TENSORBOARD = "MODELFORGE_DISABLE_TENSORBOARD"


def default_home() -> Path:
    if os.environ.get("MODELFORGE_HOME"):
        return Path(os.environ["MODELFORGE_HOME"]).expanduser()
    # On Hugging Face Spaces only /data survives a restart, when persistent storage is enabled.
    if os.environ.get("SPACE_ID") and SPACES_PERSISTENT_DIR.is_dir():
        return SPACES_PERSISTENT_DIR / "modelforge"
    return Path.home() / ".modelforge"


def _database_path(home: Path) -> Path:
    if os.environ.get("MODELFORGE_DB_PATH"):
        return Path(os.environ["MODELFORGE_DB_PATH"]).expanduser()
    return home / "modelforge.db"


def _unsloth_python() -> Path | None:
    """The interpreter of the Unsloth environment, which runs Unsloth jobs' workers (its version caps conflict with
    the main environment's): MODELFORGE_UNSLOTH_PYTHON, else the .venv-unsloth that tests/setup.sh builds."""
    if os.environ.get("MODELFORGE_UNSLOTH_PYTHON"):
        return Path(os.environ["MODELFORGE_UNSLOTH_PYTHON"]).expanduser()
    default = REPO_ROOT / ".venv-unsloth" / "bin" / "python"
    return default if default.exists() else None


@dataclass(frozen=True)
class Settings:
    """Read from the environment once, when built (`from_env` at start-up); a child process gets them back through
    `worker_env`. Fields left out are filled from the environment as it is at construction."""

    home: Path
    database_url: str | None = None
    disabled_trackers: frozenset[str] = frozenset()  # names of modelforge.trackers.TRACKERS this server refuses
    database_path: Path | None = None  # MODELFORGE_DB_PATH, else the home's modelforge.db
    unsloth_python: Path | None = field(default_factory=_unsloth_python)

    def __post_init__(self) -> None:
        if self.database_path is None:
            object.__setattr__(self, "database_path", _database_path(self.home))  # frozen: set once, here

    @classmethod
    def from_env(cls) -> "Settings":
        tensorboard_off = os.environ.get(DISABLE_TENSORBOARD, "").strip().lower() not in ("", "0", "false")
        return cls(
            home=default_home(),
            database_url=os.environ.get("DATABASE_URL") or None,
            disabled_trackers=frozenset({"tensorboard"} if tensorboard_off else ()),
        )

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    def ensure_dirs(self) -> None:
        for folder in (self.home, self.runs_dir, self.datasets_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def worker_env(self) -> dict[str, str]:
        """Environment that makes a worker process see the same home and database as this process."""
        env = {"MODELFORGE_HOME": str(self.home), "MODELFORGE_DB_PATH": str(self.database_path)}
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env
