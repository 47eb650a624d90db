"""Starts the ranks of a distributed job on this machine through torchrun, and records a rank that dies.

The worker process of a distributed job (and `python -m modelforge join` on each other machine) runs torchrun's own
launcher in-process: it starts one `python -m modelforge.training.worker JOB` per process, meets the other machines, and
stops every rank when one fails. torchrun reports which rank failed and how; this module writes that to the job with
the rank's last log lines. Every rank's output also goes to the job's log, each line prefixed with `[rankN]:`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from modelforge import distributed, hardware, run_folder, store
from modelforge.config import JobConfig
from modelforge.db import Job
from modelforge.errors import ConfigError, JobError
from modelforge.processes import WORKER_MODULE
from modelforge.settings import Settings

log = logging.getLogger(__name__)

FINAL_RANK_STATES = ("completed", "cancelled", "failed")


def torchrun_args(config: JobConfig, job_id: int, machine_rank: int, processes: int, log_dir: Path) -> list[str]:
    """torchrun's command line for this machine's ranks of the job."""
    settings = config.distributed
    args = ["--nproc-per-node", str(processes), "--max-restarts", "0", "--tee", "3", "--log-dir", str(log_dir)]
    if settings.num_machines == 1:
        args.append("--standalone")
    else:  # accelerate's names map onto torchrun's static rendezvous
        args += [
            "--nnodes", str(settings.num_machines),
            "--node-rank", str(machine_rank),
            "--master-addr", str(settings.main_process_ip),
            "--master-port", str(settings.main_process_port),
        ]
    return [*args, "-m", WORKER_MODULE, str(job_id)]


def run_ranks(job: Job, settings: Settings, machine_rank: int = 0) -> int:
    """Run this machine's ranks of `job` to their end; 0 when they all ended normally (completed or cancelled)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    config = JobConfig.from_json(job.config)
    gpu_count = len(hardware.detect(settings.home).gpus)
    distributed.check(config, gpu_count, settings.database_url)
    distributed.restrict_gpus(config.distributed)
    processes = distributed.processes_per_machine(config.distributed, gpu_count)
    os.environ["MODELFORGE_LAUNCHER_PID"] = str(os.getpid())
    os.environ["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = "[rank${rank}]:"
    if machine_rank == 0:
        store.clear_ranks(job.id)  # the rows of an earlier attempt
        machines = config.distributed.num_machines
        store.set_stage(job.id, "starting ranks" if machines == 1 else f"waiting for {machines - 1} machine(s) to join")
    log_dir = Path(job.output_dir) / run_folder.RANK_LOGS_DIR / f"machine-{machine_rank}"
    log_dir.mkdir(parents=True, exist_ok=True)
    launch = distributed.describe_launch(config, gpu_count)
    log.info("machine %d starts %d of the job's ranks (%s)", machine_rank, processes, launch)
    try:
        run(parse_args(torchrun_args(config, job.id, machine_rank, processes, log_dir)))
    except ChildFailedError as exc:
        rank, failure = _cause(job.id, exc)
        row = store.rank_row(job.id, rank)
        if failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}"
        else:
            how = f"failed: {row.error}" if row and row.error else f"exited with code {failure.exitcode}"
        tail = rank_log_tail(log_dir, failure.local_rank)
        error = (
            f"Rank {rank} (machine {machine_rank}, local rank {failure.local_rank}, pid {failure.pid}) {how}\n"
            "The job's other ranks were stopped." + (f"\nLast log lines of rank {rank}:\n{tail}" if tail else "")
        )
        log.error("%s", error)
        store.set_rank_state(job.id, rank, "failed")
        if store.get_job(job.id).status == "running":  # another machine's launcher may have recorded it first
            store.finish(job.id, "failed", error=error)
        return 1
    finally:
        store.stop_machine_ranks(job.id, machine_rank, FINAL_RANK_STATES)
    return 0


def _cause(job_id: int, exc):
    """The failed rank that brought the others down: one killed by a signal (torchrun stops the rest with SIGTERM),
    else the first to record an error of its own, else the first torchrun saw end."""
    failures = exc.failures
    killed = {
        rank: failure for rank, failure in failures.items() if failure.exitcode < 0 and failure.exitcode != -signal.SIGTERM
    }
    if killed:
        return min(killed.items(), key=lambda item: item[1].timestamp)
    first_error = store.first_rank_error(job_id, list(failures))
    if first_error is not None:
        return first_error.rank, failures[first_error.rank]
    return exc.get_first_failure()


def rank_log_tail(log_dir: Path, local_rank: int, lines: int = 20) -> str:
    """The last lines a rank wrote (torchrun keeps each rank's output under log_dir/<run>/attempt_0/<local rank>/)."""
    files = sorted(log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"), key=lambda path: path.stat().st_mtime)
    if not files:
        return ""
    text = files[-1].read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def join(job_id: int, settings: Settings, machine_rank: int, wait_seconds: float = 600.0) -> int:
    """Run machine `machine_rank`'s ranks of a job started on machine 0 (`python -m modelforge join JOB
    --machine-rank N`), once machine 0 has started it; 0 when this machine's ranks ended normally."""
    if not distributed.shared_database(settings.database_url):
        raise ConfigError(
            "join reads the job from the database machine 0 uses, and this machine has only its own SQLite file: "
            "set DATABASE_URL to the same postgresql://... URL as machine 0."
        )
    job = store.get_job(job_id)
    machines = JobConfig.from_json(job.config).distributed.num_machines
    if not 0 < machine_rank < machines:
        which = f"1 to {machines - 1}" if machines > 1 else "none: it runs on one machine"
        raise ConfigError(
            f"--machine-rank {machine_rank}: job {job.id} runs on {machines} machines; the others are {which}."
        )
    deadline = time.monotonic() + wait_seconds
    while job.status == "queued" and time.monotonic() < deadline:
        log.info("job %d is queued on machine 0; waiting for it to start", job.id)
        time.sleep(2)
        job = store.get_job(job_id)
    if job.status != "running":
        raise JobError(f"Job {job.id} is {job.status}; machines join a job while machine 0 runs it.")
    return run_ranks(job, settings, machine_rank)
