"""The worker process: `python -m modelforge.worker JOB_ID` runs one job and records how it ended.

Its stdout and stderr are the job's log file (the runner opens it), never a pipe to a browser or a parent.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import sys
import traceback

from modelforge import jobs
from modelforge.config import JobConfig
from modelforge.db import init_database
from modelforge.errors import JobCancelled, ModelForgeError
from modelforge.settings import Settings

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
    init_database(settings)
    job = jobs.get_job(job_id)
    jobs.update(job_id, worker_pid=os.getpid(), worker_host=socket.gethostname())
    logging.info("worker %d starting job %d (%s)", os.getpid(), job_id, job.name)
    try:
        if JobConfig.from_json(job.config).provider == "unsloth" and importlib.util.find_spec("unsloth"):
            import unsloth  # noqa: F401  it patches transformers, trl and peft: before anything imports them
        from modelforge.training import run_job

        run_job(job, settings)
    except JobCancelled as exc:
        jobs.finish(job_id, "cancelled", error=str(exc))
        logging.info("%s", exc)
    except ModelForgeError as exc:
        logging.error("%s", exc)
        jobs.finish(job_id, "failed", error=str(exc))
        return 1
    except MemoryError:
        logging.error("%s\n%s", OUT_OF_MEMORY_HINT, traceback.format_exc())
        jobs.finish(job_id, "failed", error=OUT_OF_MEMORY_HINT)
        return 1
    except Exception as exc:  # the worker's top: record whatever went wrong
        logging.error("job failed:\n%s", traceback.format_exc())
        text = str(exc)
        if "out of memory" in text.lower():
            message = OUT_OF_MEMORY_HINT
        elif "divisible by block_n" in text:
            message = CPU_4BIT_HINT
        else:
            message = f"{type(exc).__name__}: {exc}"
        jobs.finish(job_id, "failed", error=message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
