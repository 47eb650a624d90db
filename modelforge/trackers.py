"""Experiment trackers a job may report to, keyed by the config's `trackers`.

Each is a name of the trainers' `report_to`, the package transformers needs to report to it, and a store in the
job's folder that the worker points it at through the variables transformers' integrations read when a trainer is
built: TensorBoard's event files, MLflow's and trackio's local stores, Weights & Biases' offline runs. Whether a
tracker can run is asked of the installed packages without importing them, so the web process stays light.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from modelforge import run_folder
from modelforge.errors import ConfigError
from modelforge.settings import DISABLE_TENSORBOARD, Settings

PROJECT = "modelforge"  # trackio's and W&B's project: the job's runs are named by the job


@dataclass(frozen=True)
class Tracker:
    name: str  # the config's name, and the trainers' report_to name
    description: str
    module: str  # what transformers imports to report to it
    package: str  # what pip installs for it
    folder: str  # its store: this folder of the job's folder
    environment: Callable[[Path, Path], dict[str, str]]  # (store, stage) -> the variables pointing it at the store
    viewer: str  # the command that shows the store, formatted with `store`

    @property
    def install(self) -> str:
        return f"pip install {self.package}"

    def store(self, job_dir: str | Path) -> Path:
        return Path(job_dir) / self.folder

    def unavailable(self, settings: Settings) -> str | None:
        """Why the tracker cannot report on this machine, or None."""
        if self.name in settings.disabled_trackers:
            return f"turned off on this server ({DISABLE_TENSORBOARD} is set)"
        if importlib.util.find_spec(self.module) is None:
            return f"not installed ({self.install})"
        return None


def _tensorboard(store: Path, stage: Path) -> dict[str, str]:
    return {"TENSORBOARD_LOGGING_DIR": str(store / stage)}


def _mlflow(store: Path, stage: Path) -> dict[str, str]:
    # MLflow 3 refuses a folder store unless allowed; its database store needs the full mlflow package (~200 MB more).
    return {"MLFLOW_TRACKING_URI": store.resolve().as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true",
            "MLFLOW_EXPERIMENT_NAME": PROJECT}


def _trackio(store: Path, stage: Path) -> dict[str, str]:
    return {"TRACKIO_DIR": str(store)}


def _wandb(store: Path, stage: Path) -> dict[str, str]:
    # Offline, so a job never needs the network to log, unless the server holds a W&B key or chose a mode itself.
    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    return {"WANDB_DIR": str(store), "WANDB_MODE": mode, "WANDB_PROJECT": PROJECT}


TRACKERS: dict[str, Tracker] = {
    "tensorboard": Tracker(
        "tensorboard", "TensorBoard event files", module="tensorboard", package="tensorboard",
        folder=run_folder.TENSORBOARD_DIR, environment=_tensorboard, viewer="tensorboard --logdir {store}",
    ),
    "trackio": Tracker(
        "trackio", "trackio's local store", module="trackio", package="trackio", folder=run_folder.TRACKIO_DIR,
        environment=_trackio, viewer=f"TRACKIO_DIR={{store}} trackio show --project {PROJECT}",
    ),
    "wandb": Tracker(
        "wandb", "Weights & Biases, offline unless WANDB_API_KEY is set", module="wandb", package="wandb",
        folder=run_folder.WANDB_DIR, environment=_wandb, viewer="wandb sync {store}/wandb/offline-run-*",
    ),
    "mlflow": Tracker(
        "mlflow", "MLflow's local store", module="mlflow", package="mlflow-skinny", folder=run_folder.MLFLOW_DIR,
        environment=_mlflow, viewer="MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {store}",
    ),
}


def check(names: list[str], settings: Settings) -> None:
    """ConfigError naming what to install (or that the server turned it off) when a job's tracker cannot report here."""
    problems = []
    for name in names:
        reason = TRACKERS[name].unavailable(settings)
        if reason:
            action = "leave it out" if name in settings.disabled_trackers else "install it or leave it out"
            problems.append(f"{name} is {reason}; {action} of the job's trackers")
    if problems:
        raise ConfigError("trackers: " + "; ".join(problems) + ".")


def trainer_options(config, stage_dir: Path) -> dict:
    """The trainer arguments that report to the job's trackers, for the trainer about to be built in `stage_dir` (the
    job's folder, or an earlier stage's folder in it); points each tracker at its store in the job's folder, in this
    worker's environment, where transformers' integrations read it when the trainer is built."""
    job_dir = Path(config.output_dir or stage_dir)
    stage = stage_dir.relative_to(job_dir) if stage_dir.is_relative_to(job_dir) else Path()
    for name in config.trackers:
        tracker = TRACKERS[name]
        os.environ.update(tracker.environment(tracker.store(job_dir), stage))
    return {
        "report_to": list(config.trackers) or "none",
        "run_name": config.name if stage == Path() else f"{config.name}/{stage}",
        "project": PROJECT,
    }


def stores(config, job_dir: str | Path) -> list[tuple[Tracker, Path, str]]:
    """(tracker, store, the command that shows it) of each tracker a job reports to."""
    found = []
    for name in config.trackers:
        tracker = TRACKERS[name]
        store = tracker.store(job_dir)
        found.append((tracker, store, tracker.viewer.format(store=store)))
    return found
