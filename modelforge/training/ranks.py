"""Inside one rank of a job: which rank this is, agreeing with the others, and the rank's own row in the job store.

torchrun gives every rank RANK, LOCAL_RANK and WORLD_SIZE; a job of one process has none and is rank 0 of 1, so
the pipeline reads the same either way. Rank 0 alone writes the job's progress, metrics and results; every rank
writes its own JobRank row (machine, state, step), which is how the UI shows a job spread over machines.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import socket

from modelforge import store
from modelforge.db import utcnow

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main() -> bool:
    return rank() == 0


def is_rank_process() -> bool:
    """Whether torchrun started this process as one rank of a job."""
    return "LOCAL_RANK" in os.environ and "TORCHELASTIC_RUN_ID" in os.environ


def die_with_launcher() -> None:
    """Be killed when the launcher dies. torchrun starts each rank in its own session, so a kill of the launcher's
    process group (the runner's way to stop a job) would not reach the ranks otherwise."""
    launcher = int(os.environ.get("MODELFORGE_LAUNCHER_PID", 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if launcher and os.getppid() != launcher:  # it died before the line above
        os._exit(1)


def start(use_cpu: bool) -> None:
    """Join the ranks' process group (gloo on CPU, NCCL on GPUs), as the Trainer would later, so that the steps
    before training can already agree."""
    if world_size() == 1:
        return
    from accelerate import PartialState

    PartialState(cpu=use_cpu)


def agree(flag: bool) -> bool:
    """Rank 0's flag, on every rank: all ranks take the same branch (stop, or go on) at the same step."""
    if world_size() == 1:
        return flag
    import torch
    from accelerate import PartialState

    value = torch.tensor([int(flag)], device=PartialState().device)
    torch.distributed.broadcast(value, src=0)
    return bool(value.item())


def record(job_id: int, state: str, **fields) -> None:
    """This rank's row: created when it starts (replacing one of an earlier attempt), updated as its state changes."""
    if world_size() == 1:
        return
    values = dict(state=state, updated_at=utcnow(), **fields)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    placement = dict(machine_rank=int(os.environ.get("GROUP_RANK", rank() // local_world)), world_size=world_size(),
                     host=socket.gethostname(), device="cpu")
    store.record_rank(job_id, rank(), os.getpid(), values, placement)


def weights_digest(model) -> str:
    """sha256 of the trainable weights (the adapter, for LoRA): every rank of a DDP job ends with the same one."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        if parameter.requires_grad:
            digest.update(name.encode())
            digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
