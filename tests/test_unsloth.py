"""The Unsloth provider: its own environment (.venv-unsloth) trains the demo model; without it, a clear reason."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from modelforge.config import JobConfig
from modelforge.errors import ConfigError, UnavailableError
from modelforge.providers import PROVIDERS
from modelforge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
UNSLOTH = PROVIDERS["unsloth"]


def _requirement_names(path: Path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {re.split(r"[<>=!~;\[ ]", line)[0].lower().replace("_", "-") for line in lines if line}


def test_the_unsloth_environment_holds_every_modelforge_requirement():
    """Its workers run ModelForge's training code, so a requirement added to requirements.txt belongs there too."""
    missing = _requirement_names(ROOT / "requirements.txt") - _requirement_names(ROOT / "requirements-unsloth.txt")
    assert not missing, f"add to requirements-unsloth.txt: {sorted(missing)}"


def test_a_missing_unsloth_interpreter_is_named_and_the_app_shows_why(settings, monkeypatch, tmp_path, mapping_dataset):
    from modelforge.engine import Engine
    from modelforge.ui import build_app

    missing = tmp_path / "no-venv" / "bin" / "python"
    monkeypatch.setenv("MODELFORGE_UNSLOTH_PYTHON", str(missing))
    engine = Engine.open(Settings.from_env())  # the server's settings read the variable once, when built
    availability = UNSLOTH.availability(engine.settings)
    assert not availability.available
    assert f"{missing} does not exist" in availability.reason and "bash tests/setup.sh" in availability.reason

    assert ("unsloth", False, availability.reason) in engine.providers()
    expected = f"provider: unsloth is unavailable: the Unsloth interpreter {missing} does not exist"
    with pytest.raises(UnavailableError, match=re.escape(expected)):
        engine.submit(JobConfig(name="u", provider="unsloth", dataset=str(mapping_dataset["train"])))
    assert engine.list_jobs() == []

    shown = [block.value for block in build_app(engine).blocks.values() if type(block).__name__ == "Markdown"]
    assert any(f"**unsloth**: {availability.reason}" in (text or "") for text in shown)


def test_an_interpreter_without_unsloth_is_reported(tmp_path):
    main_environment = Settings(home=tmp_path, unsloth_python=Path(sys.executable))  # it has no unsloth
    availability = UNSLOTH.availability(main_environment)
    assert not availability.available
    assert f"{sys.executable} has no unsloth installed" in availability.reason


def test_what_unsloth_cannot_train_is_refused_before_a_job_starts(engine, tmp_path, mapping_dataset):
    t5_like = tmp_path / "t5-like"
    t5_like.mkdir()
    (t5_like / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    config = JobConfig(
        name="u", provider="unsloth", task="summarization", model=str(t5_like), dataset=str(mapping_dataset["train"])
    )
    with pytest.raises(ConfigError, match="provider: unsloth cannot train this: .* is an encoder-decoder model"):
        engine.submit(config)
    assert engine.list_jobs() == []

    assert "not extractive-qa" in UNSLOTH.supports(config.model_copy(update={"task": "extractive-qa", "model": None}))
    assert "not rlhf" in UNSLOTH.supports(config.model_copy(update={"strategy": "rlhf", "model": None}))
    assert "demo model is an encoder-decoder" in UNSLOTH.supports(config.model_copy(update={"model": None}))
    assert UNSLOTH.supports(config.model_copy(update={"task": "text-generation", "model": None})) is None


def test_what_unsloth_would_quietly_change_on_cpu_is_refused(engine, mapping_dataset):
    from modelforge import hardware

    if hardware.detect().gpus:
        pytest.skip("an NVIDIA GPU is here: Unsloth trains these on it")
    config = JobConfig(name="u", provider="unsloth", dataset=str(mapping_dataset["train"]))
    with pytest.raises(ConfigError, match="on CPU Unsloth cannot load 8-bit weights"):
        engine.submit(config.model_copy(update={"quantization": "8bit"}))
    with pytest.raises(ConfigError, match="set training.packing to false"):
        engine.submit(JobConfig.parse({**config.to_dict(), "training": {"packing": True}}))
    assert engine.list_jobs() == []


def _require_unsloth(settings: Settings):
    """Skip where the Unsloth environment is absent, saying why; under CI its absence fails: CI must prove it trains."""
    availability = UNSLOTH.availability(settings)
    if not availability.available:
        assert availability.reason
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must train through Unsloth, but it is unavailable: {availability.reason}")
        pytest.skip(f"Unsloth is unavailable here: {availability.reason}")


@pytest.mark.parametrize("strategy, loading", [("sft", "4-bit = False"), ("qlora", "4-bit = True")])
def test_unsloth_trains_the_demo_model_in_its_own_environment(strategy, loading, engine, mapping_dataset,
                                                              demo_model_path):
    """LoRA through FastLanguageModel in .venv-unsloth; the adapter it saves is plain peft and learned the mapping."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prediction import generate_reply
    from modelforge.data import split_records

    _require_unsloth(engine.settings)
    training = {"max_steps": 80, "batch_size": 16, "learning_rate": 3e-3, "eval_split": 0.2, "seed": 1,
                "save_steps": 100, "logging_steps": 10}
    config = JobConfig(name="mapping", provider="unsloth", strategy=strategy, dataset=str(mapping_dataset["train"]),
                       training=training)
    job = engine.runner.wait(engine.submit(config).id)
    log = (Path(job.output_dir) / "train.log").read_text()
    assert job.status == "completed", f"{job.error}\n{log[-3000:]}"
    # Unsloth's own report of how it loaded the base: the worker ran in its environment, with the asked weights.
    assert re.search(rf"Unsloth \(CPU\): LlamaForCausalLM .*{loading}", log)

    rows = [json.loads(line) for line in mapping_dataset["train"].read_text().splitlines() if line.strip()]
    _, held_out = split_records(rows, training["eval_split"], training["seed"])  # the rows the job never trained on
    tokenizer = AutoTokenizer.from_pretrained(demo_model_path)
    base = AutoModelForCausalLM.from_pretrained(demo_model_path).eval()

    def exact_match(model) -> float:
        return sum(generate_reply(model, tokenizer, row["input"]) == row["output"] for row in held_out) / len(held_out)

    before = exact_match(base)
    after = exact_match(PeftModel.from_pretrained(base, job.output_dir).eval())  # plain peft, in the main environment
    assert before <= 0.1 and after >= 0.9, (before, after)


def test_qlora_where_unsloth_cannot_load_4bit_fails_with_the_reason(engine, mapping_dataset, monkeypatch):
    """Unsloth would fall back to 16-bit weights; the job says so instead of training something else than asked."""
    _require_unsloth(engine.settings)
    monkeypatch.setenv("UNSLOTH_CPU_LOAD_IN_4BIT", "0")  # Unsloth's switch: as on a CPU bitsandbytes cannot drive
    config = JobConfig(name="no-4bit", provider="unsloth", strategy="qlora", dataset=str(mapping_dataset["train"]),
                       training={"max_steps": 5, "batch_size": 4})
    job = engine.runner.wait(engine.submit(config).id)
    assert job.status == "failed"
    assert "Unsloth could not load this model in 4-bit on this machine" in job.error


def test_unsloth_dpo_continues_an_sft_adapter_and_learns_the_preferred_answers(engine, mapping_dataset,
                                                                                demo_model_path, tmp_path):
    """SFT (huggingface, in this process) teaches the mapping; DPO through Unsloth, started from that adapter, learns
    to prefer each answer with every sound said twice, which the SFT model ranks far below its own answer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge import data, store
    from modelforge.training import pipeline
    from modelforge.strategies.dpo import preference_scores

    _require_unsloth(engine.settings)
    rows = [json.loads(line) for line in mapping_dataset["train"].read_text().splitlines() if line.strip()]
    train, held_out = data.split_records(rows, 0.2, 1)

    def write(name: str, records: list[dict]) -> str:
        (tmp_path / name).write_text("".join(json.dumps(record) + "\n" for record in records))
        return str(tmp_path / name)

    def pairs(records: list[dict]) -> list[dict]:
        twice = [" ".join(sound for sound in r["output"].split() for _ in range(2)) for r in records]
        return [{"prompt": r["input"], "chosen": chosen, "rejected": r["output"]} for r, chosen in zip(records, twice)]

    steps = {"batch_size": 16, "learning_rate": 3e-3, "eval_split": 0, "save_steps": 100}
    sft_config = JobConfig(name="sft", dataset=write("train.jsonl", train), training={"max_steps": 80, **steps})
    engine.check(sft_config)
    sft = engine.runner.submit(sft_config)
    pipeline.run_job(sft, engine.settings)  # its training stack is loaded in this process already
    assert store.get_job(sft.id).status == "completed"

    config = JobConfig(
        name="dpo", provider="unsloth", strategy="dpo", init_from=str(sft.id),
        dataset=write("pairs.jsonl", pairs(train)), training={"max_steps": 20, **steps},
        preference={"beta": 0.01},  # the SFT model ranks the chosen answers ~60 nats lower: a small beta goes far
    )
    job = engine.runner.wait(engine.submit(config).id)
    log = (Path(job.output_dir) / "train.log").read_text()
    assert job.status == "completed", f"{job.error}\n{log[-3000:]}"
    assert "Unsloth (CPU)" in log and "is a LoRA adapter; loading its base" in log  # Unsloth loaded the SFT adapter

    tokenizer = AutoTokenizer.from_pretrained(demo_model_path)

    def preference_accuracy(adapter: str) -> float:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), adapter)
        scores = preference_scores(model, tokenizer, pairs(held_out))
        return sum(chosen > rejected for chosen, rejected in scores) / len(scores)

    before, after = preference_accuracy(sft.output_dir), preference_accuracy(job.output_dir)
    assert after >= 0.9 and after >= before + 0.5, (before, after)
