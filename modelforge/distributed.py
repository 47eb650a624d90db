"""A distributed job: how many ranks it has, what is checked before it is queued, and the trainer arguments of its
strategy (DDP, FSDP, DeepSpeed ZeRO). Light to import: the web process runs these checks.

torchrun starts the ranks (modelforge/training/launch.py); each rank is a worker running the same pipeline, and only rank 0
writes the job's progress and results (modelforge/training/ranks.py).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from modelforge.config import DistributedConfig, JobConfig
from modelforge.errors import ConfigError, UnavailableError

DEEPSPEED_STAGES = {"deepspeed-zero2": 2, "deepspeed-zero3": 3}


def shared_database(database_url: str | None) -> bool:
    """Whether other machines can reach this job store: a server (PostgreSQL), not a SQLite file."""
    return bool(database_url) and not database_url.startswith("sqlite")


def visible_gpus(gpu_count: int) -> int:
    """GPUs this process may use: NVML counts them all, CUDA_VISIBLE_DEVICES may narrow them."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpu_count
    return len([part for part in visible.split(",") if part.strip() and part.strip() != "-1"])


def restrict_gpus(distributed: DistributedConfig) -> None:
    """gpu_ids as CUDA_VISIBLE_DEVICES for this process and the ranks it starts (before anything initialises CUDA)."""
    if distributed.gpu_ids is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in distributed.gpu_ids)


def processes_per_machine(distributed: DistributedConfig, gpu_count: int) -> int:
    """`auto` is one process per usable GPU (one on a CPU-only machine)."""
    if distributed.num_processes != "auto":
        return distributed.num_processes
    return len(distributed.gpu_ids) if distributed.gpu_ids else max(visible_gpus(gpu_count), 1)


def world_size(distributed: DistributedConfig, gpu_count: int) -> int:
    return processes_per_machine(distributed, gpu_count) * distributed.num_machines


def strategy_name(distributed: DistributedConfig) -> str:
    return "ddp" if distributed.strategy == "auto" else distributed.strategy


def describe_launch(config: JobConfig, gpu_count: int | None = None) -> str:
    """How a job is launched, in words: 'one process', or e.g. '2 machines × 4 processes (fsdp)'."""
    distributed = config.distributed
    if not distributed.is_distributed:
        return "one process"
    per_machine = distributed.num_processes if gpu_count is None else processes_per_machine(distributed, gpu_count)
    processes = f"{per_machine} process" + ("" if per_machine == 1 else "es")
    machines = f"{distributed.num_machines} machines × " if distributed.num_machines > 1 else ""
    offload = ", CPU offload" if distributed.cpu_offload else ""
    return f"{machines}{processes} ({strategy_name(distributed)}{offload})"


def check(config: JobConfig, gpu_count: int, database_url: str | None) -> None:
    """What the machine (its GPUs, the database, the installed engines) rules out, as one clear error.

    `gpu_count`: the GPUs NVML sees here; `database_url`: the job store's (None: the SQLite file).
    """
    distributed = config.distributed
    gpus = visible_gpus(gpu_count)
    strategy = strategy_name(distributed)
    if distributed.num_machines > 1 and not shared_database(database_url):
        raise ConfigError(
            f"distributed.num_machines: a job on {distributed.num_machines} machines needs a database that every "
            "machine reaches, and this one is a SQLite file on this machine. Start the app and `join` on every "
            "machine with the same DATABASE_URL=postgresql://user:password@host/modelforge."
        )
    if distributed.gpu_ids is not None:
        missing = [index for index in distributed.gpu_ids if index >= gpus]
        if missing:
            seen = f"GPUs 0-{gpus - 1}" if gpus else "no GPU"
            raise ConfigError(f"distributed.gpu_ids: GPU {missing[0]} does not exist; this machine has {seen}.")
    processes = processes_per_machine(distributed, gpu_count)
    if gpus and processes > gpus:
        raise ConfigError(
            f"distributed.num_processes: {processes} processes need one GPU each and this machine has {gpus}; "
            f"use at most {gpus}, or num_processes: auto."
        )
    if strategy in DEEPSPEED_STAGES:
        if importlib.util.find_spec("deepspeed") is None:
            raise UnavailableError(f"distributed.strategy: {strategy} needs DeepSpeed: pip install deepspeed")
        if not gpus:
            raise ConfigError(
                f"distributed.strategy: {strategy} trains on NVIDIA GPUs and this machine has none; use ddp or fsdp."
            )
    if strategy == "fsdp" and not gpus:
        # accelerate (1.16) enables FSDP for GPU process groups only: on CPU it would silently train as DDP.
        raise ConfigError(
            "distributed.strategy: fsdp shards the model across GPUs and this machine has none (accelerate runs "
            "CPU processes as DDP only); use ddp."
        )
    if not distributed.is_distributed and strategy != "ddp":
        raise ConfigError(
            f"distributed.strategy: {strategy} shares the model between processes; set distributed.num_processes "
            "above 1 (or num_machines), or leave strategy auto."
        )


def trainer_options(config: JobConfig, use_cpu: bool) -> dict[str, Any]:
    """TrainingArguments keywords for the job's strategy: nothing for one process or DDP (the Trainer wraps the
    model in DDP itself under torchrun), FSDP's or a DeepSpeed config otherwise."""
    distributed = config.distributed
    strategy = strategy_name(distributed)
    if not distributed.is_distributed:
        return {}
    options: dict[str, Any] = {"ddp_backend": "gloo"} if use_cpu else {}
    if strategy == "fsdp":
        # FSDP2 (per-parameter sharding, so a LoRA layer may mix frozen and trainable weights), one unit per decoder
        # layer (the model's _no_split_modules), whole weights gathered to save.
        options["fsdp"] = True
        options["fsdp_config"] = {
            "version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
            "cpu_offload": distributed.cpu_offload, "state_dict_type": "FULL_STATE_DICT",
        }
    elif strategy in DEEPSPEED_STAGES:
        options["deepspeed"] = deepspeed_config(DEEPSPEED_STAGES[strategy], distributed.cpu_offload)
    return options


def deepspeed_config(stage: int, cpu_offload: bool) -> dict[str, Any]:
    """A ZeRO config whose batch sizes, precision and clipping the Trainer fills in from its own arguments ("auto"),
    so the job config stays the one place they are set."""
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes whole weights, not shards
    return {
        "zero_optimization": zero,
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }
