"""One job, start to finish, inside the worker process: load, prepare data, train, evaluate, save.

In a distributed job every rank runs all of it (the trainer and evaluation need each rank), and only rank 0 writes
the job's stage, metrics, files and result.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed

from modelforge import run_folder, store, trackers
from modelforge.config import SHARDING_STRATEGIES, JobConfig
from modelforge.db import Job
from modelforge.errors import DatabaseError, JobCancelled, JobError
from modelforge.loading import resolve_model_path
from modelforge.preflight import job_records, resolve_init_from, runnable_strategy
from modelforge.providers import PROVIDERS
from modelforge.runtime import Runtime, resolve_runtime
from modelforge.settings import Settings
from modelforge.training import evaluation, healing, ranks
from modelforge.training.progress import ProgressCallback

log = logging.getLogger(__name__)


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


def train_stage(stage, run: TrainingRun, progress) -> Any:
    """A stage before the strategy's last, trained to its end in its own folder of the job's (resumed from its last
    checkpoint there) and saved there; the job's step counter runs on from its steps. Returns its result."""
    folder = run.output_dir / stage.name
    progress.stage = stage.label.format(config=run.config)
    trainer = stage.build_trainer(replace(run, output_dir=folder))
    checkpoint = run_folder.last_checkpoint(folder) if folder.is_dir() else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if progress.cancelled:
        raise JobCancelled(
            f"Cancelled in {progress.stage} at step {trainer.state.global_step}; "
            f"resume continues from {run_folder.last_checkpoint(folder)}."
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
    note = healing.describe_change(config, retry, failed_step, run_folder.last_checkpoint(Path(job.output_dir)))
    log.warning("%s", note)
    store.update(job.id, config=retry.to_json(), resume=True, stage="retrying with half the batch")
    _run(store.get_job(job.id), settings, Attempt(notes=[note]))


def _run(job: Job, settings: Settings, attempt: Attempt) -> None:
    config = JobConfig.from_json(job.config)
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    main = ranks.is_main()
    checkpoint, set_aside = run_folder.resumable(output_dir, set_aside=main) if job.resume else (None, [])
    if set_aside and checkpoint is None:
        raise JobError(
            "No checkpoint to resume from is intact: " + "; ".join(set_aside) + ". Resume again to train from the start."
        )
    strategy = runnable_strategy(config, settings)
    trackers.check(config.trackers, settings)  # uninstalled since it was queued: refused before the model loads
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
    set_seed(config.training.seed)  # weights the checkpoint lacks (a new span head) start the same in every run
    if model_path != config.model and config.model:
        log.info("model: %s is loaded from its conversion %s", config.model, model_path)
    loaded = provider.load(config, runtime, model_path)
    _check_cancel(job.id)

    set_stage("preparing data")
    train_records, eval_records = job_records(config, strategy.fields(config.task))
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
        base_predictions = run_folder.load_base_predictions(output_dir) if job.resume else None
        if base_predictions is None:
            # Scored before training, on the model about to be trained (a fresh LoRA adapter changes nothing yet).
            set_stage("evaluating base model")
            base_predictions = evaluation.predict(trainer.model, loaded.tokenizer, config, eval_records)
            if main:
                run_folder.save_base_predictions(output_dir, base_predictions)
        _check_cancel(job.id)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    steps = progress.step_offset + trainer.state.global_step  # the job's steps: the earlier stages' count too
    if progress.database_lost:
        raise DatabaseError(
            f"{progress.database_lost} The job stopped at step {steps} with checkpoint "
            f"{run_folder.last_checkpoint(output_dir)}; resume continues from it."
        )
    # A cancel, or a loss gone bad (every rank saw the same all-reduced gradients and stopped at the same step).
    diagnosis = None if progress.cancelled else guard and guard.diagnosis
    if progress.cancelled or diagnosis:
        status = "failed" if diagnosis else "cancelled"
        ranks.record(job.id, status, step=steps)
        saved = run_folder.last_checkpoint(output_dir)
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
    (output_dir / run_folder.CONFIG_FILE).write_text(resolved.to_yaml(), encoding="utf-8")
    (output_dir / run_folder.METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    store.finish(job.id, "completed", metrics=metrics)
    log.info("completed: %s", json.dumps(metrics))
