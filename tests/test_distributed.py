"""Distributed jobs, proven on this CPU machine: torchrun ranks over gloo, started by the CLI and by the app's runner.

Two processes on two cores are slow, so each test reuses one launch for several outcomes and trains a few steps.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelforge import distributed, run_folder, store
from modelforge.config import JobConfig
from modelforge.db import Job, JobRank, init_database
from modelforge.errors import ConfigError, UnavailableError
from mapping_data import SAMPLE, write_jsonl
from test_cli import ROOT, _split_mapping_rows, run_cli, write
from test_runner import _poll_until

def _is_modelforge_process(pid: int) -> bool:
    try:
        return b"modelforge" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _left_behind(job: Job, timeout: float = 60) -> list[int]:
    """The job's worker and rank processes still alive after `timeout` seconds (a job ends before its processes)."""
    pids = [job.worker_pid, *(rank.pid for rank in _ranks(job.id))]
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if _is_modelforge_process(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _ranks(job_id: int) -> list[JobRank]:
    return list(JobRank.select().where(JobRank.job == job_id).order_by(JobRank.rank))


def test_a_two_process_ddp_job_from_the_cli_learns_as_well_as_one_process(tmp_path, settings):
    train, held_out = _split_mapping_rows(SAMPLE)
    data, held = write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "held-out.jsonl", held_out)
    mapping = JobConfig(
        dataset=str(data), eval_dataset=str(held), evaluation={"compare_base": False},
        training=dict(max_steps=60, batch_size=16, learning_rate=3e-3, save_steps=1000, logging_steps=5),
    )
    config = write(tmp_path / "mapping.yaml", mapping.to_yaml())
    single = run_cli("train", str(config), "--set", "name=single", settings=settings, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    # The same global batch: 2 ranks of 8 rows.
    ddp = run_cli(
        "train", str(config), "--set", "name=ddp", "--set", "distributed.num_processes=2",
        "--set", "training.batch_size=8", settings=settings, timeout=900,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    init_database(settings)
    one, two = Job.get(Job.name == "single"), Job.get(Job.name == "ddp")
    assert _ranks(one.id) == [] and "world_size" not in one.final_metrics
    assert (two.final_metrics["world_size"], two.final_metrics["strategy"]) == (2, "ddp")
    ranks = _ranks(two.id)
    assert [(r.rank, r.world_size, r.state, r.step) for r in ranks] == [(0, 2, "completed", 60), (1, 2, "completed", 60)]
    assert ranks[0].pid != ranks[1].pid and ranks[0].weights_digest == ranks[1].weights_digest is not None
    # Only rank 0 writes the curve: one row per logged step.
    logged = [p.step for p in store.metric_points(two.id) if p.loss is not None]
    assert logged == list(range(5, 61, 5))
    log = run_folder.log_path(two).read_text()
    assert "[rank0]:" in log and "[rank1]:" in log and "rank 1 of 2" in log
    shown = run_cli("show", str(two.id), settings=settings).stdout
    assert "launch    2 processes (ddp)" in shown and f"rank 1    machine 0 · {ranks[1].host} pid {ranks[1].pid}" in shown

    def exact_match(job):
        return job.final_metrics["evaluation"]["metrics"]["exact_match"]["tuned"]

    assert exact_match(one) >= 80
    assert exact_match(two) >= exact_match(one) - 10, (exact_match(two), exact_match(one))


def test_cancel_kill_and_resume_of_a_two_process_job_in_the_apps_runner(engine):
    config = JobConfig(
        name="ranks", dataset=str(SAMPLE), evaluation={"compare_base": False},
        training=dict(max_steps=300, batch_size=4, learning_rate=3e-3, save_steps=1000, logging_steps=1, eval_split=0),
        distributed={"num_processes": 2},
    )
    # 300 steps: on a quiet machine a step takes tens of milliseconds, and each stage below must catch the job mid-run.
    job = engine.submit(config)
    job = _poll_until(engine.runner, job.id, lambda j: j.stage == "training" and j.step >= 3, timeout=600)

    # Cancel: rank 0 reads it, every rank stops at the same step, and the checkpoint is saved.
    job = engine.cancel(job.id, wait=True)
    assert job.status == "cancelled", job.error
    stopped_at = int(run_folder.last_checkpoint(Path(job.output_dir)).name.split("-")[1])
    assert [(r.rank, r.state, r.step) for r in _ranks(job.id)] == [(0, "cancelled", stopped_at), (1, "cancelled", stopped_at)]
    assert (Path(job.output_dir) / f"checkpoint-{stopped_at}" / "rng_state_1.pth").exists()  # rank 1's part
    assert _left_behind(job) == []

    # A rank killed with SIGKILL fails the job, naming it, and takes the other rank down with it.
    engine.runner.resume(job.id)
    _poll_until(engine.runner, job.id, lambda j: j.step > stopped_at and len(_ranks(j.id)) == 2, timeout=600)
    victim = _ranks(job.id)[1]
    os.kill(victim.pid, signal.SIGKILL)
    job = engine.runner.wait(job.id)
    assert job.status == "failed"
    assert job.error.startswith(f"Rank 1 (machine 0, local rank 1, pid {victim.pid}) was killed by SIGKILL"), job.error
    assert "Last log lines of rank 1" in job.error
    assert JobRank.get(JobRank.job == job.id, JobRank.rank == 1).state == "failed"
    assert _left_behind(job) == []

    # The runner's kill (a cancel that timed out) stops the launcher's process group; the ranks die with it.
    engine.runner.resume(job.id)
    job = _poll_until(
        engine.runner, job.id, lambda j: [r.state for r in _ranks(j.id)] == ["training", "training"], timeout=600
    )
    engine.runner.kill(job, "was killed by the test")
    assert _left_behind(job) == []

    # Resume with one process: the DDP checkpoint loads into any number of ranks.
    engine.runner.resume(job.id, num_processes=1)
    job = engine.runner.wait(job.id)
    assert job.status == "completed", job.error
    assert job.step == 300 and "world_size" not in job.final_metrics
    assert f"resuming from {Path(job.output_dir) / f'checkpoint-{stopped_at}'}" in run_folder.log_path(job).read_text()
    steps = [p.step for p in store.metric_points(job.id) if p.loss is not None]
    assert steps[-1] == 300 and steps[:stopped_at] == list(range(1, stopped_at + 1))


def _config(**distributed_settings) -> JobConfig:
    return JobConfig(dataset=str(SAMPLE), distributed=distributed_settings)


@pytest.mark.parametrize(
    "overrides, gpus, expected",
    [
        ({"num_processes": 4}, 2, "distributed.num_processes: 4 processes need one GPU each and this machine has 2"),
        ({"num_processes": 2, "gpu_ids": [1, 2]}, 2, "distributed.gpu_ids: GPU 2 does not exist; this machine has GPUs 0-1"),
        ({"num_processes": 2, "strategy": "deepspeed-zero3"}, 0, "trains on NVIDIA GPUs and this machine has none"),
        ({"num_processes": 2, "strategy": "fsdp"}, 0, "fsdp shards the model across GPUs and this machine has none"),
        ({"num_processes": 2, "strategy": "fsdp"}, 2, None),
        ({"num_processes": 2}, 0, None),  # DDP of CPU processes (gloo)
        ({"strategy": "fsdp"}, 2, "distributed.strategy: fsdp shares the model between processes"),
        ({"num_machines": 2, "main_process_ip": "10.0.0.1"}, 0, "needs a database that every machine reaches"),
    ],
)
def test_what_the_machine_rules_out_is_one_clear_error(overrides, gpus, expected, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if "deepspeed" in overrides.get("strategy", ""):
        monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: object())  # as if installed
    config = _config(**overrides)
    if expected is None:
        distributed.check(config, gpus, None)
        return
    with pytest.raises(ConfigError, match=expected):
        distributed.check(config, gpus, None)


def test_qlora_and_int8_combinations_the_libraries_do_not_support_are_refused():
    with pytest.raises(ConfigError, match="distributed.strategy: 8-bit weights cannot be sharded by fsdp"):
        JobConfig.parse({"dataset": "d.jsonl", "quantization": "8bit", "distributed": {"num_processes": 2, "strategy": "fsdp"}})
    with pytest.raises(ConfigError, match="distributed.cpu_offload: a 4-bit .QLoRA. model sharded by FSDP"):
        JobConfig.parse({"dataset": "d.jsonl", "strategy": "qlora",
                         "distributed": {"num_processes": 2, "strategy": "fsdp", "cpu_offload": True}})
    with pytest.raises(ConfigError, match="distributed: the unsloth provider trains on one GPU"):
        JobConfig.parse({"dataset": "d.jsonl", "provider": "unsloth", "distributed": {"num_processes": 2}})


def test_a_missing_deepspeed_is_named_with_its_install_command(monkeypatch):
    monkeypatch.setattr(distributed.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UnavailableError, match="pip install deepspeed"):
        distributed.check(_config(num_processes=2, strategy="deepspeed-zero2"), 2, None)


def test_a_multi_machine_job_on_sqlite_is_refused_at_submit_and_join_says_why(engine, settings):
    with pytest.raises(ConfigError, match="SQLite file on this machine"):
        engine.submit(_config(num_machines=2, main_process_ip="127.0.0.1"))
    assert Job.select().count() == 0
    result = run_cli("join", "1", "--machine-rank", "1", settings=settings)
    assert result.returncode == 2 and "set DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_auto_processes_follow_the_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5")
    assert distributed.processes_per_machine(_config(num_processes="auto").distributed, 8) == 3
    assert distributed.processes_per_machine(_config(num_processes="auto", gpu_ids="0,1").distributed, 8) == 2
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert distributed.processes_per_machine(_config(num_processes="auto").distributed, 0) == 1
    assert distributed.describe_launch(_config(num_processes="auto"), 4) == "4 processes (ddp)"
    assert distributed.describe_launch(_config(num_machines=2, num_processes=8, main_process_ip="h", strategy="fsdp",
                                               cpu_offload=True)) == "2 machines × 8 processes (fsdp, CPU offload)"
    assert distributed.describe_launch(_config()) == "one process"


def test_gpu_ids_become_the_visible_devices_of_the_job(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    distributed.restrict_gpus(_config(gpu_ids="1").distributed)  # one process on GPU 1
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    distributed.restrict_gpus(_config(num_processes=2, gpu_ids=[2, 3]).distributed)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    distributed.restrict_gpus(_config().distributed)  # null: left as it is
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_the_deepspeed_configs_are_the_zero_stages_that_accelerate_reads():
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    zero3 = distributed.trainer_options(_config(num_processes=8, strategy="deepspeed-zero3", cpu_offload=True), False)
    parsed = HfDeepSpeedConfig(zero3["deepspeed"])
    assert parsed.is_zero3() and parsed.is_offload()
    assert parsed.get_value("zero_optimization.offload_param.device") == "cpu"
    assert parsed.get_value("zero_optimization.stage3_gather_16bit_weights_on_model_save") is True  # whole weights saved
    zero2 = HfDeepSpeedConfig(distributed.trainer_options(_config(num_processes=2, strategy="deepspeed-zero2"), False)["deepspeed"])
    assert zero2.is_zero2() and not zero2.is_offload()
    # The batch, accumulation, precision and clipping stay the job config's: the Trainer fills every "auto".
    assert {zero2.get_value(key) for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                                             "gradient_clipping", "bf16.enabled")} == {"auto"}
    assert distributed.trainer_options(_config(num_processes=2), True) == {"ddp_backend": "gloo"}
    assert distributed.trainer_options(_config(), True) == {}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_on_two_machines_over_loopback_shares_one_postgresql_job_store(engine, settings, tmp_path):
    from conftest import free_port

    config = JobConfig(
        name="two-machines", dataset=str(SAMPLE), evaluation={"compare_base": False},
        training=dict(max_steps=10, batch_size=4, learning_rate=3e-3, save_steps=1000, logging_steps=5, eval_split=0),
        distributed={"num_machines": 2, "main_process_ip": "127.0.0.1", "main_process_port": free_port()},
    )
    job = engine.submit(config)
    engine.runner.poll()  # machine 0 starts the job and its rank 0, which waits for machine 1
    assert store.get_job(job.id).status == "running"
    # Machine 1: its own data folder, the same database, the documented command.
    machine_1 = tmp_path / "machine-1"
    machine_1.mkdir()
    (machine_1 / "models").symlink_to(settings.models_dir.resolve(), target_is_directory=True)
    env = {**os.environ, "MODELFORGE_HOME": str(machine_1), "PYTHONPATH": str(ROOT), "DATABASE_URL": settings.database_url}
    joined = subprocess.run([sys.executable, "-m", "modelforge", "join", str(job.id), "--machine-rank", "1"],
                            capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert joined.returncode == 0, joined.stderr[-3000:]
    job = engine.runner.wait(job.id)
    assert job.status == "completed", job.error
    assert job.final_metrics["world_size"] == 2
    ranks = _ranks(job.id)
    assert [(r.rank, r.machine_rank, r.world_size, r.state, r.step) for r in ranks] == [
        (0, 0, 2, "completed", 10), (1, 1, 2, "completed", 10)]
    assert ranks[0].weights_digest == ranks[1].weights_digest
    assert "[rank1]:" in joined.stdout + joined.stderr  # machine 1's rank logs where it was joined
