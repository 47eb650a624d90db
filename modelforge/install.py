"""Install ModelForge's requirements with the build of torch that fits this machine (the README's app command).

    python -m modelforge.install [--dry-run]

Plain `pip install -r requirements.txt` takes PyPI's torch, a CUDA build of several GB, even on a machine without a
GPU. So, on a machine without an NVIDIA GPU, torch comes first from PyTorch's CPU index (a few hundred MB), pinned to
the CPU build tested here; with a GPU, or when torch is installed already (a CUDA build the user chose), pip keeps
the normal path. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_TORCH = "torch==2.13.0"  # within requirements.txt's range; the CPU build the test suite runs on


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver that sees a GPU: `nvidia-smi -L` lists one."""
    if shutil.which("nvidia-smi") is None:
        return False
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return result.returncode == 0 and "GPU" in result.stdout


def torch_installed() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def reachable(url: str, timeout: float = 5) -> bool:
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return True
    except OSError:
        return False


def plan() -> tuple[list[list[str]], str]:
    """The pip commands to run, and why."""
    pip = [sys.executable, "-m", "pip", "install"]
    requirements = [*pip, "-r", str(REQUIREMENTS)]
    installed = torch_installed()
    if installed:
        return [requirements], f"torch {installed} is installed already: keeping it"
    if has_nvidia_gpu():
        return [requirements], "an NVIDIA GPU: the normal (CUDA) build of torch"
    if reachable(f"{CPU_INDEX}/torch/"):
        return [[*pip, CPU_TORCH, "--extra-index-url", CPU_INDEX], requirements], "no NVIDIA GPU: the CPU build of torch"
    return ([[*pip, CPU_TORCH], requirements],
            f"no NVIDIA GPU, and {CPU_INDEX} is out of reach: {CPU_TORCH} from the configured package sources "
            "(a CPU build where they hold one)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands instead of running them")
    args = parser.parse_args(argv)
    commands, reason = plan()
    print(f"modelforge.install: {reason}", flush=True)
    for command in commands:
        print("$ pip " + " ".join(command[3:]), flush=True)
        if not args.dry_run and subprocess.run(command).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
