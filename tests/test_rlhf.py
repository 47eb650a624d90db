"""RLHF in one job: a reward model learns which of two answers people prefer, then the policy is trained online (GRPO)
to give the answers that model rewards.

The policy starts from an SFT job that learnt two answers to the same prompts: mostly the animals repeated, sometimes
their sounds. The preference pairs prefer the sounds, so reinforcement learning has both answers to sample from.
"""

import json
from pathlib import Path

from mapping_data import mapping_rows, write_jsonl
from modelforge import run_folder, store
from modelforge.training import pipeline
from modelforge.config import JobConfig
from modelforge.db import Job

REWARD_STAGE, POLICY_STAGE = "stage 1/2: reward model", "stage 2/2: policy (grpo)"


def preference_pairs(rows: list[dict]) -> list[dict]:
    return [{"prompt": row["input"], "chosen": row["output"], "rejected": row["input"]} for row in rows]


def train_in_process(engine, config: JobConfig) -> Job:
    """A job checked and queued as submit does, then trained in this process (its training stack is loaded already)."""
    engine.check(config)
    job = engine.runner.submit(config)
    pipeline.run_job(job, engine.settings)
    return store.get_job(job.id)


def test_rlhf_reward_model_ranks_held_out_pairs_and_the_policy_earns_more_reward(engine, demo_model_path, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from modelforge.prediction import generate_reply
    from modelforge.strategies.rlhf import score_answers

    train, held_out = mapping_rows()
    two_answers = [row if i % 3 == 0 else {"input": row["input"], "output": row["input"]} for i, row in enumerate(train)]
    sft = train_in_process(
        engine,
        JobConfig(
            name="sft",
            dataset=str(write_jsonl(tmp_path / "two-answers.jsonl", two_answers)),
            training={"max_steps": 60, "batch_size": 16, "learning_rate": 3e-3, "eval_split": 0, "save_steps": 100},
        ),
    )
    assert sft.status == "completed", sft.error

    config = JobConfig(
        name="rlhf",
        strategy="rlhf",
        init_from=str(sft.id),
        dataset=str(write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(train))),
        eval_dataset=str(write_jsonl(tmp_path / "held-out-pairs.jsonl", preference_pairs(held_out))),
        training={"max_steps": 40, "batch_size": 8, "learning_rate": 1e-3, "save_steps": 100},
        preference={"reward_model_steps": 40, "num_generations": 4, "max_completion_length": 8},
    )
    job = train_in_process(engine, config)
    assert job.status == "completed", job.error
    assert job.step == job.total_steps == 40 + 40  # the step counter runs on from stage 1 into stage 2
    logged = [point.step for point in store.metric_points(job.id) if point.loss is not None]
    assert min(logged) <= 40 < max(logged)  # both stages' losses are on the job's curve
    reward_dir = Path(job.output_dir) / "reward_model"
    assert json.loads((reward_dir / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    assert (Path(job.output_dir) / "adapter_config.json").is_file()  # the policy, beside it
    # The job's own before/after evaluation scores both policies' answers with the reward model.
    mean_reward = job.final_metrics["evaluation"]["metrics"]["mean_reward"]
    assert mean_reward["tuned"] > mean_reward["base"], mean_reward

    tokenizer = AutoTokenizer.from_pretrained(job.output_dir)
    reward_model = AutoModelForSequenceClassification.from_pretrained(demo_model_path, num_labels=1)
    reward_model = PeftModel.from_pretrained(reward_model, reward_dir).merge_and_unload().eval()
    prompts = [row["input"] for row in held_out]
    chosen = score_answers(reward_model, tokenizer, prompts, [row["output"] for row in held_out])
    rejected = score_answers(reward_model, tokenizer, prompts, prompts)
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(held_out) >= 0.9

    def greedy_answers(adapter: str) -> list[str]:
        policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), adapter).eval()
        return [generate_reply(policy, tokenizer, prompt) for prompt in prompts]

    before, after = greedy_answers(sft.output_dir), greedy_answers(job.output_dir)
    reward_before = sum(score_answers(reward_model, tokenizer, prompts, before)) / len(prompts)
    reward_after = sum(score_answers(reward_model, tokenizer, prompts, after)) / len(prompts)
    repeated_before = sum(a == p for a, p in zip(before, prompts)) / len(prompts)
    repeated_after = sum(a == p for a, p in zip(after, prompts)) / len(prompts)
    assert reward_after > reward_before + 1.0, (reward_before, reward_after, after)
    assert repeated_before >= 0.5 and repeated_after <= 0.2, (before, after)  # it gave up the dispreferred answer
    assert all(after), after


def test_rlhf_is_cancelled_in_either_stage_and_resumes_where_it_stopped(engine, tmp_path):
    config = JobConfig(
        name="rlhf-cancel",
        strategy="rlhf",
        dataset=str(write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(mapping_rows()[0]))),
        training={"max_steps": 2000, "batch_size": 8, "eval_split": 0, "save_steps": 1000},
        preference={"reward_model_steps": 100, "num_generations": 4, "max_completion_length": 8},
    )
    stages = []

    def cancel_in(stage: str, after_step: int):
        def on_update(job):
            stages.append(job.stage)
            if job.stage == stage and job.step > after_step and job.cancel_requested_at is None:
                engine.cancel(job.id)

        return on_update

    job = engine.runner.wait(engine.submit(config).id, on_update=cancel_in(REWARD_STAGE, 0), interval=0.2)
    assert job.status == "cancelled", job.error
    assert f"Cancelled in {REWARD_STAGE} at step" in job.error
    reward_dir = Path(job.output_dir) / "reward_model"
    stopped_at = run_folder.last_checkpoint(reward_dir)
    assert stopped_at is not None and int(stopped_at.name.split("-")[1]) < 100

    engine.runner.resume(job.id)
    job = engine.runner.wait(job.id, on_update=cancel_in(POLICY_STAGE, 100), interval=0.2)
    assert job.status == "cancelled", job.error
    assert REWARD_STAGE in stages and POLICY_STAGE in stages
    assert (reward_dir / "adapter_config.json").is_file()  # stage 1 resumed from its checkpoint and finished
    assert run_folder.last_checkpoint(Path(job.output_dir)) is not None  # stage 2 can resume too
    assert job.step > 100
