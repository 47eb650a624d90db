"""Saved datasets: uploads checked and copied into the data folder, and their records in the job store."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from modelforge import data, store
from modelforge.db import DatasetRecord
from modelforge.errors import ConfigError, DatasetError
from modelforge.settings import Settings

MAX_UPLOAD_ENV = "MODELFORGE_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 200
NAME_RULE = "letters, digits, '.', '_' and '-' (at most 100 characters)"

_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_FORMAT_LIST = ", ".join(f".{name}" for name in data.FORMATS)


# -- uploads -----------------------------------------------------------------------------------------------------


def max_upload_mb() -> float:
    """The upload size limit in megabytes: MODELFORGE_MAX_UPLOAD_MB, default 200."""
    value = os.environ.get(MAX_UPLOAD_ENV, str(DEFAULT_MAX_UPLOAD_MB))
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{MAX_UPLOAD_ENV} must be a number of megabytes, got {value!r}") from None


def safe_file_name(original_name: str) -> str:
    """`original_name` without folders or odd characters, its extension kept (lower case); unsupported types refused."""
    name = original_name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    extension = extension.lower()
    if not dot or extension not in data.FORMATS:
        raise DatasetError(f"{name or original_name!r}: unsupported file type; upload one of {_FORMAT_LIST}")
    stem = _UNSAFE.sub("_", stem).strip("_-")[:80] or "dataset"
    return f"{stem}.{extension}"


def check_upload(uploaded_path: str | Path, original_name: str) -> str:
    """The safe file name of an upload, or DatasetError when its type is unsupported or it is over the size limit."""
    name = safe_file_name(original_name)
    path = Path(uploaded_path)
    if not path.is_file():
        raise DatasetError(f"{original_name}: the uploaded file is gone; upload it again")
    size, limit = path.stat().st_size, max_upload_mb()
    if size > limit * 2**20:
        shown = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.1f} KB"
        raise DatasetError(
            f"{original_name} is {shown}, over the upload limit of {limit:g} MB; "
            f"use a smaller file, or raise the limit with {MAX_UPLOAD_ENV}"
        )
    return name


def store_upload(settings: Settings, uploaded_path: str | Path, original_name: str) -> Path:
    """Copy an upload into `settings.datasets_dir` under a sanitised name no other file has; return the new path."""
    name = check_upload(uploaded_path, original_name)
    folder = settings.datasets_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stem, extension = name.rsplit(".", 1)
    for number in range(1, 10_000):
        target = folder / (name if number == 1 else f"{stem}-{number}.{extension}")
        try:
            with open(uploaded_path, "rb") as source, open(target, "xb") as copy:  # "x": never overwrite
                shutil.copyfileobj(source, copy)
        except FileExistsError:
            continue
        except OSError:
            target.unlink(missing_ok=True)
            raise
        return target
    raise DatasetError(f"{folder} already holds too many files named {stem}-N.{extension}; rename the upload")


# -- saved datasets ----------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """The name without surrounding spaces; DatasetError when it breaks the rules or is taken."""
    name = (name or "").strip()
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise DatasetError(f"dataset name {name!r} is not allowed; use {NAME_RULE}")
    if store.dataset_record(name) is not None:
        raise DatasetError(f"a dataset named {name!r} already exists; choose another name or delete that one first")
    return name


def save_dataset(
    settings: Settings,
    name: str,
    source: str | Path,
    task: str,
    columns: dict[str, str] | None = None,
    fields: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Validate `source` (a local file or Hub id) for the task, then record it under `name`; return the record.

    Refused with DatasetError when the name is invalid or taken, or when validation finds errors. A local file is
    recorded where it lies: pass an upload through `store_upload` first so that it lives under the data folder.
    """
    name = check_name(name)
    report = data.validate(source, task, columns or None, fields)
    if not report.ok:
        raise DatasetError(f"not saved: the dataset has errors.\n{report.summary()}")
    path = source if data.is_hub_id(source) else Path(source).resolve()
    # DatasetError when someone else saved one of that name between check_name and now
    return _view(store.create_dataset(name, task, str(path), report.columns, len(report.records)))


def list_datasets() -> list[dict[str, Any]]:
    """Every saved dataset, newest first, as plain dicts."""
    return [_view(record) for record in store.datasets()]


def delete_dataset(settings: Settings, name: str) -> None:
    """Forget a saved dataset; remove its file only when it lies under the data folder and no other record uses it."""
    record = store.dataset_record(name)
    if record is None:
        raise DatasetError(f"no saved dataset is named {name!r}")
    shared = store.delete_dataset(record)
    path = Path(record.path).resolve()
    if not shared and path.is_file() and path.is_relative_to(settings.datasets_dir.resolve()):
        path.unlink()


def _view(record: DatasetRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "task": record.task,
        "path": record.path,
        "columns": json.loads(record.columns),
        "rows": record.rows,
        "created_at": record.created_at,
    }
