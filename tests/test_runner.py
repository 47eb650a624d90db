"""The supervised worker: cancel and resume, a killed worker, orphans after a restart, the FIFO queue, and runners
racing for the queue (several `train` CLIs started together)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelforge import run_folder, store
from modelforge.config import JobConfig
from modelforge.db import Job, MetricPoint, init_database
from modelforge.errors import ConfigError, DatasetError, JobError
from modelforge.runner import JobRunner, process_identity

ROOT = Path(__file__).resolve().parent.parent
# Rounds of three CLIs started at once; raise it to hunt the race harder (each round trains three tiny jobs).
RACE_ROUNDS = int(os.environ.get("MODELFORGE_RACE_ROUNDS", "2"))


def _config(dataset, **training):
    settings = dict(max_steps=40, batch_size=8, learning_rate=3e-3, save_steps=1000, logging_steps=1, eval_split=0)
    settings.update(training)
    return JobConfig(name="runner-test", dataset=str(dataset), training=settings)


def _poll_until(runner, job_id, predicate, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runner.poll()
        job = store.get_job(job_id)
        if predicate(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached the expected state; last: {job.status}/{job.stage} step {job.step}")


def test_cancel_saves_a_checkpoint_and_resume_finishes_the_same_job(engine, mapping_dataset):
    job = engine.submit(_config(mapping_dataset["train"], max_steps=300))
    job = _poll_until(engine.runner, job.id, lambda j: j.stage == "training" and j.step >= 3)

    job = engine.cancel(job.id, wait=True)
    assert job.status == "cancelled"
    checkpoint = run_folder.last_checkpoint(run_folder.log_path(job).parent)
    assert checkpoint is not None, "cancel must leave a checkpoint"
    stopped_at = int(checkpoint.name.split("-")[1])
    assert 3 <= stopped_at < 300

    engine.runner.resume(job.id)
    job = engine.runner.wait(job.id)
    assert job.status == "completed", job.error
    assert job.step == 300
    assert Job.select().count() == 1
    steps = [p.step for p in store.metric_points(job.id) if p.loss is not None]
    assert steps[-1] == 300 and max(steps[: steps.index(stopped_at) + 1]) == stopped_at
    assert "resuming from" in run_folder.log_path(job).read_text()


@pytest.mark.both_databases
def test_a_worker_killed_with_sigkill_leaves_its_job_failed_with_the_signal(engine, mapping_dataset):
    job = engine.submit(_config(mapping_dataset["train"], max_steps=400))
    job = _poll_until(engine.runner, job.id, lambda j: j.stage == "training" and j.step >= 1)
    os.kill(job.worker_pid, signal.SIGKILL)
    job = engine.runner.wait(job.id)
    assert job.status == "failed"
    assert "killed by SIGKILL" in job.error
    assert "Last log lines" in job.error


@pytest.mark.both_databases
def test_a_restarted_runner_marks_orphaned_running_jobs_interrupted(engine, mapping_dataset):
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = engine.runner.submit(_config(mapping_dataset["train"]))
    store.update(orphan.id, status="running", stage="training", worker_pid=dead.pid)
    # A live process that is not a worker (pid reuse) does not keep a job alive either.
    impostor = engine.runner.submit(_config(mapping_dataset["train"]))
    store.update(impostor.id, status="running", stage="training", worker_pid=os.getpid())

    restarted = JobRunner(engine.settings)
    assert sorted(restarted.recover()) == [orphan.id, impostor.id]
    for job_id in (orphan.id, impostor.id):
        job = store.get_job(job_id)
        assert job.status == "interrupted"
        assert "resume" in job.error


@pytest.mark.both_databases
def test_jobs_wait_in_a_fifo_queue_and_train_one_at_a_time(engine, mapping_dataset):
    first = engine.submit(_config(mapping_dataset["train"]))
    second = engine.submit(_config(mapping_dataset["train"]))
    engine.runner.poll()
    assert store.get_job(first.id).status == "running"
    assert store.get_job(second.id).status == "queued"
    assert store.get_job(second.id).output_dir != store.get_job(first.id).output_dir

    assert engine.cancel(second.id).status == "cancelled"  # a queued job is cancelled at once
    engine.cancel(first.id, wait=True)
    assert store.get_job(first.id).status == "cancelled"
    with pytest.raises(JobError, match="only queued or running"):
        engine.cancel(first.id)


def test_submit_rejects_what_cannot_run(engine, mapping_dataset, tmp_path):
    with pytest.raises(ConfigError, match="task: strategy dpo supports text-generation, chat"):
        engine.submit(_config(mapping_dataset["train"]).model_copy(update={"strategy": "dpo", "task": "summarization"}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": "c", "output"\n')
    with pytest.raises(DatasetError, match="line 2"):
        engine.submit(_config(bad))
    assert Job.select().count() == 0
    assert MetricPoint.select().count() == 0


@pytest.mark.both_databases
def test_a_job_being_started_by_a_live_runner_is_judged_by_no_other(engine, mapping_dataset):
    # Another runner has claimed a job and not yet recorded its worker's pid: the window of the old race.
    claimant = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        job = engine.runner.submit(_config(mapping_dataset["train"]))
        waiting = engine.runner.submit(_config(mapping_dataset["train"]))
        store.update(job.id, status="running", stage="loading model", supervisor=process_identity(claimant.pid))
        other = JobRunner(engine.settings)
        assert other.recover() == []
        other.poll()
        assert store.get_job(job.id).status == "running"
        assert store.get_job(waiting.id).status == "queued"  # the slot stays taken: one job at a time
    finally:
        claimant.kill()
        claimant.wait()
    # Its runner gone and no worker ever recorded: now the job is judged, and the queue moves on.
    assert other.recover() == [job.id]
    assert "resume continues from the last checkpoint" in store.get_job(job.id).error
    engine.cancel(waiting.id)


@pytest.mark.both_databases
@pytest.mark.timeout(1800)  # six worker runs: minutes on a machine shared by other runs
def test_train_clis_started_together_all_finish_their_own_job_one_at_a_time(settings, tmp_path, mapping_dataset):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"name: race\ndataset: {mapping_dataset['train']}\n"
        "training: {max_steps: 2, batch_size: 4, eval_split: 0, save_steps: 1000, logging_steps: 1}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "modelforge", "train", str(config)]
    own_jobs = []
    for _ in range(RACE_ROUNDS):
        clis = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(3)]
        try:
            for cli in clis:
                out, err = cli.communicate(timeout=900)
                assert cli.returncode == 0, err[-3000:]
                own_jobs.append(int(re.search(r"^job (\d+) completed", out, re.MULTILINE).group(1)))
        finally:
            for cli in clis:
                cli.kill()  # a failed round leaves no CLI behind (each one's worker ends after its few steps)
    assert sorted(own_jobs) == list(range(1, 3 * RACE_ROUNDS + 1))  # each CLI followed its own job to the end

    init_database(settings)
    ran = list(Job.select().order_by(Job.started_at))
    assert [(job.status, job.error, job.step) for job in ran] == [("completed", None, 2)] * len(own_jobs)
    for earlier, later in zip(ran, ran[1:]):  # never two at once: each started after the one before it finished
        assert earlier.finished_at <= later.started_at, (earlier.id, later.id)


def test_jobs_of_one_name_submitted_at_once_get_their_own_folders(engine, mapping_dataset):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # eight users pressing Start with the same default name
        submitted = list(pool.map(lambda _: engine.runner.submit(_config(mapping_dataset["train"])), range(8)))
    folders = {job.output_dir for job in submitted}
    assert len(folders) == 8 and all(Path(folder).is_dir() for folder in folders)
