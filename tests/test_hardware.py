"""The hardware report with a simulated GPU, a missing driver and a missing nvidia-ml-py; profiles; the model list."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

from modelforge import fit, hardware
from modelforge.errors import ConfigError
from modelforge.hardware import GPU, HardwareReport, detect, memory_budget, profile, recommended_models
from modelforge.tasks import TASKS


class FakeNVMLError(Exception):
    pass


def fake_pynvml(gpus=(), init_error=None):
    """A stand-in for the pynvml module: `gpus` as (name, total GiB, free GiB, (major, minor))."""
    memory = [types.SimpleNamespace(total=total * 1024**3, free=free * 1024**3) for _, total, free, _ in gpus]

    def init():
        if init_error:
            raise FakeNVMLError(init_error)

    return types.SimpleNamespace(
        NVMLError=FakeNVMLError,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: "570.86.15",
        nvmlSystemGetCudaDriverVersion=lambda: 12080,
        nvmlDeviceGetCount=lambda: len(gpus),
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetMemoryInfo=lambda index: memory[index],
        nvmlDeviceGetCudaComputeCapability=lambda index: gpus[index][3],
        nvmlDeviceGetName=lambda index: gpus[index][0].encode(),  # older pynvml returned bytes
    )


def test_detect_reports_simulated_gpus(monkeypatch, tmp_path):
    gpus = [("NVIDIA GeForce RTX 4090", 23.99, 20.5, (8, 9)), ("Tesla T4", 15.0, 14.6, (7, 5))]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    monkeypatch.setattr(hardware, "_torch_version", lambda: "2.13.0+cu128")
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # other tests may have imported the CPU build
    report = detect(tmp_path)

    assert report.gpu_error is None
    assert [(gpu.name, round(gpu.memory_total_gb, 2), round(gpu.memory_free_gb, 2)) for gpu in report.gpus] == [
        ("NVIDIA GeForce RTX 4090", 23.99, 20.5), ("Tesla T4", 15.0, 14.6)]
    first = report.gpus[0]
    assert (first.driver, first.cuda, first.compute_capability, first.bf16) == ("570.86.15", "12.8", "8.9", True)
    assert profile(report) == "mid"
    assert memory_budget(report) == (pytest.approx(20.5), "free memory of GPU 0 (NVIDIA GeForce RTX 4090)")
    assert report.warnings == ["GPU 1 (Tesla T4) has no bf16 (compute capability 7.5): use fp16"]
    facts = report.to_dict()
    assert facts["profile"] == "mid" and facts["gpus"][1]["name"] == "Tesla T4" and facts["memory_budget_gb"] == 20.5
    assert report.cpu_cores >= 1 and report.disk_free_gb > 0


def test_a_cpu_build_of_torch_beside_a_gpu_is_a_warning(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([("NVIDIA H100 80GB HBM3", 79.6, 79.0, (9, 0))]))
    monkeypatch.setattr(hardware, "_torch_version", lambda: "2.13.0+cpu")
    report = detect(tmp_path)
    assert profile(report) == "high"
    assert report.warnings == ["torch 2.13.0+cpu is a CPU-only build: training will not use the GPU; "
                               "install a CUDA build"]


def test_missing_driver_degrades_to_cpu_only(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="NVML Shared Library Not Found"))
    report = detect(tmp_path)
    assert report.gpus == []
    assert report.gpu_error == "no NVIDIA driver found (NVML Shared Library Not Found)"
    assert profile(report) == "cpu-only"
    assert memory_budget(report) == (report.ram_available_gb, "available RAM")
    assert report.ram_total_gb >= report.ram_available_gb > 0


def test_missing_nvidia_ml_py_is_reported(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    report = detect(tmp_path)
    assert report.gpus == [] and "nvidia-ml-py is not installed" in report.gpu_error
    assert profile(report) == "cpu-only"


@pytest.mark.parametrize("memory_gb, expected", [
    (4.0, "low"), (6.0, "low"), (7.79, "mid"), (12.0, "mid"), (23.99, "mid"), (31.4, "high"), (79.6, "high"),
])
def test_profile_follows_the_biggest_gpu(memory_gb, expected):
    small = GPU(0, "small", 2.0, 2.0, "570", "12.8", "8.6")
    big = GPU(1, "big", memory_gb, memory_gb, "570", "12.8", "8.6")
    assert profile(HardwareReport(gpus=[small, big])) == expected


def test_the_hardware_tab_never_imports_the_training_stack():
    """The tab's module, loaded alone (the ui package imports every tab), with a report and an estimate."""
    tab = Path(fit.__file__).parent / "ui" / "hardware_tab.py"
    code = ("import importlib.util, sys; from modelforge import hardware, fit; "
            f"spec = importlib.util.spec_from_file_location('hardware_tab', {str(tab)!r}); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "hardware.detect(); fit.estimate(fit.resolve_model('demo'), fit.FitSetup()); "
            "print(sorted({'torch', 'transformers', 'peft', 'trl', 'peewee'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def test_recommended_list_covers_every_profile_and_task():
    for name in hardware.PROFILES:
        for task in TASKS:
            models = recommended_models(name, task)
            assert models, (name, task)
            for model in models:
                assert model["params_b"] > 0 and model["note"] and model["method"] in fit.METHODS, model
    assert [model["id"] for model in recommended_models("cpu-only", "chat")][:2] == [
        "demo", "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert "distilbert/distilbert-base-cased-distilled-squad" in [
        model["id"] for model in recommended_models("cpu-only", "extractive-qa")]
    assert all(model["params_b"] >= 7 for model in recommended_models("high", "chat"))


def test_recommended_list_rejects_unknown_names():
    with pytest.raises(ConfigError, match="profiles are cpu-only, low, mid, high"):
        recommended_models("huge", "chat")
    with pytest.raises(ConfigError, match="unknown task"):
        recommended_models("low", "translation")
