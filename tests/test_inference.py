"""The playground's ModelHost: load a finished job's adapter, stream replies, unload and free the model."""

import gc
import weakref
from pathlib import Path

import pytest

from modelforge.errors import ModelLoadError
from modelforge.inference import ModelHost, chat_messages, job_source, path_source

LOAD_TIMEOUT = 120


@pytest.fixture
def host():
    host = ModelHost()
    yield host
    host.unload()


def user_says(text: str) -> list[dict]:
    """A conversation as Gradio 6 hands it to a handler: content as a list of parts."""
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def test_chat_messages_normalises_gradio_parts():
    history = [
        {"role": "user", "content": [{"type": "text", "text": "reverse: "}, {"type": "text", "text": "cat dog"}]},
        {"role": "assistant", "content": "dog cat", "metadata": None},
        {"role": "user", "content": [{"type": "file", "file": {"path": "x.png"}}, {"type": "text", "text": "again"}]},
    ]
    assert chat_messages(history) == [
        {"role": "user", "content": "reverse: cat dog"},
        {"role": "assistant", "content": "dog cat"},
        {"role": "user", "content": "again"},
    ]


def test_job_source_puts_the_adapter_on_the_jobs_base_model(finished_job, engine, demo_model_path):
    source = job_source(finished_job, engine.settings)
    assert source.name == f"#{finished_job.id} playground-lora"
    assert source.adapter == finished_job.output_dir == source.tokenizer
    assert Path(source.model).resolve() == demo_model_path.resolve()
    typed = path_source(finished_job.output_dir)  # a typed adapter folder finds its base in adapter_config.json
    assert (typed.adapter, Path(typed.model).resolve()) == (finished_job.output_dir, demo_model_path.resolve())


def test_load_stream_and_unload_a_finished_job(finished_job, engine, host):
    assert host.load(job_source(finished_job, engine.settings)) == f"loading #{finished_job.id} playground-lora…"
    assert host.wait(LOAD_TIMEOUT) == f"ready: #{finished_job.id} playground-lora"
    model = weakref.ref(host._loaded.model)
    assert type(model()).__name__ == "PeftModelForCausalLM"

    conversation = user_says("reverse: cat dog bird")
    chunks = list(host.stream(conversation, max_new_tokens=12, temperature=0))
    assert chunks and chunks[-1].strip()
    assert all(later.startswith(earlier) for earlier, later in zip(chunks, chunks[1:]))  # the reply grows
    assert list(host.stream(conversation, max_new_tokens=12, temperature=0))[-1] == chunks[-1]  # greedy: the same
    assert list(host.stream(conversation, max_new_tokens=12, temperature=1.0, top_p=0.9))  # sampling runs too

    assert host.unload() == "no model loaded"
    gc.collect()
    assert model() is None
    with pytest.raises(ModelLoadError, match="No model is ready"):
        next(host.stream(conversation))


def test_loading_another_model_releases_the_first(finished_job, engine, demo_model_path, host):
    host.load(job_source(finished_job, engine.settings))
    host.wait(LOAD_TIMEOUT)
    first = weakref.ref(host._loaded.model)
    host.load(path_source(str(demo_model_path)))
    assert host.wait(LOAD_TIMEOUT) == f"ready: {demo_model_path}"
    gc.collect()
    assert first() is None
    assert list(host.stream(user_says("cat dog"), max_new_tokens=8, temperature=0))[-1].strip()


def test_a_model_that_cannot_be_loaded_becomes_a_clear_status(host, tmp_path):
    host.load(path_source(str(tmp_path / "no-such-model")))
    status = host.wait(LOAD_TIMEOUT)
    assert status.startswith("error: Model folder") and "no-such-model" in status
    assert not host.loading


def test_the_engine_holds_one_host_for_every_user(engine):
    assert isinstance(engine.model_host, ModelHost)


def test_the_base_of_a_lora_job_is_the_same_model_with_its_adapter_off(tuned_job, engine, host):
    host.load(job_source(tuned_job, engine.settings), compare=True)
    host.wait(LOAD_TIMEOUT)
    assert host._loaded.base_model is None  # no second copy in memory
    conversation = user_says("red blue green")
    base = list(host.stream(conversation, max_new_tokens=12, temperature=0, which="base"))[-1]
    tuned = list(host.stream(conversation, max_new_tokens=12, temperature=0, which="tuned"))[-1]
    assert base == "red blue green" and tuned != base
    assert list(host.stream(conversation, max_new_tokens=12, temperature=0))[-1] == tuned  # the adapter is back on


def test_a_full_fine_tune_compared_side_by_side_holds_its_base_until_unloaded(engine, demo_model_path, host):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.config import JobConfig
    from modelforge.db import Job

    output_dir = engine.settings.runs_dir / "full"
    model = AutoModelForCausalLM.from_pretrained(demo_model_path)
    with torch.no_grad():
        model.model.layers[-1].mlp.down_proj.weight.mul_(-3.0)
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(demo_model_path).save_pretrained(output_dir)
    config = JobConfig(name="full", dataset="d.jsonl", lora=None, output_dir=str(output_dir))
    job = Job.create(name="full", config=config.to_json(), status="completed", output_dir=str(output_dir))

    host.load(job_source(job, engine.settings), compare=True)
    assert host.wait(LOAD_TIMEOUT) == f"ready: #{job.id} full"
    models = [weakref.ref(host._loaded.model), weakref.ref(host._loaded.base_model)]
    conversation = user_says("red blue green")
    base = list(host.stream(conversation, max_new_tokens=12, temperature=0, which="base"))[-1]
    tuned = list(host.stream(conversation, max_new_tokens=12, temperature=0, which="tuned"))[-1]
    assert base == "red blue green" and tuned != base

    host.unload()
    gc.collect()
    assert [ref() for ref in models] == [None, None]

    host.load(job_source(job, engine.settings), compare=False)  # alone: one model, and no base to compare
    host.wait(LOAD_TIMEOUT)
    assert host._loaded.base_model is None
    with pytest.raises(ModelLoadError, match="no base model to compare with"):
        next(host.stream(conversation, which="base"))
