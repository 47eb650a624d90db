"""DPO after SFT: an SFT job teaches the animal -> sound mapping, then a DPO job started from its adapter learns to
prefer a variant of those answers (each sound said twice) that the SFT model ranks far below its own answer."""

from pathlib import Path

import pytest

from mapping_data import SAMPLE, mapping_rows, write_jsonl
from modelforge import preflight, store
from modelforge.training import pipeline
from modelforge.config import JobConfig
from modelforge.db import Job
from modelforge.errors import ConfigError, DatasetError



def doubled(answer: str) -> str:
    return " ".join(word for word in answer.split() for _ in range(2))


def preference_pairs(rows: list[dict]) -> list[dict]:
    return [{"prompt": row["input"], "chosen": doubled(row["output"]), "rejected": row["output"]} for row in rows]


def train_in_process(engine, config: JobConfig) -> Job:
    """A job checked and queued as submit does, then trained in this process (its training stack is loaded already)."""
    engine.check(config)
    job = engine.runner.submit(config)
    pipeline.run_job(job, engine.settings)
    return store.get_job(job.id)


def sft_config(name: str, dataset: Path) -> JobConfig:
    training_settings = {"max_steps": 80, "batch_size": 16, "learning_rate": 3e-3, "eval_split": 0, "save_steps": 100}
    return JobConfig(name=name, dataset=str(dataset), training=training_settings)


def preference_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    from modelforge.strategies.dpo import preference_scores

    scores = preference_scores(model, tokenizer, pairs)
    return sum(chosen > rejected for chosen, rejected in scores) / len(scores)


def test_dpo_after_sft_prefers_the_chosen_variant_and_still_answers(engine, demo_model_path, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prediction import generate_reply

    train, held_out = mapping_rows()
    sft = train_in_process(engine, sft_config("sft", write_jsonl(tmp_path / "mapping.jsonl", train)))
    assert sft.status == "completed", sft.error

    config = JobConfig(
        name="dpo",
        strategy="dpo",
        init_from=str(sft.id),  # model left empty: the SFT job's base
        dataset=str(write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(train))),
        training={"max_steps": 20, "batch_size": 16, "learning_rate": 3e-3, "eval_split": 0, "save_steps": 100},
        # The SFT model ranks the doubled answer ~60 nats below its own: a small beta lets DPO move that far.
        preference={"beta": 0.01},
    )
    job = engine.runner.wait(engine.submit(config).id)
    assert job.status == "completed", job.error
    saved = JobConfig.load(Path(job.output_dir) / "modelforge.yaml")
    assert saved.init_from == sft.output_dir and saved.model is None

    tokenizer = AutoTokenizer.from_pretrained(job.output_dir)
    pairs = preference_pairs(held_out)
    sft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), sft.output_dir)
    dpo_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), job.output_dir)
    sft_accuracy = preference_accuracy(sft_model, tokenizer, pairs)
    dpo_accuracy = preference_accuracy(dpo_model, tokenizer, pairs)
    assert dpo_accuracy >= 0.9, (sft_accuracy, dpo_accuracy)
    assert dpo_accuracy >= sft_accuracy + 0.5, (sft_accuracy, dpo_accuracy)

    # The SFT behaviour survives: the answers are made of the prompt's animal sounds (now often repeated).
    sounds = {animal: sound for row in train for animal, sound in zip(row["input"].split(), row["output"].split())}
    replies = [generate_reply(dpo_model.eval(), tokenizer, row["input"]) for row in held_out]
    in_form = [
        bool(reply) and set(reply.split()) <= {sounds[animal] for animal in row["input"].split()}
        for reply, row in zip(replies, held_out)
    ]
    assert sum(in_form) / len(in_form) >= 0.8, list(zip(replies, in_form))


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat-template", "plain-prompt"])
def test_answers_are_scored_on_the_tokens_dpo_trains_on(demo_model_path, tmp_path, chat_template):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from modelforge.prompts import answer_ids, as_turns
    from modelforge.strategies.dpo import to_preference_rows

    tokenizer = AutoTokenizer.from_pretrained(demo_model_path)
    if not chat_template:
        tokenizer.chat_template = None
    records = preference_pairs(mapping_rows()[1][:4])
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(demo_model_path),
        args=DPOConfig(str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none"),
        train_dataset=Dataset.from_list(to_preference_rows(records, "text-generation", tokenizer)),
        processing_class=tokenizer,
    )
    for record, row in zip(records, trainer.train_dataset):
        for answer, column in ((record["chosen"], "chosen_ids"), (record["rejected"], "rejected_ids")):
            prompt_ids, completion_ids = answer_ids(tokenizer, *as_turns(tokenizer, record["prompt"], answer))
            assert (prompt_ids, completion_ids) == (row["prompt_ids"], row[column])
            assert completion_ids[-1] == tokenizer.eos_token_id


def test_a_dpo_job_without_preference_pairs_is_refused_naming_the_missing_fields(engine):
    with pytest.raises(DatasetError) as refused:
        engine.submit(JobConfig(name="dpo", strategy="dpo", dataset=str(SAMPLE)))
    assert "no column for chosen" in str(refused.value) and "no column for rejected" in str(refused.value)
    assert not engine.list_jobs()


@pytest.fixture
def pairs_file(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(mapping_rows()[0]))


def test_init_from_must_name_a_completed_lora_job_or_adapter_folder(engine, finished_job, pairs_file, tmp_path):
    def refusal(init_from, **overrides) -> str:
        config = JobConfig(name="dpo", strategy="dpo", dataset=str(pairs_file), init_from=init_from, **overrides)
        with pytest.raises(ConfigError) as refused:
            engine.submit(config)
        return str(refused.value)

    queued = engine.runner.submit(JobConfig(name="queued", dataset=str(SAMPLE)))
    full = Job.create(name="full", config="{}", status="completed", output_dir=str(tmp_path))
    assert "there is no job 99" in refusal("99")
    assert f"job {queued.id} (queued) is queued; start from a completed job" in refusal(str(queued.id))
    assert f"job {full.id} (full) trained the full model, not a LoRA adapter" in refusal(str(full.id))
    assert f"{tmp_path} holds no LoRA adapter" in refusal(str(tmp_path))
    assert "missing-folder is neither a job id nor a folder" in refusal("missing-folder")
    other = refusal(str(finished_job.id), model=str(tmp_path / "other-model"))
    assert "was trained on" in other and "not on" in other and "other-model" in other

    # Accepted: the finished job's adapter folder, and the job itself; neither is started here.
    for init_from in (finished_job.output_dir, str(finished_job.id)):
        config = JobConfig(name="dpo", strategy="dpo", dataset=str(pairs_file), init_from=init_from)
        engine.check(config)
        resolved = preflight.resolve_init_from(config, engine.settings)
        assert resolved.init_from == str(Path(finished_job.output_dir).resolve()) and resolved.model is None


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"strategy": "sft", "init_from": "1"}, "init_from: only the dpo, rlhf, orpo, simpo, cpo and kto strategies start"),
        ({"strategy": "dpo", "init_from": "1", "lora": None}, "lora cannot be null"),
        ({"strategy": "dpo", "preference": {"loss_type": "kto"}}, "preference.loss_type: must be one of sigmoid, ipo"),
    ],
)
def test_preference_settings_are_checked_with_the_config(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        JobConfig.parse({"dataset": "pairs.jsonl", **overrides})
