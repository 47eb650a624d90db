"""One job, start to finish, inside the worker process: load, prepare data, train, evaluate, save.

In a distributed job every rank runs all of it (the trainer and evaluation need each rank), and only rank 0 writes
the job's stage, metrics, files and result.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from modelforge import checkpoints, data, evaluation, gguf, ranks, store
from modelforge.config import SHARDING_STRATEGIES, JobConfig
from modelforge.db import Job
from modelforge.demo_model import DEMO_MODEL_NAME
from modelforge.errors import ConfigError, DatabaseError, JobCancelled, JobError, UnavailableError
from modelforge.runtime import Runtime, resolve_runtime
from modelforge.settings import Settings

log = logging.getLogger(__name__)

CONFIG_FILE = "modelforge.yaml"
METRICS_FILE = "metrics.json"


@dataclass
class TrainingRun:
    """Everything a strategy needs to build its trainer."""

    config: JobConfig
    runtime: Runtime
    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_dataset: Any
    output_dir: Path
    callbacks: list = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)  # the results of the strategy's earlier stages, by name


def resolve_model_path(config: JobConfig, settings: Settings) -> str:
    """The folder or hub id the config's model loads from: a GGUF file's conversion, the demo model when empty."""
    if config.model:
        file = gguf.gguf_file(config.model)
        return str(gguf.ensure_converted(file, settings.models_dir)) if file else config.model
    from modelforge.demo_model import demo_kind, ensure_demo_model

    return str(ensure_demo_model(settings.models_dir, demo_kind(config.task)))


def resolve_init_from(config: JobConfig, settings: Settings) -> JobConfig:
    """The config with `init_from` resolved to the adapter's folder and, when `model` is empty, the adapter's base.

    ConfigError when it names a job that does not exist or has not completed, a folder without a causal-LM LoRA
    adapter, or an adapter trained on another base model than `model`. Reads files only: safe in the web process.
    """
    if config.init_from is None:
        return config
    value = config.init_from
    if value.isdigit():  # a job id; a folder named like a number is given as ./3
        job = store.find_job(int(value))
        if job is None:
            raise ConfigError(f"init_from: there is no job {value}; `python -m modelforge jobs` lists them.")
        if job.status != "completed":
            raise ConfigError(f"init_from: job {value} ({job.name}) is {job.status}; start from a completed job.")
        folder = Path(job.output_dir)
        if not (folder / "adapter_config.json").is_file():
            raise ConfigError(
                f"init_from: job {value} ({job.name}) trained the full model, not a LoRA adapter; "
                f"use its folder {folder} as model instead."
            )
    else:
        folder = Path(value).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"init_from: {value} is neither a job id nor a folder.")
        if not (folder / "adapter_config.json").is_file():
            raise ConfigError(
                f"init_from: {folder} holds no LoRA adapter (adapter_config.json); give the id or the folder of a "
                "finished LoRA job."
            )
    adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter.get("task_type") != "CAUSAL_LM":
        raise ConfigError(
            f"init_from: the adapter in {folder} is for {adapter.get('task_type')}, not a causal language model."
        )
    trained_on = adapter.get("base_model_name_or_path") or ""
    if config.model is not None and not _same_model(config.model, trained_on):
        raise ConfigError(
            f"init_from: the adapter in {folder} was trained on {trained_on or 'an unrecorded base model'}, "
            f"not on {config.model}; set model to its base model, or leave model empty to use it."
        )
    # An empty model means the adapter's own base; the demo model stays the empty default.
    is_demo = not trained_on or _same_model(trained_on, str(settings.models_dir / DEMO_MODEL_NAME))
    model = config.model or (None if is_demo else trained_on)
    return config.model_copy(update={"init_from": str(folder), "model": model})


def _same_model(a: str, b: str) -> bool:
    """Whether two model references name the same model: the same folder, or the same hub id."""
    local_a, local_b = Path(a).expanduser(), Path(b).expanduser()
    if local_a.exists() and local_b.exists():
        return local_a.resolve() == local_b.resolve()
    return a == b


def resolve_dataset_source(source: str) -> str:
    """A saved dataset's name stands for its stored file; anything else is a path or a hub id."""
    record = store.dataset_record(source)
    return record.path if record else source


def split_records(records: list[dict], eval_split: float, seed: int) -> tuple[list[dict], list[dict]]:
    if eval_split <= 0 or len(records) < 10:
        return records, []
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    held_out = max(1, round(len(shuffled) * eval_split))
    return shuffled[held_out:], shuffled[:held_out]


def last_checkpoint(output_dir: Path) -> Path | None:
    return next(iter(checkpoints.newest_first(output_dir)), None)


def runnable_strategy(config: JobConfig):
    """The config's strategy, once it is known to run here with the config's task and provider."""
    from modelforge.providers import PROVIDERS
    from modelforge.strategies import STRATEGIES

    strategy = STRATEGIES[config.strategy]
    if config.task not in strategy.tasks:
        raise ConfigError(f"task: strategy {config.strategy} supports {', '.join(strategy.tasks)}, not {config.task}")
    if strategy.quantization and config.lora is None:
        raise ConfigError(f"lora: strategy {config.strategy} trains LoRA adapters on a quantized model; it cannot be null")
    reason = PROVIDERS[config.provider].supports(config)
    if reason:
        raise ConfigError(f"provider: {config.provider} cannot train this: {reason}")
    availability = PROVIDERS[config.provider].availability()
    if not availability.available:
        raise UnavailableError(f"provider: {config.provider} is unavailable: {availability.reason}")
    return strategy


def train_stage(stage, run: TrainingRun, progress) -> Any:
    """A stage before the strategy's last, trained to its end in its own folder of the job's (resumed from its last
    checkpoint there) and saved there; the job's step counter runs on from its steps. Returns its result."""
    folder = run.output_dir / stage.name
    progress.stage = stage.label.format(config=run.config)
    trainer = stage.build_trainer(replace(run, output_dir=folder))
    checkpoint = last_checkpoint(folder) if folder.is_dir() else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if progress.cancelled:
        raise JobCancelled(
            f"Cancelled in {progress.stage} at step {trainer.state.global_step}; "
            f"resume continues from {last_checkpoint(folder)}."
        )
    if progress.database_lost:
        raise progress.database_lost
    trainer.save_model(str(folder))
    progress.step_offset += trainer.state.global_step
    return stage.result(trainer, run) if stage.result else trainer.model


def _check_cancel(job_id: int) -> None:
    if ranks.agree(ranks.is_main() and store.cancel_requested(job_id)):
        raise JobCancelled("Cancelled before training started.")


@dataclass
class Attempt:
    """One try at a job: its trainer once built (the step an error stopped at), and what healing changed."""

    trainer: Any = None
    notes: list[str] = field(default_factory=list)


def run_job(job: Job, settings: Settings) -> None:
    """Run a job; out of memory, it retries once with half the batch and twice the gradient accumulation from its last
    checkpoint (training.retry_out_of_memory), recording the change in the stored config, the log and the metrics."""
    from modelforge import healing

    attempt = Attempt()
    try:
        return _run(job, settings, attempt)
    except Exception as exc:
        config = JobConfig.from_json(job.config)
        # Not for a job of several ranks: one rank cannot change the batch alone.
        retry = healing.halved_batch(config) if healing.is_out_of_memory(exc) and ranks.world_size() == 1 else None
        if retry is None:
            raise
        log.warning("out of memory: %s", exc)
        failed_step = attempt.trainer.state.global_step + 1 if attempt.trainer else 0
        attempt.trainer = None
    # Outside the except block, so that the failed try's frames, and the model and trainer they hold, can be freed.
    healing.free_memory()
    note = healing.describe_change(config, retry, failed_step, last_checkpoint(Path(job.output_dir)))
    log.warning("%s", note)
    store.update(job.id, config=retry.to_json(), resume=True, stage="retrying with half the batch")
    _run(store.get_job(job.id), settings, Attempt(notes=[note]))


def _run(job: Job, settings: Settings, attempt: Attempt) -> None:
    from datasets import Dataset

    from modelforge import healing

    from modelforge.progress import ProgressCallback
    from modelforge.providers import PROVIDERS

    config = JobConfig.from_json(job.config)
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    main = ranks.is_main()
    checkpoint, set_aside = checkpoints.resumable(output_dir, set_aside=main) if job.resume else (None, [])
    if set_aside and checkpoint is None:
        raise JobError(
            "No checkpoint to resume from is intact: " + "; ".join(set_aside) + ". Resume again to train from the start."
        )
    strategy = runnable_strategy(config)
    config = resolve_init_from(config, settings)
    provider = PROVIDERS[config.provider]

    def set_stage(stage: str) -> None:
        if main:
            store.set_stage(job.id, stage)

    set_stage("loading model")
    runtime = resolve_runtime(config)
    ranks.start(runtime.use_cpu)
    ranks.record(job.id, "starting", device=runtime.device_label)
    log.info(
        "runtime: device=%s precision=%s gradient_checkpointing=%s", runtime.device, runtime.precision,
        runtime.gradient_checkpointing,
    )
    if strategy.quantization:
        config = config.model_copy(update={"quantization": strategy.quantization})
    model_path = resolve_model_path(config, settings)
    from transformers import set_seed

    set_seed(config.training.seed)  # weights the checkpoint lacks (a new span head) start the same in every run
    if model_path != config.model and config.model:
        log.info("model: %s is loaded from its conversion %s", config.model, model_path)
    loaded = provider.load(config, runtime, model_path)
    _check_cancel(job.id)

    set_stage("preparing data")
    def read(source: str) -> list[dict]:
        return data.load_records(
            resolve_dataset_source(source), config.task, config.columns or None, strategy.fields(config.task)
        )

    if config.eval_dataset:
        train_records, eval_records = read(config.dataset), read(config.eval_dataset)
    else:
        train_records, eval_records = split_records(read(config.dataset), config.training.eval_split, config.training.seed)
    log.info("data: %d training rows, %d held out", len(train_records), len(eval_records))
    def to_dataset(rows: list[dict]):
        return Dataset.from_list(strategy.prepare_rows(rows, config.task, loaded.tokenizer))

    train_dataset = to_dataset(train_records)
    eval_dataset = to_dataset(eval_records) if eval_records else None
    _check_cancel(job.id)

    progress = ProgressCallback(job.id)
    guard = healing.LossGuard(config, runtime.precision) if config.training.stop_on_bad_loss else None
    callbacks = [progress, *(callback for callback in (guard, healing.MemoryLimitFault.from_env()) if callback)]
    run = TrainingRun(
        config=config,
        runtime=runtime,
        model=loaded.model,
        tokenizer=loaded.tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        output_dir=output_dir,
        callbacks=callbacks,
    )
    for stage in strategy.stages[:-1]:
        run.results[stage.name] = train_stage(stage, run, progress)
    final = strategy.stages[-1]
    progress.stage = final.label.format(config=config)
    trainer = final.build_trainer(run)
    attempt.trainer = trainer
    base_predictions = None
    if eval_records and config.evaluation.compare_base:
        base_predictions = evaluation.load_base_predictions(output_dir) if job.resume else None
        if base_predictions is None:
            # Scored before training, on the model about to be trained (a fresh LoRA adapter changes nothing yet).
            set_stage("evaluating base model")
            base_predictions = evaluation.predict(trainer.model, loaded.tokenizer, config, eval_records)
            if main:
                evaluation.save_base_predictions(output_dir, base_predictions)
        _check_cancel(job.id)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    steps = progress.step_offset + trainer.state.global_step  # the job's steps: the earlier stages' count too
    if progress.database_lost:
        raise DatabaseError(
            f"{progress.database_lost} The job stopped at step {steps} with checkpoint {last_checkpoint(output_dir)}; "
            "resume continues from it."
        )
    # A cancel, or a loss gone bad (every rank saw the same all-reduced gradients and stopped at the same step).
    diagnosis = None if progress.cancelled else guard and guard.diagnosis
    if progress.cancelled or diagnosis:
        status = "failed" if diagnosis else "cancelled"
        ranks.record(job.id, status, step=steps)
        saved = last_checkpoint(output_dir)
        if main:
            reason = f"{diagnosis} Checkpoint: {saved}." if diagnosis else f"Cancelled at step {steps}; checkpoint {saved}."
            store.finish(job.id, status, error=reason)
        log.info("%s at step %d: %s", status, steps, diagnosis or "the user cancelled")
        return

    metrics = {
        "train_loss": result.training_loss,
        "train_runtime": result.metrics["train_runtime"],
        "steps": steps,
        "tokens": trainer.state.num_input_tokens_seen,
    }
    metrics["tokens_per_second"] = metrics["tokens"] / max(metrics["train_runtime"], 1e-9)
    metrics["hardware"] = runtime.describe()
    if ranks.world_size() > 1:  # as the trainer ran it, not as configured
        metrics["world_size"] = trainer.accelerator.num_processes  # the process group's, not the launcher's count
        metrics["strategy"] = (
            "fsdp" if trainer.is_fsdp_enabled else "deepspeed" if trainer.is_deepspeed_enabled else "ddp"
        )
    if set_aside:
        metrics["resumed_from"] = checkpoint.name
        metrics["checkpoints_set_aside"] = set_aside
    if attempt.notes:
        metrics["healing"] = attempt.notes
    if eval_records:
        set_stage("evaluating")
        if eval_dataset is not None:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
            if main:
                store.record_metrics(job.id, step=steps, eval_loss=metrics["eval_loss"])
        tuned_predictions = evaluation.predict(trainer.model, loaded.tokenizer, config, eval_records)
        reward = next((run.results[stage.name] for stage in strategy.stages if stage.scorer), None)
        metrics["evaluation"] = evaluation.compare(config, eval_records, tuned_predictions, base_predictions, reward)

    set_stage("saving")
    trainer.save_model(str(output_dir))  # every rank: a sharded model is gathered to be saved
    replicated = ranks.world_size() > 1 and config.distributed.strategy not in SHARDING_STRATEGIES
    digest = ranks.weights_digest(trainer.model) if replicated else None
    ranks.record(job.id, "completed", step=steps, weights_digest=digest)
    if not main:
        return
    loaded.tokenizer.save_pretrained(str(output_dir))
    resolved = config.model_copy(deep=True)
    resolved.output_dir = str(output_dir)
    resolved.training.precision = runtime.precision
    resolved.training.gradient_checkpointing = runtime.gradient_checkpointing
    (output_dir / CONFIG_FILE).write_text(resolved.to_yaml(), encoding="utf-8")
    (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    store.finish(job.id, "completed", metrics=metrics)
    log.info("completed: %s", json.dumps(metrics))
