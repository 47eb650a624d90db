"""What a job's folder holds, by name, for every module that reads or writes one.

The folder is the job's `output_dir`: its record (the resolved config and the final metrics), its log, the trainer's
checkpoints, the base model's held-out answers, and the trained model (a LoRA adapter or a full model, and a merged
copy of an adapter once exported).

Which checkpoints a resume can trust: transformers writes a checkpoint in place, file by file, its trainer_state.json
last: a full disk or a kill during the save leaves a partial folder, and a disk fault can damage a finished one. Each
file is checked for being whole (JSON parses, a safetensors file is as long as its header says, torch's zip archives
pass their CRCs) without loading any weights.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_FILE = "modelforge.yaml"  # the job's config as it ran: precision and gradient checkpointing resolved
METRICS_FILE = "metrics.json"
LOG_FILE = "train.log"  # the worker's stdout and stderr
BASE_PREDICTIONS_FILE = "evaluation-base.json"  # kept so a resumed job does not score its base again
ADAPTER_CONFIG = "adapter_config.json"  # present when the job trained a LoRA adapter
MERGED_DIR = "merged"  # an adapter merged into its base: it belongs to the job and goes when the job is deleted
RANK_LOGS_DIR = "rank-logs"  # torchrun's per-rank logs of a distributed job
# The stores of the job's experiment trackers (modelforge/trackers.py).
TENSORBOARD_DIR = "tensorboard"  # event files; an earlier stage's (rlhf's reward model) in a folder of its name
MLFLOW_DIR = "mlruns"
TRACKIO_DIR = "trackio"
WANDB_DIR = "wandb"
TRAINER_STATE = "trainer_state.json"  # written last: a checkpoint without it never finished saving
DAMAGED_PREFIX = "damaged-"  # set-aside checkpoints keep their files, out of the trainer's `checkpoint-*` rotation
LOW_SPACE_BYTES = 1 << 20


def newest_first(output_dir: Path) -> list[Path]:
    """The job's checkpoint folders, newest first."""
    found = [p for p in output_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)


def last_checkpoint(output_dir: Path) -> Path | None:
    return next(iter(newest_first(output_dir)), None)


def is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


def read_adapter_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))


def log_path(job) -> Path:
    return Path(job.output_dir) / LOG_FILE


def log_tail(job, lines: int = 20) -> str:
    try:
        text = log_path(job).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def evaluation_file(output_dir: Path, name: str) -> Path:
    """Where `python -m modelforge eval JOB` saves the table it scored on the dataset `name`."""
    return output_dir / f"evaluation-{name}.json"


def save_base_predictions(output_dir: Path, predictions: dict[str, Any]) -> None:
    (output_dir / BASE_PREDICTIONS_FILE).write_text(json.dumps(predictions), encoding="utf-8")


def load_base_predictions(output_dir: Path) -> dict[str, Any] | None:
    path = output_dir / BASE_PREDICTIONS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def problem(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder, or None when it is complete and every file in it is whole."""
    if not (folder / TRAINER_STATE).is_file():
        return f"it has no {TRAINER_STATE}: its save never finished"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder)
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".safetensors":
                _check_safetensors(path)
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad:
                    return f"{name} is damaged (a checksum fails in {bad})"
        except (ValueError, OSError, zipfile.BadZipFile, struct.error) as exc:
            return f"{name} is damaged ({exc})"
    return None


def _check_safetensors(path: Path) -> None:
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    size = path.stat().st_size
    if size != 8 + header_size + end:
        raise ValueError(f"{size} bytes where its header describes {8 + header_size + end}")


def resumable(output_dir: Path, set_aside: bool = True) -> tuple[Path | None, list[str]]:
    """The newest whole checkpoint, setting aside the newer ones that are not (renamed, never deleted).

    Returns it (None when none is whole) and one line per checkpoint set aside, saying what was wrong. Of a job's
    ranks only the main one sets them aside; the others find the same checkpoint: one being renamed reads as
    damaged to them too.
    """
    found = []
    for folder in newest_first(output_dir):
        reason = problem(folder)
        if reason is None:
            return folder, found
        target = folder.with_name(DAMAGED_PREFIX + folder.name)
        if set_aside:
            folder.rename(target)
        found.append(f"{folder.name} was set aside as {target.name}: {reason}")
        log.warning("%s", found[-1])
    return None, found


def is_disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether an error (or one that caused it) comes from a full disk. torch.save says only "unexpected pos"
    when its writes fall short, so a folder left with (almost) no free space counts too."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False


def disk_full_message(output_dir: Path) -> str:
    """What happened and what to do, after removing the checkpoint whose save the full disk cut short."""
    removed = []
    for folder in newest_first(output_dir):
        if problem(folder) is None:
            break
        shutil.rmtree(folder, ignore_errors=True)  # incomplete: unusable, and it holds the space the user needs
        removed.append(folder.name)
    free_mb = shutil.disk_usage(output_dir).free / 2**20
    intact = last_checkpoint(output_dir)
    message = f"The disk holding {output_dir} is full ({free_mb:.1f} MB free) and a save failed."
    if removed:
        message += f" The incomplete {', '.join(removed)} was removed."
    if intact:
        return message + f" {intact.name} is intact: free some space, then resume continues from it."
    return message + " No checkpoint was complete yet: free some space, then resume starts the job again."
