"""The project's own files keep their promises: README commands, CI, Dockerfile, registries, a light web process."""

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_command(heading: str) -> str:
    section = ROOT.joinpath("README.md").read_text().split(f"## {heading}", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_test_command_written_in_the_readme():
    command = _readme_command("Run the tests")
    ci_lines = [line.strip() for line in ROOT.joinpath(".ci/run").read_text().splitlines()]
    assert command in ci_lines


def test_readme_app_command_installs_requirements_and_starts_app_py():
    command = _readme_command("Run the app")
    assert ".venv/bin/python -m modelforge.install && " in command and command.endswith(".venv/bin/python app.py")


@pytest.mark.parametrize("gpu", [False, True])
def test_the_install_takes_the_cpu_torch_without_a_gpu_and_the_normal_one_with(tmp_path, gpu):
    """What the README's app command installs, in a fresh environment (no torch yet), with or without a driver."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if gpu:  # a driver's nvidia-smi, as it answers with one GPU
        (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    result = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-m", "modelforge.install", "--dry-run"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env={"PATH": str(bin_dir)})
    assert result.returncode == 0, result.stderr
    reason, *commands = result.stdout.strip().splitlines()
    assert commands[-1] == f"$ pip install -r {ROOT / 'requirements.txt'}"
    if gpu:
        assert reason == "modelforge.install: an NVIDIA GPU: the normal (CUDA) build of torch" and len(commands) == 1
    else:
        assert reason.startswith("modelforge.install: no NVIDIA GPU") and commands[0].startswith("$ pip install torch==")


def test_every_file_the_dockerfile_copies_exists():
    copied = []
    for line in ROOT.joinpath("Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied += line.split()[1:-1]
    assert copied, "the Dockerfile copies nothing"
    for name in copied:
        assert (ROOT / name).exists(), f"Dockerfile copies {name}, which does not exist"


def test_the_web_side_imports_neither_the_training_stack_nor_the_worker_folder():
    """The package's one rule for a light web process: modelforge/training/ is the worker side. Starting the app (its
    engine and UI built) and importing every module outside that folder loads no training library and nothing of it."""
    package = ROOT / "modelforge"
    web_side = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if package / "training" not in path.parents and path.name != "__main__.py"  # __main__ runs the CLI
    )
    stack = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "llama_cpp")
    code = (
        "import importlib, json, sys, tempfile, app; from pathlib import Path; from modelforge.engine import Engine;"
        "from modelforge.settings import Settings; from modelforge.ui import build_app;"
        "build_app(Engine.create(Settings(home=Path(tempfile.mkdtemp()))));"
        f"[importlib.import_module(name) for name in {web_side!r}];"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {stack!r} "
        "or m.startswith('modelforge.training'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "modelforge.ui.finetune_tab" in web_side and "modelforge.inference" in web_side
    assert result.stdout.strip().splitlines()[-1] == "[]"


# What a tab may import from the package: the engine (every use case), the names a form offers and the errors it
# shows, how durations and scores read (formatting, shared with the CLI and the model card), and the UI's own
# helpers. From any other module only names: constants, and the hardware check's setup and number formats.
UI_MAY_IMPORT = ("engine", "errors", "accounts", "config", "tasks", "strategies", "formatting", "ui")
UI_MAY_NAME = {"modelforge.fit": {"FitSetup", "format_gb", "format_params"}}
TRAINING_STACK = {"torch", "transformers", "peft", "trl", "peewee", "bitsandbytes"}


def test_ui_modules_reach_the_package_only_through_the_engine():
    """Read from the sources: a tab calls the engine, never data, dataset_store, inference, jobs, evaluation, export
    or the database, and never imports the training stack (the light web process's promise, for every tab)."""
    found = []
    for path in sorted((ROOT / "modelforge" / "ui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "modelforge":
                imported = [(f"modelforge.{alias.name}", None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in imported:
                top, _, rest = module.partition(".")
                allowed = (top != "modelforge" and top not in TRAINING_STACK) or rest.split(".")[0] in UI_MAY_IMPORT or (
                    name is not None and (name.isupper() or name in UI_MAY_NAME.get(module, ())))
                if not allowed:
                    found.append(f"{path.name}: {module}" + (f".{name}" if name else ""))
    assert found == []


def test_ui_choices_are_the_registries_keys(engine):
    from modelforge.providers import PROVIDERS
    from modelforge.strategies import STRATEGIES

    assert [name for name, _, _ in engine.providers()] == list(PROVIDERS)
    assert engine.strategies() == list(STRATEGIES)


def test_the_wheel_carries_the_package_and_its_assets(tmp_path):
    """`pip install .` installs what the app reads: every module and, as package data, the assets."""
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(".*", "tests", "bench", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("modelforge-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "installed")
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "modelforge").rglob("*.py")}
    assets = {"modelforge/" + path.relative_to(ROOT).as_posix() for path in (ROOT / "assets").rglob("*") if path.is_file()}
    assert modules - names == set() and assets - names == set() and "modelforge/assets/samples/chat.jsonl" in assets
    # Installed, away from this checkout, the package finds its assets through itself.
    code = ("from modelforge.hardware import recommended_models; from modelforge.settings import ASSETS_DIR;"
            "print(recommended_models('cpu-only', 'chat')[0]['id'], len(list((ASSETS_DIR / 'samples').iterdir())),"
            "ASSETS_DIR)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "installed")})
    assert result.returncode == 0, result.stderr
    first, samples, folder = result.stdout.split()
    assert first == "demo" and int(samples) == len(list((ROOT / "assets" / "samples").iterdir()))
    assert folder == str(tmp_path / "installed" / "modelforge" / "assets")
