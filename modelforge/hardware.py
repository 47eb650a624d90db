"""What the machine offers: GPUs via nvidia-ml-py (no torch import), CPU cores, memory and disk."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    memory_total_gb: float
    memory_free_gb: float
    driver: str
    cuda: str
    compute_capability: str


@dataclass(frozen=True)
class HardwareReport:
    gpus: list[GPU] = field(default_factory=list)
    cpu_cores: int = 1
    ram_total_gb: float = 0.0
    ram_available_gb: float = 0.0
    disk_free_gb: float = 0.0
    gpu_error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


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
        return [], "nvidia-ml-py is not installed"
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
        return gpus, None
    except pynvml.NVMLError as exc:
        return [], f"NVIDIA driver error ({exc})"
    finally:
        pynvml.nvmlShutdown()


def detect(path: str | Path = ".") -> HardwareReport:
    gpus, gpu_error = _nvidia_gpus()
    total, available = _meminfo()
    disk = shutil.disk_usage(Path(path) if Path(path).exists() else Path.cwd())
    return HardwareReport(
        gpus=gpus,
        cpu_cores=os.cpu_count() or 1,
        ram_total_gb=total,
        ram_available_gb=available,
        disk_free_gb=disk.free / 1024**3,
        gpu_error=gpu_error,
    )
