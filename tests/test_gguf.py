"""A GGUF file as a job's model: refused at submit when it is missing or ambiguous, and a clear failure for an
architecture transformers cannot read. (tests/test_real_models.py trains a real one.)"""

from pathlib import Path

import pytest

from modelforge.config import JobConfig
from modelforge.errors import ModelLoadError

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "text-generation.jsonl"


def write_gguf(path: Path, architecture: str) -> Path:
    """A minimal, valid GGUF file of `architecture`: one block, one tensor."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_missing_or_ambiguous_gguf_model_is_refused_at_submit(engine, tmp_path):
    with pytest.raises(ModelLoadError, match=r"GGUF file .*missing\.gguf does not exist"):
        engine.submit(JobConfig(model=str(tmp_path / "missing.gguf"), dataset=str(SAMPLE)))
    for name in ("a.gguf", "b.gguf"):
        write_gguf(tmp_path / name, "llama")
    with pytest.raises(ModelLoadError, match=r"holds several GGUF files \(a.gguf, b.gguf\): name one as model"):
        engine.submit(JobConfig(model=str(tmp_path), dataset=str(SAMPLE)))
    assert engine.list_jobs() == []


def test_a_gguf_architecture_transformers_cannot_read_fails_the_job_clearly(engine, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    write_gguf(folder / "odd.gguf", "rwkv7")
    job = engine.runner.wait(engine.submit(JobConfig(model=str(folder), dataset=str(SAMPLE))).id)  # a folder + file
    assert job.status == "failed"
    assert job.error.startswith(f"GGUF file {folder / 'odd.gguf'} cannot be converted: GGUF model with architecture "
                                "rwkv7 is not supported yet.")
    assert "use the model's original (safetensors) release" in job.error and "Traceback" not in job.error
    assert not any(path.name.startswith(("gguf-odd", ".gguf-odd-")) for path in engine.settings.models_dir.iterdir()
                   if path.is_dir())
