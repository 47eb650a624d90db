"""The engine: one per process, the single entry point the CLI and every UI tab call.

It stays light to import (no torch, transformers or trl): training happens in worker processes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelforge import data, dataset_store, demo_model, distributed, export, fit, gguf, hardware, hub, jobs, label_mask
from modelforge.accounts import LOCAL, Account, SignIn
from modelforge.config import DistributedConfig, JobConfig, preset_overrides
from modelforge.db import DatasetRecord, Job, JobRank, database, init_database
from modelforge.demo_model import DEMO_MODELS, demo_kind
from modelforge.errors import DatasetError, JobError
from modelforge.inference import ModelHost
from modelforge.providers import PROVIDERS
from modelforge.runner import JobRunner
from modelforge.settings import ASSETS_DIR, Settings
from modelforge.strategies import STRATEGIES
from modelforge.tasks import DEFAULT_TASK, PREFERENCE_FIELDS
from modelforge.training import resolve_dataset_source, resolve_init_from, runnable_strategy

SAMPLES_DIR = ASSETS_DIR / "samples"


@dataclass
class Engine:
    settings: Settings
    runner: JobRunner
    model_host: ModelHost = field(default_factory=ModelHost)  # the playground's one loaded model, shared by all users
    demo_build: subprocess.Popen | None = None  # the web app's background build of the demo model
    # How users sign in; None: no sign-in, one local user who sees and controls everything (the CLI's case).
    sign_in: SignIn | None = None

    @classmethod
    def from_env(cls, max_concurrent: int = 1) -> "Engine":
        return cls.create(Settings.from_env(), max_concurrent)

    @classmethod
    def create(cls, settings: Settings, max_concurrent: int = 1) -> "Engine":
        settings.ensure_dirs()
        init_database(settings)
        runner = JobRunner(settings, max_concurrent=max_concurrent)
        runner.recover()
        return cls(settings=settings, runner=runner)

    def check(self, config: JobConfig) -> None:
        """Everything that can be known to be wrong before a worker starts, as one clear error."""
        strategy = runnable_strategy(config)
        resolve_init_from(config, self.settings)
        if config.model:
            gguf.gguf_file(config.model)  # a missing GGUF file, or a folder of several, is refused here
        if config.distributed != DistributedConfig():
            gpu_count = len(hardware.detect(self.settings.home).gpus)
            distributed.check(config, gpu_count, self.settings.database_url)
        for key, value in (("dataset", config.dataset), ("eval_dataset", config.eval_dataset)):
            source = resolve_dataset_source(value) if value else None
            if source is None or data.is_hub_id(source):
                continue  # a hub dataset is validated by the worker once downloaded
            report = data.validate(source, config.task, config.columns or None, strategy.fields(config.task))
            if not report.ok:
                raise DatasetError(report.summary() if key == "dataset" else f"eval_dataset: {report.summary()}")
            if key == "dataset":
                label_mask.check_job(config, report.records, self.settings)

    def submit(self, config: JobConfig, account: Account = LOCAL) -> Job:
        for value in (config.dataset, config.eval_dataset):
            record = DatasetRecord.get_or_none(DatasetRecord.name == value) if value else None
            if record is not None and not account.may_control(record.owner):
                raise DatasetError(f"The saved dataset {value!r} belongs to another user: save your own copy of it.")
        self.check(config)
        job = self.runner.submit(config)
        if account.name is not None:
            jobs.update(job.id, owner=account.name)
            job.owner = account.name
        return job

    def job_for(self, account: Account, job_id: int) -> Job:
        """The job, when `account` may see and control it; a clear refusal otherwise (checked here, for every caller,
        not only hidden in the UI)."""
        job = jobs.get_job(job_id)
        if not account.may_control(job.owner):
            whose = "another user" if job.owner else "no one (it predates accounts): only an admin"
            raise JobError(f"Job {job.id} belongs to {whose}; you can see and control only your own jobs.")
        return job

    def cancel(self, job_id: int, wait: bool = False, interval: float = 0.5, account: Account = LOCAL) -> Job:
        """Ask a job to stop; with `wait`, kill its worker if it has not stopped within the grace period."""
        self.job_for(account, job_id)
        job = self.runner.cancel(job_id)
        deadline = time.monotonic() + self.runner.cancel_grace
        while wait and job.status == "running":
            if time.monotonic() > deadline:
                self.runner.kill(job, f"did not stop within {self.runner.cancel_grace:.0f} s and was killed")
            time.sleep(interval)
            job = jobs.get_job(job_id)
        return job

    def fit_per_gpu(self, config: JobConfig) -> tuple[fit.FitEstimate, str]:
        """The will-it-fit estimate for one GPU of the job, on this machine, and how the job splits its memory.

        ConfigError when the model's shape cannot be read (a hub model outside the recommended list)."""
        report = hardware.detect(self.settings.home)
        gpus = len(report.gpus)
        training = config.training
        quantized = config.strategy == "qlora" or config.quantization == "4bit"
        strategy = distributed.strategy_name(config.distributed)
        processes = distributed.world_size(config.distributed, gpus)
        setup = fit.FitSetup(
            method="full" if config.lora is None else "qlora" if quantized else "lora",
            precision=training.precision if training.precision != "auto" else ("bf16" if gpus else "fp32"),
            batch_size=training.batch_size,
            seq_length=training.max_length,
            lora_rank=config.lora.r if config.lora else 1,
            gradient_checkpointing=(
                bool(gpus) if training.gradient_checkpointing == "auto" else training.gradient_checkpointing
            ),
            processes=processes,
            sharding={"fsdp": "full", "deepspeed-zero3": "full", "deepspeed-zero2": "zero2"}.get(strategy, "none"),
        )
        model = config.model or DEMO_MODELS[demo_kind(config.task)]
        shape = fit.resolve_model(model, models_dir=self.settings.models_dir)
        estimate = fit.estimate(shape, setup, report.to_dict()["memory_budget_gb"])
        return estimate, fit.SHARDING[setup.sharding] if processes > 1 else "one process"

    def start_demo_build(self) -> None:
        """Build the demo model that the default task trains in a child process, so that the first Validate and the
        first job need not wait for it; the app calls this once it serves its page."""
        self.demo_build = demo_model.start_background_build(self.settings.models_dir, demo_model.demo_kind(DEFAULT_TASK))

    def demo_model_state(self, task: str = DEFAULT_TASK) -> demo_model.BuildState:
        """Whether the demo model `task` trains is ready, being built (with its progress), or failed to build."""
        return demo_model.build_state(self.settings.models_dir, demo_model.demo_kind(task))

    def providers(self) -> list[tuple[str, bool, str]]:
        """(name, available, reason) for each registered provider."""
        return [(name, *vars(provider.availability()).values()) for name, provider in PROVIDERS.items()]

    @staticmethod
    def strategies() -> list[str]:
        return list(STRATEGIES)

    def model_choices(self, task: str) -> list[str]:
        """Hub ids recommended for this machine's hardware profile and the task (the demo model aside)."""
        report = hardware.detect(self.settings.home)
        return [entry["id"] for entry in hardware.recommended_models(hardware.profile(report), task) if entry["id"] != "demo"]

    def preset(self, preset: str, model: str | None) -> dict[str, dict]:
        """The config sections a Finetune preset sets for `model` (None: the demo model), sized by its parameters."""
        return preset_overrides(preset, fit.model_params_b(model, self.settings.models_dir))

    def resume(self, job_id: int, account: Account = LOCAL) -> Job:
        self.job_for(account, job_id)
        return self.runner.resume(job_id)

    def dataset_choices(self, task: str, strategy: str = "sft", account: Account = LOCAL) -> list[tuple[str, str]]:
        """Saved datasets of this task, then the bundled samples for it: `<task>.jsonl`, and `<task>-demo.jsonl` where
        that sample is real text the tiny demo model cannot learn (the demo one is in the demo models' vocabulary).
        A strategy that learns from preference pairs is offered the preference sample instead."""
        saved = DatasetRecord.select().where(DatasetRecord.task == task).order_by(DatasetRecord.name)
        choices = [(f"{record.name} ({record.rows} rows)", record.name) for record in saved
                   if account.may_control(record.owner)]
        learns_from_pairs = strategy in STRATEGIES and STRATEGIES[strategy].fields(task) == PREFERENCE_FIELDS
        names = ["preference"] if learns_from_pairs else [task, f"{task}-demo"]
        for sample in (SAMPLES_DIR / f"{name}.jsonl" for name in names):
            if sample.exists():
                choices.append((f"sample: {sample.name}", str(sample)))
        return choices

    @staticmethod
    def _visible(query, model, account: Account):
        if account.admin:
            return query
        return query.where(model.owner == account.name)

    def list_jobs(self, account: Account = LOCAL) -> list[Job]:
        return list(self._visible(Job.select(), Job, account).order_by(Job.id.desc()))

    def completed_jobs(self, account: Account = LOCAL) -> list[Job]:
        return list(self._visible(Job.select().where(Job.status == "completed"), Job, account).order_by(Job.id.desc()))

    def get_job(self, job_id: int, account: Account = LOCAL) -> Job:
        return self.job_for(account, job_id)

    def list_datasets(self, account: Account = LOCAL) -> list[dict]:
        """The saved datasets `account` may use, newest first."""
        names = {record.name for record in self._visible(DatasetRecord.select(DatasetRecord.name), DatasetRecord, account)}
        return [record for record in dataset_store.list_datasets() if record["name"] in names]

    def save_dataset(self, name: str, path, task: str, columns: dict, fields, account: Account = LOCAL) -> dict:
        record = dataset_store.save_dataset(self.settings, name, path, task, columns, fields)
        if account.name is not None:
            DatasetRecord.update(owner=account.name).where(DatasetRecord.name == record["name"]).execute()
        return record

    def delete_job(self, job_id: int, account: Account = LOCAL) -> None:
        """Remove a finished job, its metric points and its own output folder; never a running job."""
        job = self.job_for(account, job_id)
        if not job.is_finished:
            raise JobError(f"Job {job.id} is {job.status}; cancel it before deleting it.")
        folder = Path(job.output_dir).resolve()
        others = [Path(other.output_dir).resolve() for other in Job.select().where(Job.id != job.id)]
        shared = any(other == folder or folder in other.parents or other in folder.parents for other in others)
        with database.atomic():
            job.delete_instance(recursive=True)
        if not shared and folder.is_dir() and (folder / jobs.LOG_FILE).exists():
            shutil.rmtree(folder)

    def log_tail(self, job_id: int, lines: int = 40, account: Account = LOCAL) -> str:
        return jobs.log_tail(self.job_for(account, job_id), lines)

    @staticmethod
    def job_config(job: Job) -> JobConfig:
        return JobConfig.from_json(job.config)

    # -- views for the UI: plain data, no ORM objects ------------------------------------------------
    def current_job(self, account: Account = LOCAL) -> Job | None:
        """The job a newly opened page should show: the running one, else the next queued, else the latest."""
        return (
            self._visible(Job.running(), Job, account).order_by(Job.started_at).first()
            or self._visible(Job.queued(), Job, account).first()
            or self._visible(Job.select(), Job, account).order_by(Job.id.desc()).first()
        )

    def job_view(self, job_id: int, account: Account = LOCAL) -> dict:
        job = self.job_for(account, job_id)
        points = jobs.metric_points(job.id)
        return {
            "id": job.id,
            "name": job.name,
            "status": job.status,
            "stage": job.stage,
            "step": job.step,
            "total_steps": job.total_steps,
            "epoch": job.epoch,
            "loss": job.loss,
            "eval_loss": job.eval_loss,
            "learning_rate": job.learning_rate,
            "tokens_per_second": job.tokens_per_second,
            "eta_seconds": job.eta_seconds,
            "error": job.error,
            "output_dir": job.output_dir,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "metrics": job.final_metrics,
            "config": self.job_config(job),
            "launch": distributed.describe_launch(self.job_config(job)),
            "ranks": [
                {"rank": r.rank, "machine": r.machine_rank, "host": r.host, "pid": r.pid, "device": r.device,
                 "state": r.state, "step": r.step}
                for r in JobRank.select().where(JobRank.job == job.id).order_by(JobRank.rank)
            ],
            "points": [
                {"step": p.step, "loss": p.loss, "eval_loss": p.eval_loss, "learning_rate": p.learning_rate}
                for p in points
            ],
        }

    def export_config(self, job_id: int, account: Account = LOCAL) -> tuple[str, str]:
        """Write the job's config as YAML for download; return its path and the equivalent CLI command."""
        job = self.job_for(account, job_id)
        exports = self.settings.home / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        path = exports / f"{job.name}.yaml"
        config = self.job_config(job).model_copy(update={"output_dir": None})
        path.write_text(config.to_yaml(), encoding="utf-8")
        return str(path), f"python -m modelforge train {path.name}"

    def export_merged(self, job_id: int, progress: export.Progress | None = None, account: Account = LOCAL) -> Path:
        """Merge a LoRA job's adapter into its base, in a child process (torch stays out of this one)."""
        return export.merge_job_in_subprocess(self.job_for(account, job_id), self.settings, progress)

    def push_to_hub(self, job_id: int, repo_id: str, account: Account = LOCAL, **options) -> hub.PushResult:
        """Push a job's adapter or merged model with a model card; `options` are hub.push_job's keywords."""
        return hub.push_job(self.job_for(account, job_id), repo_id, self.settings, **options)
