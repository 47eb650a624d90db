"""The Finetune and History tabs through gradio_client: start a job, watch it train, cancel it, find it again."""

import json
import re
import time

from modelforge.config import (
    DistributedConfig, EvaluationConfig, JobConfig, LoraConfig, PreferenceConfig, SweepConfig, TrainingConfig,
)
from modelforge.accounts import LOCAL
from modelforge.ui import finetune_tab
from modelforge.ui.finetune_tab import DEMO_MODEL, config_from_form


def _wait_for_status(client, pattern: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status, *_ = client.predict(api_name="/job_status")
        if re.search(pattern, status):
            return status
        time.sleep(0.5)
    raise AssertionError(f"status never matched {pattern!r}: {status}")


def test_start_watch_and_cancel_a_job(app_client, mapping_dataset, engine):
    message = app_client.predict(
        dataset=str(mapping_dataset["train"]), max_steps=400, batch_size=16, learning_rate=0.003, name="ui-run",
        api_name="/start_training",
    )
    assert message == "Queued job #1 (ui-run)."
    status = _wait_for_status(app_client, r"stage: \*\*training\*\* · step [1-9]")
    assert "Job #1 · ui-run" in status

    _wait_for_status(app_client, r"loss \d")
    _, losses, rates, _, _ = app_client.predict(api_name="/job_status")
    assert losses["data"] and rates["data"], (losses, rates)

    assert "stopping at the next step" in app_client.predict(api_name="/cancel_job")
    status = _wait_for_status(app_client, r"\*\*cancelled\*\*")
    assert "checkpoint" in status
    assert engine.get_job(1).status == "cancelled"

    table, _ = app_client.predict(api_name="/history")
    assert table["data"][0][:3] == [1, "ui-run", "cancelled"]
    path, command = app_client.predict(api_name="/export_config")
    assert command == "python -m modelforge train ui-run.yaml"
    exported = JobConfig.load(path)
    assert exported.training.max_steps == 400 and exported.output_dir is None


def test_a_finished_job_shows_base_and_tuned_scores_and_history_compares_jobs(app_client, mapping_dataset, engine):
    from modelforge.db import Job

    message = app_client.predict(
        dataset=str(mapping_dataset["train"]), max_steps=60, batch_size=16, learning_rate=0.003, name="scored",
        api_name="/start_training",
    )
    assert message == "Queued job #1 (scored)."
    _wait_for_status(app_client, r"\*\*completed\*\*")
    _, _, _, evaluation, examples = app_client.predict(api_name="/job_status")
    assert evaluation["headers"] == ["metric", "base", "tuned", "change"]
    scores = {row[0]: row[1:] for row in evaluation["data"]}
    assert {"perplexity", "rouge1", "rouge2", "rougeL", "bleu", "chrf", "exact_match"} <= set(scores)
    base, tuned, change = scores["exact_match"]
    assert float(tuned) > float(base) and change.startswith("+")
    assert examples["headers"] == ["input", "expected", "base model", "tuned model"] and len(examples["data"]) == 5

    # A second job with other scores: History shows both jobs' columns side by side.
    first = engine.get_job(1)
    metrics = json.loads(first.metrics)
    metrics["evaluation"]["metrics"]["exact_match"]["tuned"] = 12.5
    Job.create(name="other", config=first.config, status="completed", output_dir=first.output_dir + "-other", metrics=json.dumps(metrics))
    app_client.predict(api_name="/history")
    *_, compared = app_client.predict(["#1 scored", "#2 other"], api_name="/history_inspect")
    assert compared["headers"] == ["metric", "#1 base", "#1 tuned", "#2 base", "#2 tuned"]
    row = next(row for row in compared["data"] if row[0] == "exact_match")
    assert row[2] == tuned and row[4] == "12.5"


def test_a_first_job_with_the_tabs_defaults_learns_the_sample(app_client, engine):
    """Start training with nothing changed, as a newcomer does: the demo model, the first sample, the default preset."""
    message = app_client.predict(api_name="/start_training")
    assert re.fullmatch(r"Queued job #1 \(run-[\d-]+\)\.", message), message
    config = engine.job_config(engine.get_job(1))
    assert config.model is None and config.dataset.endswith("text-generation.jsonl")
    assert config.training.learning_rate == 3e-3 and config.training.max_steps == -1  # the tiny model's rate, epochs
    _wait_for_status(app_client, r"\*\*completed\*\*", timeout=540)  # minutes on a busy, shared machine
    _, _, _, evaluation, _ = app_client.predict(api_name="/job_status")
    scores = {row[0]: row[1:] for row in evaluation["data"]}
    base, tuned, _ = scores["exact_match"]
    assert float(base) < 10 and float(tuned) >= 60, scores
    assert float(scores["chrf"][1]) > float(scores["chrf"][0]), scores


def test_the_start_endpoint_names_its_parameters_as_the_config_does(app_client):
    """`start_training(dataset=..., learning_rate=..., lora_r=...)`: each API name is a config field's, training's
    bare, another section's prefixed by the section; `lora` off is full fine-tuning (lora: null)."""
    endpoints = app_client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    names = [parameter["parameter_name"] for parameter in endpoints["/start_training"]["parameters"]]
    assert names[:5] == ["dataset", "task", "model", "provider", "strategy"]
    assert {"epochs", "max_steps", "batch_size", "learning_rate", "warmup_ratio", "name", "lora", "lora_r",
            "quantization", "init_from", "evaluation_max_samples", "preference_beta", "distributed_strategy",
            "sweep_learning_rate", "sweep_lora_r"} <= set(names)
    sections = {"lora": LoraConfig, "evaluation": EvaluationConfig, "preference": PreferenceConfig,
                "distributed": DistributedConfig, "sweep": SweepConfig}
    for name in names:
        section, _, field = name.partition("_")
        in_section = section in sections and field in sections[section].model_fields
        assert name in JobConfig.model_fields or name in TrainingConfig.model_fields or in_section, name
    assert len(set(names)) == len(names)
    assert [parameter["parameter_name"] for parameter in endpoints["/fit_per_gpu"]["parameters"]] == names


def test_a_bad_form_is_refused_with_the_reason(app_client, tmp_path):
    message = app_client.predict(dataset=str(tmp_path / "missing.jsonl"), api_name="/start_training")
    assert message.startswith("**Could not start:**") and "not found" in message
    message = app_client.predict(dataset=str(tmp_path / "missing.jsonl"), warmup_ratio=1.5, api_name="/start_training")
    assert "training.warmup_ratio" in message


def test_the_handlers_work_without_a_page(engine, mapping_dataset):
    """The tab's handlers are plain functions of the engine and the account: queue, watch and cancel a job."""
    job_id, message = finetune_tab.start_training(
        engine, LOCAL, str(mapping_dataset["train"]), "text-generation", DEMO_MODEL, "huggingface", "sft",
        max_steps=5, name="direct",
    )
    assert message == f"Queued job #{job_id} (direct)."
    assert engine.job_config(engine.get_job(job_id)).training.max_steps == 5
    watched, status, *_ = finetune_tab.watch_job(engine, LOCAL, None)
    assert watched == job_id and f"Job #{job_id} · direct" in status and "**queued**" in status
    assert finetune_tab.cancel_job(engine, LOCAL, None) == "No job selected."
    assert finetune_tab.cancel_job(engine, LOCAL, job_id) == f"Job #{job_id} is cancelled."


def test_the_sweep_fields_queue_one_job_per_value_and_a_bad_value_names_its_field(engine, mapping_dataset):
    form = (engine, LOCAL, str(mapping_dataset["train"]), "text-generation", DEMO_MODEL, "huggingface", "sft")
    job_id, message = finetune_tab.start_training(*form, name="swept", sweep_learning_rate="3e-3, 1e-3", sweep_lora_r="4")
    jobs = engine.list_jobs()[::-1]
    assert job_id == jobs[0].id and message == (
        f"Queued a sweep of 2 jobs, #{jobs[0].id} to #{jobs[1].id}, run one after another; History compares them.")
    assert [(job.name, job.sweep) for job in jobs] == [("swept-lr0.003-r4", job_id), ("swept-lr0.001-r4", job_id)]
    assert [engine.job_config(job).training.learning_rate for job in jobs] == [3e-3, 1e-3]
    _, message = finetune_tab.start_training(*form, sweep_learning_rate="3e-3, fast")
    assert message.startswith("**Could not start:**") and "sweep.learning_rate: 'fast' is not a number" in message
    _, message = finetune_tab.start_training(*form, sweep_lora_r="4, 8", lora=False)
    assert "sweep.lora_r: full fine-tuning (lora: null) has no LoRA rank to sweep" in message
    assert len(engine.list_jobs()) == 2


def test_form_values_become_the_job_config():
    keys = ["training.epochs", "training.max_steps", "lora", "lora.target_modules", "quantization", "name",
            "eval_dataset", "evaluation.max_samples"]
    values = [2.0, 10, False, "q_proj, v_proj", "4bit", "n1", "held.jsonl", 7]
    config = config_from_form("d.jsonl", "chat", DEMO_MODEL, "huggingface", "sft", keys, values)
    assert config.model is None and config.lora is None and config.quantization == "4bit"
    assert config.training.epochs == 2.0 and config.training.max_steps == 10 and config.name == "n1"
    assert config.eval_dataset == "held.jsonl" and config.evaluation.max_samples == 7
    values = [1.0, -1, True, "q_proj, v_proj", "none", "", "", 64]
    config = config_from_form("d.jsonl", "chat", "org/model", "huggingface", "sft", keys, values)
    assert config.model == "org/model" and config.lora.target_modules == ["q_proj", "v_proj"] and config.quantization is None
    assert config.eval_dataset is None


def test_preference_settings_and_the_starting_job_reach_the_config():
    keys = ["init_from", "preference.beta", "preference.loss_type", "preference.rl_algorithm"]
    config = config_from_form("pairs.jsonl", "text-generation", DEMO_MODEL, "huggingface", "dpo", keys, ["3", 0.2, "ipo", "rloo"])
    assert config.init_from == "3" and config.preference.beta == 0.2 and config.preference.loss_type == "ipo"
    config = config_from_form("pairs.jsonl", "text-generation", DEMO_MODEL, "huggingface", "rlhf", keys, ["", 0.1, "sigmoid", "rloo"])
    assert config.init_from is None and config.preference.rl_algorithm == "rloo"


def test_the_form_offers_processes_and_strategy_with_the_memory_of_one_gpu(app_client, engine, mapping_dataset):
    from modelforge.db import Job, JobRank

    parameters = app_client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/fit_per_gpu"]["parameters"]
    names = {parameter["label"]: parameter["parameter_name"] for parameter in parameters}

    def fit_line(processes: str, strategy: str) -> str:
        return app_client.predict(
            **{names["processes (GPUs) per machine; auto: one per GPU"]: processes,
               names["multi-GPU strategy (auto: ddp)"]: strategy, names["LoRA (off: full fine-tuning)"]: False},
            api_name="/fit_per_gpu",
        )

    def megabytes(line: str) -> float:
        return float(re.search(r"about (\d+) MB per GPU", line).group(1))

    one, ddp, fsdp = fit_line("1", "auto"), fit_line("2", "ddp"), fit_line("2", "fsdp")
    assert "(one process)" in one and "(2 processes, a full copy on each GPU)" in ddp
    assert "(2 processes, weights, gradients and optimizer state split across the GPUs)" in fsdp
    assert megabytes(ddp) == megabytes(one) > megabytes(fsdp)

    # History shows how each job was launched, and the machine and state of each rank of a distributed job.
    config = JobConfig(name="two-ranks", dataset=str(mapping_dataset["train"]), distributed={"num_processes": 2})
    job = Job.create(name="two-ranks", config=config.to_json(), status="completed", output_dir="/tmp/two-ranks")
    for rank in (0, 1):
        JobRank.create(job=job, rank=rank, machine_rank=0, world_size=2, host="node-a", pid=100 + rank, device="cpu",
                       state="completed", step=60)
    table, _ = app_client.predict(api_name="/history")
    assert table["headers"][-1] == "launch" and table["data"][0][-1] == "2 processes (ddp)"
    summary, *_ = app_client.predict(["#1 two-ranks"], api_name="/history_inspect")
    assert "launched as: **2 processes (ddp)**" in summary
    assert "| 1 | 0 | node-a | 101 | cpu | completed | 60 |" in summary
