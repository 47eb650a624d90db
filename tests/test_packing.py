"""Packing: a batch's rows laid end to end without padding, on by default where the model keeps them apart."""

import json
import logging

import pytest

from mapping_data import mapping_rows, write_jsonl
from modelforge.config import JobConfig
from modelforge.errors import ConfigError


def _long_rows(rows: list[dict], per_row: int) -> list[dict]:
    """Rows of the same mapping, `per_row` short rows joined: the few long rows of length-skewed data."""
    groups = [rows[start:start + per_row] for start in range(0, len(rows) - per_row + 1, per_row)]
    return [{"input": " ".join(r["input"] for r in g), "output": " ".join(r["output"] for r in g)} for g in groups]


def _sft_trainer(demo_model_path, tmp_path, rows, model=None, **training):
    """The SFT strategy's trainer for `rows`, built as a job's worker builds it."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.runtime import Runtime
    from modelforge.strategies import STRATEGIES
    from modelforge.training.pipeline import TrainingRun

    config = JobConfig(name="packing", dataset="unused.jsonl", training={"max_steps": 1, **training})
    tokenizer = AutoTokenizer.from_pretrained(demo_model_path)
    strategy = STRATEGIES["sft"]
    run = TrainingRun(
        config=config, runtime=Runtime("cpu", "fp32", False),
        model=model or AutoModelForCausalLM.from_pretrained(demo_model_path), tokenizer=tokenizer,
        train_dataset=Dataset.from_list(strategy.prepare_rows(rows, "text-generation", tokenizer)),
        eval_dataset=None, output_dir=tmp_path / "run",
    )
    (stage,) = strategy.stages
    return stage.build_trainer(run)


def test_a_packed_batch_lets_no_row_attend_to_or_predict_another(demo_model_path, tmp_path):
    import torch

    from modelforge.strategies.packing import PaddingFreeWherePays

    train, _ = mapping_rows()
    trainer = _sft_trainer(demo_model_path, tmp_path, train[:6] + _long_rows(train[6:], 8)[:1])
    assert isinstance(trainer.data_collator, PaddingFreeWherePays)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    lengths = [len(row["input_ids"]) for row in rows]
    assert max(lengths) > 3 * min(lengths)  # skewed: padding would triple the work

    batch = trainer.data_collator(rows)
    assert "attention_mask" not in batch  # one sequence, rows told apart by their positions
    starts = [sum(lengths[:i]) for i in range(len(rows))]
    assert batch["input_ids"].tolist() == [[token for row in rows for token in row["input_ids"]]]
    assert batch["position_ids"][0].tolist() == [p for length in lengths for p in range(length)]
    # No row predicts another: the label at each row's first token (the target of the previous row's last position)
    # is masked, and every other label is the row's own, as training it alone would have it.
    labels = batch["labels"][0].tolist()
    assert all(labels[start] == -100 for start in starts)
    for row, start in zip(rows, starts):
        assert labels[start + 1:start + len(row["labels"])] == row["labels"][1:]
    assert any(label != -100 for label in labels)  # the answers are still trained

    # No row attends to another: each row's logits in the packed sequence are its logits alone.
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        for row, start in zip(rows, starts):
            alone = model(input_ids=torch.tensor([row["input_ids"]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:start + len(row["input_ids"])], alone, atol=1e-4, rtol=1e-4)


def test_a_batch_is_padded_where_laying_it_end_to_end_costs_more(demo_model_path, tmp_path):
    train, _ = mapping_rows()
    trainer = _sft_trainer(demo_model_path, tmp_path, train[:8])
    same_length = [row for row in trainer.train_dataset if len(row["input_ids"]) == len(trainer.train_dataset[0]["input_ids"])]
    assert len(same_length) >= 2
    # Equal rows have no padding to save, and a dense block-diagonal mask attends over the whole sequence.
    batch = trainer.data_collator(same_length)
    assert "attention_mask" in batch and "position_ids" not in batch


def test_a_model_that_ignores_position_ids_is_not_packed_and_the_log_says_why(demo_model_path, tmp_path, caplog):
    from transformers import LlamaForCausalLM

    class IgnoresPositions(LlamaForCausalLM):  # a model that builds its mask without looking at position_ids
        def forward(self, *args, position_ids=None, **kwargs):
            return super().forward(*args, **kwargs)

    model = IgnoresPositions.from_pretrained(demo_model_path)
    train, _ = mapping_rows()
    with caplog.at_level(logging.INFO, logger="modelforge.strategies.packing"):
        trainer = _sft_trainer(demo_model_path, tmp_path, train[:8], model=model)
    assert "packing: off, this model (IgnoresPositions, sdpa attention) lets a row attend to the row before it" in caplog.text
    assert "attention_mask" in trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])

    with pytest.raises(ConfigError, match="training.packing: this model .* set it to auto or false"):
        _sft_trainer(demo_model_path, tmp_path, train[:8], model=model, packing=True)


def test_packing_is_refused_where_there_are_no_sft_rows_to_lay_end_to_end():
    assert JobConfig(name="p", dataset="d.jsonl").training.packing == "auto"
    with pytest.raises(ConfigError, match="training.packing: packing lays the rows of SFT end to end; dpo"):
        JobConfig.parse({"dataset": "d.jsonl", "strategy": "dpo", "training": {"packing": True}})
    JobConfig.parse({"dataset": "d.jsonl", "strategy": "dpo"})  # auto: simply off


def test_packed_and_padded_training_learn_the_mapping_alike_on_length_skewed_rows(engine, tmp_path):
    from modelforge import run_folder

    train, held_out = mapping_rows()
    skewed = write_jsonl(tmp_path / "skewed.jsonl", train + _long_rows(train, 10))
    held = write_jsonl(tmp_path / "held-out.jsonl", held_out)

    def trained(packing):
        config = JobConfig(
            name=f"packing-{packing}", dataset=str(skewed), eval_dataset=str(held), evaluation={"compare_base": False},
            training={"max_steps": 60, "batch_size": 16, "learning_rate": 3e-3, "save_steps": 100, "packing": packing},
        )
        job = engine.runner.wait(engine.submit(config).id)
        assert job.status == "completed", job.error
        return job

    packed, padded = trained("auto"), trained(False)
    assert "packing: on (sdpa attention)" in run_folder.log_path(packed).read_text()
    assert "packing: " not in run_folder.log_path(padded).read_text()
    # The same rows in the same order: packing changes how a batch is laid out, not what a step trains on.
    assert packed.final_metrics["tokens"] == padded.final_metrics["tokens"]

    def exact_match(job):
        return job.final_metrics["evaluation"]["metrics"]["exact_match"]["tuned"]

    assert exact_match(padded) >= 80 and exact_match(packed) >= 80, (exact_match(packed), exact_match(padded))
    assert packed.final_metrics["eval_loss"] < 1.5 * padded.final_metrics["eval_loss"] + 0.05
    assert json.loads(packed.config)["training"]["packing"] == "auto"
