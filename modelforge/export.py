"""Export of a finished job's model: the adapter as trained, or merged into its base as a plain transformers model.

The merge needs torch, so the web process runs it in a child process (`python -m modelforge export JOB --merged`)
and reads that child's progress lines; the CLI and tests call `merge_job` directly.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from modelforge import run_folder
from modelforge.config import JobConfig
from modelforge.errors import ModelForgeError, ModelLoadError
from modelforge.loading import apply_adapter, load_tokenizer, load_weights, resolve_model_path
from modelforge.processes import spawn
from modelforge.runtime import Runtime
from modelforge.settings import Settings

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
SPACE_MARGIN = 1.1  # the merged weights are the base's weights, plus the tokenizer and some slack

Progress = Callable[[float, str], None]


class ExportError(ModelForgeError):
    """A job's model cannot be exported; the message says why and what to do."""


def merged_dir(job) -> Path:
    return Path(job.output_dir) / run_folder.MERGED_DIR


def model_folder(job) -> Path:
    """The folder holding a completed job's trained model: its adapter, or its full model."""
    if job.status != "completed":
        raise ExportError(f"Job #{job.id} is {job.status}: only a completed job has a model to export or push.")
    folder = Path(job.output_dir)
    if not (run_folder.is_adapter(folder) or (folder / "config.json").is_file()):
        raise ExportError(f"Job #{job.id}'s output folder {folder} holds no model: it was moved or deleted.")
    return folder


def progress_line(fraction: float, message: str) -> str:
    """How the CLI prints a progress stage; `parse_progress_line` reads it back in the parent process."""
    return f"[{round(fraction * 100):3d}%] {message}"


def parse_progress_line(line: str) -> tuple[float, str] | None:
    match = re.fullmatch(r"\[\s*(\d+)%\] (.*)", line.strip())
    return (int(match[1]) / 100, match[2]) if match else None


def merge_job(job, settings: Settings, progress: Progress | None = None) -> Path:
    """Merge a LoRA job's adapter into an unquantized copy of its base (in the precision the base was saved in, also
    for a QLoRA job) and save it (safetensors, tokenizer with its chat template, generation config) in the job's
    `merged` folder; returns that folder.

    A folder merged before is returned as is: a completed job's adapter never changes, so neither does the merge.
    """
    report = progress or (lambda fraction, message: None)
    folder = model_folder(job)
    if not run_folder.is_adapter(folder):
        raise ExportError(
            f"Job #{job.id} is a full fine-tune: there is no adapter to merge, its folder already holds the "
            f"complete model: {folder}"
        )
    target = merged_dir(job)
    if target.is_dir():
        report(1.0, f"already merged: {target}")
        return target

    import torch  # here, not at the top: the web process imports this module, and merges in a subprocess

    config = JobConfig.from_json(job.config)
    base = resolve_model_path(config, settings)
    estimate = _weights_bytes(base)
    if estimate is not None:  # else the base is not on disk yet: checked once it is loaded
        report(0.0, "checking free disk space")
        _check_free_space(job, folder, estimate + _tokenizer_bytes(folder))

    report(0.1, f"loading the base model {config.model or '(the demo model)'}, unquantized")
    try:
        # On the CPU, in the precision the base was saved in (dtype "auto"): a merge needs no GPU, and a QLoRA job's
        # 4-bit loading is deliberately not repeated, so the adapter is merged into unquantized weights.
        on_cpu = Runtime("cpu", "fp32", gradient_checkpointing=False)
        model = load_weights(base, config.task, on_cpu, dtype="auto", name=config.model or base)
        tokenizer = load_tokenizer(str(folder))
    except ModelLoadError as exc:
        raise ExportError(str(exc)) from exc
    if estimate is None:
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        _check_free_space(job, folder, weights + _tokenizer_bytes(folder))

    report(0.5, "applying the adapter")
    model = apply_adapter(model, str(folder))
    report(0.6, "merging the adapter into the base weights")
    with torch.no_grad():
        model = model.merge_and_unload()

    report(0.7, "saving the merged model (safetensors)")
    building = Path(tempfile.mkdtemp(prefix=f".{run_folder.MERGED_DIR}-", dir=folder))  # hidden until complete
    try:
        model.save_pretrained(building, safe_serialization=True)
        report(0.9, "saving the tokenizer and its chat template")
        tokenizer.save_pretrained(building)
        building.chmod(0o755)  # mkdtemp made it private; the model is not
        os.rename(building, target)
    except BaseException as exc:
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, OSError) and target.is_dir():  # another export of this job finished first: same model
            report(1.0, f"already merged: {target}")
            return target
        raise
    report(1.0, f"merged model saved to {target}")
    log.info("merged job %d into %s", job.id, target)
    return target


def merge_job_in_subprocess(job, settings: Settings, progress: Progress | None = None) -> Path:
    """`merge_job` for the web process: runs `python -m modelforge export JOB --merged` and relays its progress."""
    run_cli(job, settings, ["export", str(job.id), "--merged"], "merge", progress)
    return merged_dir(job)


def run_cli(job, settings: Settings, arguments: list[str], action: str, progress: Progress | None = None) -> None:
    """Run `python -m modelforge ARGUMENTS` on `job` in a child process (torch stays out of the web process),
    relaying its progress lines; its `error:` line, else a short diagnosis, becomes an ExportError."""
    report = progress or (lambda fraction, message: None)
    model_folder(job)  # the usual errors without starting a process
    # The child's output is read to its end here, by this call, whatever happens to the browser that asked.
    process = spawn(
        "modelforge", *arguments, env=settings.worker_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    other_lines = []
    for line in process.stdout:
        stage = parse_progress_line(line)
        if stage:
            report(*stage)
        elif line.strip():
            other_lines.append(line.rstrip())
    returncode = process.wait()
    if returncode != 0:
        errors = [line.removeprefix("error: ") for line in other_lines if line.startswith("error: ")]
        if errors:  # a ModelForgeError: its message is meant for the user
            raise ExportError(errors[-1])
        log.error("the %s of job %d failed:\n%s", action, job.id, "\n".join(other_lines))
        if returncode < 0:
            detail = f"its process was killed by signal {-returncode} (out of memory?)"
        else:
            detail = other_lines[-1] if other_lines else f"its process exited with code {returncode}"
        raise ExportError(f"The {action} of job #{job.id} failed: {detail}. The server's log has the details.")


def _weights_bytes(model: str) -> int | None:
    """Size of the base model's weight files when they are on this disk (a folder, or the Hub cache)."""
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

        try:
            folder = Path(snapshot_download(model, local_files_only=True))
        except (LocalEntryNotFoundError, HFValidationError):
            return None
    return sum(path.stat().st_size for path in folder.iterdir() if path.suffix in WEIGHT_SUFFIXES) or None


def _tokenizer_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*token*") if path.is_file())


def _check_free_space(job, folder: Path, needed: int) -> None:
    needed = int(needed * SPACE_MARGIN)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ExportError(
            f"Not enough free disk space to merge job #{job.id}: the merged model needs about {_size(needed)} in "
            f"{folder}, and only {_size(free)} is free. Free some space (for example, delete old jobs in History) "
            "and try again."
        )


def _size(count: int) -> str:
    return f"{count / 1e9:.2f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"
