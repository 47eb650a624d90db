"""A real pretrained model through the whole loop: SmolLM2-135M-Instruct (a GGUF file from PyPI, given to the job as
its `model`) learns a small task with LoRA, through its own chat template; the Playground answers with it; the merged
export answers the same in plain transformers. And a real encoder (all-MiniLM-L6-v2) learns extractive QA.

One SFT job is trained for the whole module (~1 min on 2 cores); the tests read what it left.
"""

import json
from pathlib import Path

import pytest

from mapping_data import mapping_rows, write_jsonl
from modelforge.config import JobConfig
from sft_labels import assert_xray_matches_the_trainer

STEPS = 30
HELD_OUT = 16
QA_STEPS = 60
SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory, demo_models_dir):
    from modelforge.engine import Engine
    from modelforge.settings import Settings

    home = tmp_path_factory.mktemp("real-home")
    (home / "models").symlink_to(demo_models_dir, target_is_directory=True)
    engine = Engine.create(Settings(home=home))
    yield engine
    engine.runner.stop()


@pytest.fixture(scope="module")
def real_sft_job(real_engine, real_causal_gguf, real_causal_path, tmp_path_factory):
    """The animal -> sounds mapping learned by SmolLM2 from its GGUF file (converted by the session fixture)."""
    train, held_out = mapping_rows()
    folder = tmp_path_factory.mktemp("real-data")
    config = JobConfig(
        name="real-sft",
        model=str(real_causal_gguf),
        dataset=str(write_jsonl(folder / "train.jsonl", train)),
        eval_dataset=str(write_jsonl(folder / "held-out.jsonl", held_out[:HELD_OUT])),
        training={"max_steps": STEPS, "batch_size": 4, "learning_rate": 3e-3, "save_steps": 100, "logging_steps": 5},
        lora={"r": 16, "alpha": 32},
        evaluation={"max_samples": HELD_OUT, "max_new_tokens": 12},
    )
    job = real_engine.runner.wait(real_engine.submit(config).id)
    assert job.status == "completed", job.error
    return job


def test_sft_on_the_real_model_learns_the_mapping_on_held_out_rows(
    real_sft_job, real_engine, real_causal_gguf, real_causal_path
):
    # Measured here: exact match 0 -> 56 %, ROUGE-1 0 -> 0.78, perplexity of the answers 612 -> 1.7 (30 steps).
    table = json.loads(real_sft_job.metrics)["evaluation"]["metrics"]
    assert table["exact_match"]["base"] == 0 and table["exact_match"]["tuned"] >= 40, table
    assert table["perplexity"]["tuned"] < table["perplexity"]["base"] / 100, table
    log = (Path(real_sft_job.output_dir) / "train.log").read_text()
    conversion = real_engine.settings.models_dir / real_causal_path.name  # made once, by the session's fixture
    assert f"model: {real_causal_gguf} is loaded from its conversion {conversion}" in log


def test_training_rows_go_through_the_real_chat_template(real_causal_path, tmp_path):
    """SmolLM2's ChatML template (with its default system prompt) frames the row; the answer and its <|im_end|> are
    the trained tokens, in the trainer's labels as in the Dataset tab's X-ray."""
    train, _ = mapping_rows()
    (row,) = assert_xray_matches_the_trainer(real_causal_path, "text-generation", train[:1], tmp_path)
    assert row.highlighted() == [
        ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
         f"<|im_start|>user\n{train[0]['input']}<|im_end|>\n<|im_start|>assistant\n", None),
        (f"{train[0]['output']}<|im_end|>\n", "trained"),
    ]


def test_the_playground_answers_with_the_tuned_real_model(real_sft_job, real_engine):
    """The Playground's host loads the job (its adapter on the converted GGUF base) and answers a held-out prompt as
    the job's own evaluation did: the same prompt format in training, evaluation and chat."""
    from modelforge.inference import ModelHost, job_source

    examples = json.loads(real_sft_job.metrics)["evaluation"]["examples"]
    host = ModelHost()
    try:
        host.load(job_source(real_sft_job, real_engine.settings))
        assert host.wait(120) == f"ready: #{real_sft_job.id} real-sft"
        for example in examples[:3]:
            history = [{"role": "user", "content": [{"type": "text", "text": example["input"]}]}]
            assert list(host.stream(history, max_new_tokens=12, temperature=0))[-1] == example["tuned"]
            assert list(host.stream(history, max_new_tokens=12, temperature=0, which="base"))[-1] == example["base"]
    finally:
        host.unload()
    assert any(example["tuned"] == example["expected"] for example in examples)


def test_the_merged_export_answers_the_same_in_plain_transformers(real_sft_job, real_engine, real_causal_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prediction import generate_reply

    folder = real_engine.export_merged(real_sft_job.id)
    merged, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(real_causal_path), real_sft_job.output_dir)
    _, held_out = mapping_rows()
    prompts = [row["input"] for row in held_out[:4]]
    answers = [generate_reply(tuned, tokenizer, prompt, max_new_tokens=12) for prompt in prompts]
    with tuned.disable_adapter():
        base_answers = [generate_reply(tuned, tokenizer, prompt, max_new_tokens=12) for prompt in prompts]
    assert answers != base_answers  # the adapter matters, so equal answers below prove the merge
    assert [generate_reply(merged, tokenizer, prompt, max_new_tokens=12) for prompt in prompts] == answers
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(real_causal_path).chat_template


def test_a_real_encoder_learns_extractive_qa(real_engine, real_encoder_path, tmp_path):
    """all-MiniLM-L6-v2 with a new span head, fully fine-tuned (22 M parameters), learns to point at the answer in
    the context on held-out rows."""
    rows = [json.loads(line) for line in (SAMPLES / "extractive-qa-demo.jsonl").read_text().splitlines()]
    config = JobConfig(
        name="real-qa", task="extractive-qa", model=str(real_encoder_path),
        dataset=str(write_jsonl(tmp_path / "train.jsonl", rows[:200])),
        eval_dataset=str(write_jsonl(tmp_path / "held-out.jsonl", rows[200:232])),
        training={"max_steps": QA_STEPS, "batch_size": 16, "learning_rate": 3e-4, "save_steps": 100, "max_length": 128},
        lora=None,
    )
    job = real_engine.runner.wait(real_engine.submit(config).id)
    assert job.status == "completed", job.error
    # Measured here: exact match 0 -> 34 %, F1 4 -> 37 (60 steps of 16 rows).
    table = json.loads(job.metrics)["evaluation"]["metrics"]
    assert table["exact_match"]["tuned"] >= table["exact_match"]["base"] + 15, table
    assert table["f1"]["tuned"] >= table["f1"]["base"] + 15, table
