"""Sweeps: a config's values to try expand into ordinary jobs, the queue trains them one after another, and their
comparison holds each run's stored before/after metrics with the best one marked."""

import pytest

from modelforge import store
from modelforge.cli import main
from modelforge.config import MAX_SWEEP_RUNS, JobConfig
from modelforge.errors import ConfigError


def _sweep(**values) -> JobConfig:
    return JobConfig.parse({"name": "lr-test", "dataset": "data.jsonl", "lora": {"r": 16, "alpha": 32}, "sweep": values})


def test_a_sweep_is_one_whole_config_per_combination_of_its_values():
    runs = _sweep(learning_rate=[1e-3, 3e-3], lora_r=[4, 8]).sweep_runs()
    assert [(run.name, run.training.learning_rate, run.lora.r) for run in runs] == [
        ("lr-test-lr0.001-r4", 1e-3, 4), ("lr-test-lr0.001-r8", 1e-3, 8),
        ("lr-test-lr0.003-r4", 3e-3, 4), ("lr-test-lr0.003-r8", 3e-3, 8),
    ]
    # Each run is a job of its own: no sweep left in it, everything else as given, readable back from its record.
    assert all(run.sweep is None and run.lora.alpha == 32 and run.dataset == "data.jsonl" for run in runs)
    assert JobConfig.from_json(runs[1].to_json()) == runs[1]
    only_rates = _sweep(learning_rate="1e-4, 2e-4").sweep_runs()
    assert [(run.name, run.training.learning_rate, run.lora.r) for run in only_rates] == [
        ("lr-test-lr0.0001-r16", 1e-4, 16), ("lr-test-lr0.0002-r16", 2e-4, 16)]
    given_folder = _sweep(lora_r=[4, 8]).model_copy(update={"output_dir": "/runs/mine"}).sweep_runs()
    assert [run.output_dir for run in given_folder] == ["/runs/mine/lr-test-lr0.0002-r4", "/runs/mine/lr-test-lr0.0002-r8"]
    assert JobConfig(dataset="data.jsonl").sweep_runs()[0].sweep is None  # no sweep: the config is its one run


@pytest.mark.parametrize("values, message", [
    ({"learning_rate": "1e-3, fast"}, "sweep.learning_rate: 'fast' is not a number; give values separated by commas"),
    ({"learning_rate": [3e-3, 1.5]}, "sweep.learning_rate: a learning rate lies between 0 and 1, e.g. 3e-4 (got 1.5)"),
    ({"lora_r": "4, 8.5"}, "sweep.lora_r: '8.5' is not a whole number"),
    ({"lora_r": [8, 0]}, "sweep.lora_r: a LoRA rank is a whole number of at least 1"),
    ({"lora_r": [8, 8]}, "sweep.lora_r: each value once"),
    ({}, "sweep: list the values to try"),
    ({"learning_rate": [1e-4, 2e-4, 3e-4], "lora_r": [2, 4, 8]},
     f"sweep: 3 learning rates x 3 LoRA ranks make 9 runs; a sweep queues at most {MAX_SWEEP_RUNS}"),
])
def test_bad_sweep_values_are_refused_naming_the_field(values, message):
    with pytest.raises(ConfigError, match="Invalid config") as refused:
        _sweep(**values)
    assert message in str(refused.value)


def test_a_rank_sweep_of_full_fine_tuning_is_refused():
    with pytest.raises(ConfigError, match="sweep.lora_r: full fine-tuning"):
        JobConfig.parse({"dataset": "data.jsonl", "lora": None, "sweep": {"lora_r": [4, 8]}})


def test_a_config_with_a_sweep_is_not_queued_as_one_job(engine, mapping_dataset):
    with pytest.raises(ConfigError, match="queue it as a sweep"):
        engine.submit(_sweep(lora_r=[4, 8]).model_copy(update={"dataset": str(mapping_dataset["train"])}))
    assert engine.list_jobs() == []


def test_a_tiny_sweep_trains_each_run_in_turn_and_marks_the_one_that_learned(engine, mapping_dataset, capsys):
    """Three rates on the demo model: 3e-3 learns the mapping in tens of steps, 1e-6 barely moves; the third run is
    cancelled while queued and keeps its row. Each run trains in its own worker process, as any job does."""
    config = JobConfig.parse({
        "name": "rates", "dataset": str(mapping_dataset["train"]), "lora": {"r": 8, "alpha": 16},
        "training": {"max_steps": 40, "batch_size": 8, "save_steps": 1000, "logging_steps": 5, "eval_split": 0.1},
        "evaluation": {"max_samples": 15, "max_new_tokens": 8},
        "sweep": {"learning_rate": [1e-6, 3e-3, 1e-3]},
    })
    jobs = engine.submit_sweep(config)
    assert [job.sweep for job in jobs] == [jobs[0].id] * 3
    engine.cancel(jobs[2].id)
    assert engine.runner.wait(jobs[1].id).status == "completed"

    comparison = engine.compare_sweep(jobs[2].id)  # any run names its sweep
    assert comparison.metric == "exact_match" and comparison.best == jobs[1].id
    rows = {row[0]: dict(zip(comparison.headers, row)) for row in comparison.rows}
    assert [(row["status"], row["learning rate"], row["LoRA rank"], row["best"]) for row in rows.values()] == [
        ("completed", 1e-6, 8, ""), ("completed", 3e-3, 8, "best"), ("cancelled", 1e-3, 8, "")]
    for job in jobs[:2]:  # the rows hold what each run stored as its before/after table
        stored = store.get_job(job.id).final_metrics["evaluation"]["metrics"]["exact_match"]
        assert (rows[job.id]["exact_match base"], rows[job.id]["exact_match tuned"]) == (stored["base"], stored["tuned"])
    assert rows[jobs[1].id]["exact_match tuned"] > rows[jobs[0].id]["exact_match tuned"]
    assert rows[jobs[1].id]["eval loss"] < rows[jobs[0].id]["eval loss"]
    assert rows[jobs[2].id]["exact_match tuned"] is None and rows[jobs[2].id]["eval loss"] is None
    # Each run is reproducible from its own record: its value, no sweep.
    assert JobConfig.from_json(store.get_job(jobs[1].id).config).training.learning_rate == 3e-3

    assert main(["sweep", str(jobs[0].id)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["job", "name", "status", "learning", "rate", "LoRA", "rank", "exact_match", "base",
                                "exact_match", "tuned", "change", "eval", "loss", "best"]
    assert lines[2].split()[:3] == [str(jobs[1].id), "rates-lr0.003-r8", "completed"] and lines[2].endswith("best")
    assert lines[3].split()[2:4] == ["cancelled", "0.001"]
    assert lines[-1] == f"best by exact_match: job {jobs[1].id}"


def test_the_cli_names_a_job_that_is_not_in_a_sweep(engine, mapping_dataset, capsys):
    job = engine.submit(JobConfig(dataset=str(mapping_dataset["train"])))
    engine.cancel(job.id)
    assert main(["sweep", str(job.id)]) == 2
    assert f"Job {job.id} was not queued as part of a sweep" in capsys.readouterr().err
