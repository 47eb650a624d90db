"""The child processes ModelForge starts: `python -m MODULE ...` importing this same checkout of the package.

The runner starts a worker per job, the web process runs merges and GGUF exports as `python -m modelforge ...`,
and the demo model is built in a child so torch stays out of the parent. Each child sees the parent's environment,
the settings' variables (Settings.worker_env) and this package first on PYTHONPATH, whether it is installed or not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER_MODULE = "modelforge.training.worker"  # `python -m` it with a job id; the runner finds its workers by it
# EX_TEMPFAIL: the worker could not record the job; the runner that reaps the worker records it as interrupted.
EXIT_DATABASE_UNREACHABLE = 75

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `extra` on top, the package importable and the child's output unbuffered."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(module: str, *args: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", module, *args]


def spawn(module: str, *args: str, python: str = sys.executable, env: dict[str, str] | None = None,
          **popen) -> subprocess.Popen:
    """Start `python -m module args` with `child_env(env)`; `popen` are subprocess.Popen's own options."""
    return subprocess.Popen(command(module, *args, python=python), env=child_env(env), **popen)
