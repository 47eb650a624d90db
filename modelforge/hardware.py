"""What the machine offers: GPUs via nvidia-ml-py (no torch import), CPU cores, memory and disk; its profile; and the
models recommended for that profile (assets/recommended_models.yaml).

The web process never imports torch for this: importing it costs seconds and, on a CUDA build, gigabytes of
libraries. The installed torch is read from package metadata; torch itself is only consulted when something else in
the process already imported it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from modelforge.errors import ConfigError
from modelforge.settings import ASSETS_DIR
from modelforge.tasks import TASKS

RECOMMENDED_PATH = ASSETS_DIR / "recommended_models.yaml"

# Profiles by the memory of the biggest GPU, in GB (GiB, as NVML reports it). The cut-offs are the cards' nominal
# 8 GB and 24 GB; NVML reports a little less or more than the box says (an "8 GB" card shows 7.6-8.0), hence the
# half-gigabyte of slack: low < 7.5 <= mid <= 24.5 < high.
LOW_BELOW_GB = 7.5
HIGH_ABOVE_GB = 24.5
PROFILES: dict[str, str] = {
    "cpu-only": "no usable NVIDIA GPU: tiny models on the CPU (full fine-tuning or LoRA), sized by the RAM",
    "low": "GPU under 8 GB: models up to ~1.5B with LoRA, ~3B with QLoRA",
    "mid": "GPU of 8-24 GB: ~3B with LoRA, 7-8B with QLoRA",
    "high": "GPU over 24 GB: 7-8B with LoRA in bf16, 14-32B with QLoRA",
}


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    memory_total_gb: float
    memory_free_gb: float
    driver: str
    cuda: str
    compute_capability: str

    @property
    def bf16(self) -> bool:
        """bf16 needs compute capability 8.0 (Ampere) or newer; older cards train in fp16."""
        return int(self.compute_capability.split(".")[0]) >= 8


@dataclass(frozen=True)
class HardwareReport:
    gpus: list[GPU] = field(default_factory=list)
    cpu_cores: int = 1
    ram_total_gb: float = 0.0
    ram_available_gb: float = 0.0
    disk_free_gb: float = 0.0
    gpu_error: str | None = None  # why no GPU is listed: no driver, nvidia-ml-py missing, driver error
    torch: str | None = None  # installed torch version from package metadata ("+cpu" marks a CPU-only build)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        budget, source = memory_budget(self)
        return {**asdict(self), "profile": profile(self), "memory_budget_gb": round(budget, 2), "memory_budget": source}


def _meminfo() -> tuple[float, float]:
    try:
        values = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) / 1024**2
        return values.get("MemTotal", 0.0), values.get("MemAvailable", 0.0)
    except OSError:
        return 0.0, 0.0


def _nvidia_gpus() -> tuple[list[GPU], str | None]:
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed (pip install nvidia-ml-py), so GPUs cannot be listed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:  # no driver on this machine
        return [], f"no NVIDIA driver found ({exc})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda_version = pynvml.nvmlSystemGetCudaDriverVersion()
        cuda = f"{cuda_version // 1000}.{cuda_version % 1000 // 10}"
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                GPU(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_total_gb=memory.total / 1024**3,
                    memory_free_gb=memory.free / 1024**3,
                    driver=driver.decode() if isinstance(driver, bytes) else driver,
                    cuda=cuda,
                    compute_capability=f"{major}.{minor}",
                )
            )
        return gpus, None if gpus else "the NVIDIA driver reports no GPU"
    except pynvml.NVMLError as exc:
        return [], f"NVIDIA driver error ({exc})"
    finally:
        pynvml.nvmlShutdown()


def _torch_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def _warnings(gpus: list[GPU], torch_version: str | None) -> list[str]:
    """What stands between this machine and training on it; torch is consulted only if already imported."""
    found = []
    if torch_version is None:
        found.append("torch is not installed: training is unavailable until it is (pip install torch)")
    elif gpus and "+cpu" in torch_version:
        found.append(f"torch {torch_version} is a CPU-only build: training will not use the GPU; install a CUDA build")
    elif gpus and "torch" in sys.modules and not sys.modules["torch"].cuda.is_available():
        found.append("torch cannot use the GPU in this process (torch.cuda.is_available() is False)")
    found += [f"GPU {gpu.index} ({gpu.name}) has no bf16 (compute capability {gpu.compute_capability}): use fp16"
              for gpu in gpus if not gpu.bf16]
    return found


def detect(path: str | Path = ".") -> HardwareReport:
    """Read the machine; `path` is the folder whose disk's free space is reported (ModelForge's data folder)."""
    gpus, gpu_error = _nvidia_gpus()
    total, available = _meminfo()
    disk = shutil.disk_usage(Path(path) if Path(path).exists() else Path.cwd())
    torch_version = _torch_version()
    return HardwareReport(
        gpus=gpus,
        cpu_cores=os.cpu_count() or 1,
        ram_total_gb=total,
        ram_available_gb=available,
        disk_free_gb=disk.free / 1024**3,
        gpu_error=gpu_error,
        torch=torch_version,
        warnings=_warnings(gpus, torch_version),
    )


def profile(report: HardwareReport) -> str:
    """cpu-only (no GPU), low (biggest GPU < 7.5 GB), mid (7.5-24.5 GB) or high (> 24.5 GB); see PROFILES."""
    if not report.gpus:
        return "cpu-only"
    biggest = max(gpu.memory_total_gb for gpu in report.gpus)
    if biggest < LOW_BELOW_GB:
        return "low"
    return "mid" if biggest <= HIGH_ABOVE_GB else "high"


def memory_budget(report: HardwareReport) -> tuple[float, str]:
    """The memory a training job can use, in GB, and where it comes from: the free memory of the GPU with the most
    of it (one job trains on one GPU), or the available RAM on a machine without one."""
    if report.gpus:
        gpu = max(report.gpus, key=lambda gpu: gpu.memory_free_gb)
        return gpu.memory_free_gb, f"free memory of GPU {gpu.index} ({gpu.name})"
    return report.ram_available_gb, "available RAM"


# -- recommended models ----------------------------------------------------------------------------------------------
def _load_recommended() -> dict:
    return yaml.safe_load(RECOMMENDED_PATH.read_text(encoding="utf-8"))


def known_models() -> dict[str, dict]:
    """Every model of the recommended list by id: params_b, note and, where given, its shape."""
    return _load_recommended()["models"]


def recommended_models(profile: str, task: str) -> list[dict]:
    """The models recommended for a hardware profile and a task, best first: id, params_b, method, note (+ shape)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown hardware profile {profile!r}; the profiles are {', '.join(PROFILES)}")
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    data = _load_recommended()
    return [{"id": entry["id"], **data["models"][entry["id"]], "method": entry["method"]}
            for entry in data["recommended"][profile][task]]
