"""GGUF files (llama.cpp's format) as a job's model, converted once into a transformers folder.

transformers reads a GGUF file (`gguf_file=`), dequantising its weights, but refuses to save a model loaded that way
and reloads it in ~20 s each time. So the file is converted once into a plain safetensors folder under the models
folder, named after the file and its size and time, and every later load (training, Playground, export) reads that.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from modelforge.errors import ModelLoadError

log = logging.getLogger(__name__)

SUFFIX = ".gguf"


def gguf_file(model: str) -> Path | None:
    """The GGUF file `model` names: a path ending in .gguf, or a folder without config.json holding exactly one."""
    path = Path(model).expanduser()
    if path.suffix.lower() == SUFFIX:
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {model} does not exist.")
        return path.resolve()
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(path.glob(f"*{SUFFIX}"))
    if len(found) > 1:
        names = ", ".join(file.name for file in found)
        raise ModelLoadError(f"Model folder {model} holds several GGUF files ({names}): name one as model.")
    return found[0].resolve() if found else None


def converted_folder(file: Path, models_dir: Path) -> Path:
    """Where the conversion of `file` lies: a changed or moved file is converted anew."""
    file = file.resolve()
    stat = file.stat()
    key = hashlib.sha256(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return models_dir / f"gguf-{file.stem}-{key}"


def ensure_converted(file: Path, models_dir: Path) -> Path:
    """The transformers folder converted from `file`, converting it (under a file lock, into a temporary folder
    renamed into place) when it is not there yet. Only a conversion imports transformers."""
    folder = converted_folder(file, models_dir)
    if folder.is_dir():
        return folder
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if folder.is_dir():
            return folder
        started = time.monotonic()
        building = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=models_dir))
        try:
            architecture = _convert(file, building)
            building.chmod(0o755)  # mkdtemp made it private; the model is not
            os.rename(building, folder)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    log.info("model: converted GGUF file %s (%s) to %s in %.0f s; later jobs reuse it",
             file, architecture, folder, time.monotonic() - started)
    return folder


def _convert(file: Path, folder: Path) -> str:
    """Dequantise `file` into a float32 safetensors model (with its tokenizer) in `folder`; its architecture."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(file.parent, gguf_file=file.name)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelLoadError(_describe_failure(file, exc)) from exc
    tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    loaded = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name)
    # transformers refuses to save a GGUF-loaded model (its config carries a GGUF quantization_config): the same
    # weights go into a model built from the file's plain config.
    with torch.device("meta"):  # no random initialisation of weights that are replaced at once
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return config.model_type


def _describe_failure(file: Path, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "not supported" in text:
        return (f"GGUF file {file} cannot be converted: {text} transformers reads the GGUF architectures it also "
                "implements (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3, ...); use the model's original "
                "(safetensors) release, or a GGUF of a supported architecture.")
    return f"GGUF file {file} could not be read: {text}"
