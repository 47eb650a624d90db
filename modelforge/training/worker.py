"""The worker process: `python -m modelforge.training.worker JOB_ID` runs one job and records how it ended.

Its stdout and stderr are the job's log file (the runner opens it), never a pipe to a browser or a parent. A
distributed job's worker launches the job's ranks through torchrun (modelforge/training/launch.py), each of them this same
module run as one rank.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path

from modelforge import run_folder, store
from modelforge.config import JobConfig
from modelforge.distributed import restrict_gpus
from modelforge.db import CONNECTION_ERRORS, init_database, unreachable
from modelforge.errors import DatabaseError, JobCancelled, ModelForgeError
from modelforge.processes import EXIT_DATABASE_UNREACHABLE
from modelforge.settings import Settings
from modelforge.training import ranks
from modelforge.training.launch import run_ranks

DEFAULT_DATABASE_WAIT_SECONDS = 600.0

CPU_4BIT_HINT = (
    "4-bit training on this CPU needs every linear layer's output size to be a multiple of 32 "
    "(bitsandbytes repacks the weights in blocks); this model has one that is not. Use the sft strategy, or a GPU."
)
OUT_OF_MEMORY_HINT = (
    "Out of memory: lower training.batch_size or training.max_length, turn on gradient_checkpointing, "
    "or use the qlora strategy."
)


def main(argv: list[str]) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    job_id = int(argv[0])
    settings = Settings.from_env()
    try:
        init_database(settings)
        job = store.get_job(job_id)
    except DatabaseError as exc:
        logging.error("%s", exc)
        return EXIT_DATABASE_UNREACHABLE
    if job.status != "running":  # e.g. judged lost while this worker was starting: never train unrecorded
        logging.error("job %d is %s, not running: nothing to do", job_id, job.status)
        return 1
    if ranks.is_rank_process():
        ranks.die_with_launcher()
        logging.info("rank %d of %d (pid %d) starting job %d", ranks.rank(), ranks.world_size(), os.getpid(), job_id)
    else:
        store.update(job_id, worker_pid=os.getpid(), worker_host=socket.gethostname())
        logging.info("worker %d starting job %d (%s)", os.getpid(), job_id, job.name)
    try:
        if not ranks.is_rank_process() and JobConfig.from_json(job.config).distributed.is_distributed:
            return run_ranks(job, settings)
        restrict_gpus(JobConfig.from_json(job.config).distributed)
        if JobConfig.from_json(job.config).provider == "unsloth" and importlib.util.find_spec("unsloth"):
            import unsloth  # noqa: F401  it patches transformers, trl and peft: before anything imports them
        from modelforge.training.pipeline import run_job  # after unsloth: the pipeline imports transformers

        run_job(job, settings)
    except (DatabaseError, *CONNECTION_ERRORS) as exc:
        message = str(exc) if isinstance(exc, DatabaseError) else str(unreachable(exc))
        logging.error("%s", message)
        return _record_interrupted_when_reachable(job_id, message) if ranks.is_main() else EXIT_DATABASE_UNREACHABLE
    except JobCancelled as exc:
        if ranks.is_main():
            store.finish(job_id, "cancelled", error=str(exc))
        logging.info("%s", exc)
    except ModelForgeError as exc:
        logging.error("%s", exc)
        _fail(job_id, str(exc))
        return 1
    except MemoryError:
        logging.error("%s\n%s", OUT_OF_MEMORY_HINT, traceback.format_exc())
        _fail(job_id, OUT_OF_MEMORY_HINT)
        return 1
    except Exception as exc:  # the worker's top: record whatever went wrong
        logging.error("job failed:\n%s", traceback.format_exc())
        text = str(exc)
        if run_folder.is_disk_full(exc, Path(job.output_dir)):
            message = run_folder.disk_full_message(Path(job.output_dir))
        elif "out of memory" in text.lower():
            message = OUT_OF_MEMORY_HINT
        elif "divisible by block_n" in text:
            message = CPU_4BIT_HINT
        else:
            message = f"{type(exc).__name__}: {exc}"
        _fail(job_id, message)
        return 1
    return 0


def _record_interrupted_when_reachable(job_id: int, message: str) -> int:
    """Wait a while for the database to come back and record why the job stopped; the checkpoint is already saved."""
    deadline = time.monotonic() + float(os.environ.get("MODELFORGE_DATABASE_WAIT", DEFAULT_DATABASE_WAIT_SECONDS))
    while True:
        try:
            store.finish(job_id, "interrupted", error=message)
            logging.info("the database is back: job %d recorded as interrupted", job_id)
            return EXIT_DATABASE_UNREACHABLE
        except CONNECTION_ERRORS as exc:
            unreachable(exc)
            if time.monotonic() > deadline:
                logging.error("the database is still unreachable; the runner records the job when it can")
                return EXIT_DATABASE_UNREACHABLE
            time.sleep(1.0)


def _fail(job_id: int, message: str) -> None:
    """Record the job as failed. A rank records only its own failure: the launcher, which sees every rank end,
    names the one that caused it (the others' errors are usually their peers going away)."""
    if ranks.world_size() > 1:
        ranks.record(job_id, "failed", error=message)
    else:
        store.finish(job_id, "failed", error=message)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
