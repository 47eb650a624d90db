"""The job runner: a persisted FIFO queue of jobs, each trained in its own supervised worker process.

Workers start in their own session and write to their own log file, so a job outlives the browser tab, the
web server or the CLI that started it. The runner that claims a job records itself as the job's supervisor in the
claim, starts the worker, reaps it and records how it died; no other runner judges that job while its supervisor
lives. Once the supervisor is gone, any runner on its machine adopts the job: it marks the job ended only when
the worker has vanished too. Every runner kills workers that ignore a cancel.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from modelforge import run_folder, store
from modelforge.config import JobConfig
from modelforge.db import CONNECTION_ERRORS, RESUMABLE_STATUSES, Job, unreachable, utcnow
from modelforge.errors import ConfigError, JobError
from modelforge.providers import PROVIDERS
from modelforge.settings import Settings
from modelforge.processes import EXIT_DATABASE_UNREACHABLE, WORKER_MODULE, spawn

log = logging.getLogger(__name__)

DEFAULT_CANCEL_GRACE_SECONDS = 120.0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"The worker process was killed by {_signal_name(-returncode)}"
    return f"The worker process exited with code {returncode} without recording a result"


def _start_time(pid: int) -> str | None:
    """When a live process started (clock ticks since boot), or None when it is gone or only a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def process_identity(pid: int) -> str:
    """host:pid:start-time: unlike a pid alone, it never names a later process that reuses the pid."""
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def supervisor_alive(identity: str | None) -> bool:
    if not identity:
        return False
    host, pid, started = identity.rsplit(":", 2)
    if host != socket.gethostname():
        return True  # a runner on another machine (shared database): not ours to judge
    return _start_time(int(pid)) == started


class JobRunner:
    def __init__(self, settings: Settings, max_concurrent: int = 1, cancel_grace: float | None = None):
        self.settings = settings
        self.max_concurrent = max_concurrent
        self.cancel_grace = cancel_grace if cancel_grace is not None else float(
            os.environ.get("MODELFORGE_CANCEL_GRACE", DEFAULT_CANCEL_GRACE_SECONDS)
        )
        self.identity = process_identity(os.getpid())
        self._workers: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- queueing ----------------------------------------------------------------------------------
    def submit(self, config: JobConfig) -> Job:
        """Queue a job. The config's dataset paths are made absolute so the worker finds them from anywhere."""
        sources = {"dataset": config.dataset, "eval_dataset": config.eval_dataset}
        local = {key: Path(value).expanduser() for key, value in sources.items() if value and Path(value).expanduser().exists()}
        config = config.model_copy(update={key: str(path.resolve()) for key, path in local.items()})
        output_dir = self._output_dir(config)
        output_dir.mkdir(parents=True, exist_ok=True)
        config = config.model_copy(update={"output_dir": str(output_dir)})
        return store.create_job(config.name, config.to_json(), str(output_dir))

    def _output_dir(self, config: JobConfig) -> Path:
        if config.output_dir:
            given = Path(config.output_dir).expanduser()
            if given.is_symlink():  # the run would write wherever the link points
                raise ConfigError(f"output_dir: {given} is a symbolic link; give a real folder.")
            chosen = given.resolve()
            if chosen.exists() and any(chosen.iterdir()):
                raise ConfigError(f"output_dir: {chosen} already holds files; choose another folder or empty it.")
            return chosen
        base = self.settings.runs_dir / config.name
        base.parent.mkdir(parents=True, exist_ok=True)
        candidate, suffix = base, 2
        while True:  # created here, so that two jobs of one name submitted at once never share a folder
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                candidate = base.with_name(f"{base.name}-{suffix}")
                suffix += 1

    def cancel(self, job_id: int) -> Job:
        """Queued jobs are cancelled at once; a running job stops at its next step and saves a checkpoint."""
        job = store.get_job(job_id)
        if job.status == "queued" and not store.finish_queued(job.id, "cancelled", "Cancelled before it started."):
            job = store.get_job(job_id)  # a runner claimed it meanwhile
        if job.status == "running":
            if job.cancel_requested_at is None:
                store.update(job.id, cancel_requested_at=utcnow())
        elif job.status != "queued":
            raise JobError(f"Job {job.id} is {job.status}; only queued or running jobs can be cancelled.")
        return store.get_job(job.id)

    def resume(self, job_id: int, num_processes: int | None = None) -> Job:
        """Queue a cancelled, interrupted or failed job again; it continues from its last checkpoint, with
        `num_processes` processes per machine if given (the checkpoint of a DDP job loads into any number)."""
        job = store.get_job(job_id)
        if job.status not in RESUMABLE_STATUSES:
            raise JobError(
                f"Job {job.id} is {job.status}; only {', '.join(RESUMABLE_STATUSES)} jobs can be resumed."
            )
        config = JobConfig.from_json(job.config)
        if num_processes is not None:
            config = config.with_overrides([f"distributed.num_processes={num_processes}"])
        store.update(
            job.id,
            config=config.to_json(),
            status="queued",
            stage="queued",
            resume=True,
            error=None,
            finished_at=None,
            cancel_requested_at=None,
            worker_pid=None,
            supervisor=None,
            eta_seconds=None,
            created_at=utcnow(),  # back of the queue
        )
        return store.get_job(job.id)

    # -- supervision -------------------------------------------------------------------------------
    def recover(self) -> list[int]:
        """Mark jobs left running by a runner that is gone, and whose worker died with it, as interrupted."""
        interrupted = []
        for job in store.running_jobs():
            if self._orphaned(job):
                tail = run_folder.log_tail(job)
                store.finish(
                    job.id,
                    "interrupted",
                    error="The job's worker was gone when ModelForge restarted; resume continues from the last "
                    "checkpoint." + (f"\nLast log lines:\n{tail}" if tail else ""),
                )
                interrupted.append(job.id)
        return interrupted

    def poll(self, up_to: int | None = None) -> None:
        """Reap finished workers, enforce cancel deadlines, and start queued jobs while slots are free.

        `up_to`: start only jobs queued no later than this one (the CLI waits for its own job only).
        """
        with self._lock:
            self._reap()
            self._enforce_cancellations()
            while self._start_next(up_to):
                pass

    def wait(self, job_id: int, on_update: Callable[[Job], None] | None = None, interval: float = 0.5) -> Job:
        """Run the queue up to this job and return it once it has finished."""
        outage = False
        while True:
            try:
                self.poll(up_to=job_id)
                job = store.get_job(job_id)
            except CONNECTION_ERRORS as exc:  # the worker saves a checkpoint and waits for it too
                if not outage:
                    log.warning("%s Waiting for it to come back (Ctrl-C to leave).", unreachable(exc))
                outage = True
                time.sleep(interval)
                continue
            outage = False
            if on_update:
                on_update(job)
            if job.is_finished:
                return job
            time.sleep(interval)

    def start(self, interval: float = 1.0) -> None:
        """Supervise in a background thread (the web app's runner)."""
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="modelforge-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except CONNECTION_ERRORS as exc:
                log.warning("runner poll skipped: %s", unreachable(exc))
            except Exception:  # the supervisor must outlive any one bad poll (e.g. a locked database)
                log.exception("runner poll failed")
            self._stop.wait(interval)

    def _start_next(self, up_to: int | None) -> bool:
        job = store.claim_next(self.identity, self.max_concurrent, up_to)
        if job is not None:
            self._spawn(job)
        return job is not None

    def _spawn(self, job: Job) -> None:
        log_file = run_folder.log_path(job)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        python = PROVIDERS[JobConfig.from_json(job.config).provider].worker_python(self.settings)
        try:
            with open(log_file, "ab") as log_handle:
                process = spawn(
                    WORKER_MODULE, str(job.id), python=python, env=self.settings.worker_env(),
                    stdin=subprocess.DEVNULL, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True,
                )
        except OSError as exc:
            store.finish(job.id, "failed", error=f"The worker process could not start ({python}): {exc}")
            return
        self._workers[job.id] = process
        store.update(job.id, worker_pid=process.pid, worker_host=socket.gethostname())
        log.info("job %d started in worker %d", job.id, process.pid)

    def _reap(self) -> None:
        for job_id, process in list(self._workers.items()):
            returncode = process.poll()
            if returncode is None:
                continue
            self._record_exit(job_id, returncode)
            del self._workers[job_id]  # only once recorded: a poll that cannot reach the database retries
        for job in store.running_jobs():
            if self._orphaned(job):
                # A worker this runner adopted (started by a runner that is gone) ended without a result.
                store.finish(job.id, "failed", error="The worker process ended without recording a result.\n" + run_folder.log_tail(job))

    def _record_exit(self, job_id: int, returncode: int) -> None:
        job = store.get_job(job_id)
        if job.status != "running":
            return  # the worker recorded its own ending
        if job.cancel_requested_at is not None:
            store.finish(job_id, "cancelled", error=f"{describe_exit(returncode)} while cancelling.")
            return
        tail = run_folder.log_tail(job)
        last_lines = f"\nLast log lines:\n{tail}" if tail else ""
        if returncode == EXIT_DATABASE_UNREACHABLE:
            store.finish(job_id, "interrupted", error="The worker stopped because the database was unreachable; "
                        "resume continues from the last checkpoint." + last_lines)
            return
        store.finish(job_id, "failed", error=describe_exit(returncode) + "." + last_lines)

    def _orphaned(self, job: Job) -> bool:
        """Whether a running job has lost its worker, judged only once the runner that started it is gone: until its
        claim is followed by a recorded worker pid, nobody else can know the worker exists."""
        if job.id in self._workers or supervisor_alive(job.supervisor):
            return False
        return not self._worker_alive(job)

    def _enforce_cancellations(self) -> None:
        for job in store.cancelling_jobs():
            waited = (utcnow() - job.cancel_requested_at).total_seconds()
            if waited > self.cancel_grace:
                self.kill(job, f"did not stop within {self.cancel_grace:.0f} s of the cancel request and was killed")

    def kill(self, job: Job, reason: str) -> None:
        if self._worker_alive(job):
            try:
                os.killpg(job.worker_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process = self._workers.pop(job.id, None)
        if process:
            process.wait()
        store.finish(job.id, "cancelled", error=f"The worker {reason}.")

    def _worker_alive(self, job: Job) -> bool:
        process = self._workers.get(job.id)
        if process is not None:
            return process.poll() is None
        if not job.worker_pid:
            return False
        if job.worker_host and job.worker_host != socket.gethostname():
            return True  # another machine's worker (shared database): not ours to judge
        try:
            cmdline = Path(f"/proc/{job.worker_pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # The pid may have been reused by an unrelated process since.
        return WORKER_MODULE.encode() in cmdline and str(job.id).encode() in cmdline
