"""Summarization learns on both kinds of model, each through the real job path; the model's class picks the path.

The task, assets/samples/summarization-demo.jsonl, in the demo vocabulary: a document is three sentences of 3-5 random
words, its summary the first sentence (a lead summary); the held-out documents are drawn the same way. Measured here, ROUGE-L on 40 held-out documents: the encoder-decoder demo went from 0.50 untrained to
1.00 after 60 LoRA steps; the causal demo from 0.18 to 0.73 after 120 (its copying of random words is the limit: 0.79
after 200 steps).
"""

import json
import random
from pathlib import Path

import pytest

from modelforge import metrics
from modelforge.config import JobConfig
from modelforge.demo_model import WORDS

MARGIN = 0.3  # ROUGE-L (0-1) the tuned model must gain over the untrained one on held-out documents
TRAINING = {"batch_size": 16, "learning_rate": 3e-3, "save_steps": 200, "logging_steps": 10}


SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "summarization-demo.jsonl"


def lead_rows(seed: int, count: int) -> list[dict]:
    """Documents and lead summaries drawn like the sample's (it holds lead_rows(1, 200))."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 5))) + "." for _ in range(3)]
        rows.append({"input": " ".join(sentences), "output": sentences[0]})
    return rows


@pytest.fixture
def lead_data():
    held_out = lead_rows(2, 40)
    assert not {row["input"] for row in held_out} & {json.loads(line)["input"] for line in SAMPLE.read_text().splitlines()}
    return SAMPLE, held_out


def rouge_l(summaries: list[str], rows: list[dict]) -> float:
    return metrics.rouge(summaries, [row["output"] for row in rows])["rougeL"]


def train(engine, name: str, data, steps: int, **config):
    training = {**TRAINING, "max_steps": steps}
    job = engine.runner.wait(engine.submit(JobConfig(name=name, dataset=str(data), training=training, **config)).id)
    assert job.status == "completed", job.error
    assert "eval_loss" in job.final_metrics  # held-out loss, reported during training
    return job


def test_encoder_decoder_summarization_learns_lead_summaries(engine, lead_data, demo_seq2seq_path):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from modelforge.prediction import generate_summary

    data, held_out = lead_data
    tokenizer = AutoTokenizer.from_pretrained(demo_seq2seq_path)
    base = AutoModelForSeq2SeqLM.from_pretrained(demo_seq2seq_path)
    before = rouge_l([generate_summary(base, tokenizer, row["input"], 32) for row in held_out], held_out)

    job = train(engine, "lead-seq2seq", data, 60, task="summarization")  # no model: the encoder-decoder demo
    adapter = PeftConfig.from_pretrained(job.output_dir)
    assert adapter.task_type == "SEQ_2_SEQ_LM"
    assert Path(adapter.base_model_name_or_path).resolve() == demo_seq2seq_path.resolve()
    tuned = PeftModel.from_pretrained(base, job.output_dir)
    after = rouge_l([generate_summary(tuned, tokenizer, row["input"], 32) for row in held_out], held_out)
    assert after >= before + MARGIN and after >= 0.9, (before, after)


def test_causal_summarization_learns_lead_summaries(engine, lead_data, demo_model_path):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prediction import generate_reply

    data, held_out = lead_data
    tokenizer = AutoTokenizer.from_pretrained(demo_model_path)
    base = AutoModelForCausalLM.from_pretrained(demo_model_path)
    before = rouge_l([generate_reply(base, tokenizer, row["input"]) for row in held_out], held_out)

    job = train(engine, "lead-causal", data, 120, task="summarization", model=str(demo_model_path))
    assert PeftConfig.from_pretrained(job.output_dir).task_type == "CAUSAL_LM"
    tuned = PeftModel.from_pretrained(base, job.output_dir)
    after = rouge_l([generate_reply(tuned, tokenizer, row["input"]) for row in held_out], held_out)
    assert after >= before + MARGIN and after >= 0.6, (before, after)
