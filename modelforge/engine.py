"""The engine: one per process, the single entry point the CLI and every UI tab call.

It stays light to import (no torch, transformers or trl): training happens in worker processes.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelforge import (
    data, dataset_store, demo_model, distributed, export, fit, gguf, gguf_export, hardware, hub, label_mask, plots,
    preview, run_folder, store, sweep, trackers,
)
from modelforge.accounts import LOCAL, Account, SignIn
from modelforge.config import DistributedConfig, JobConfig, preset_overrides
from modelforge.db import Job, init_database
from modelforge.demo_model import DEMO_MODELS, demo_kind
from modelforge.errors import ConfigError, DatasetError, JobError
from modelforge.inference import ModelHost, job_source, path_source
from modelforge.preflight import job_records, resolve_dataset_source, resolve_init_from, runnable_strategy
from modelforge.providers import PROVIDERS
from modelforge.runner import JobRunner
from modelforge.settings import ASSETS_DIR, Settings
from modelforge.strategies import STRATEGIES
from modelforge.tasks import DEFAULT_TASK, TASKS

SAMPLES_DIR = ASSETS_DIR / "samples"
PREVIEW_ROWS = 5  # rows of a dataset shown as the model sees them, and X-rayed
STATS_SAMPLE = 20_000  # token lengths of bigger datasets are estimated from a random sample of this many rows


@dataclass(frozen=True)
class DatasetLook:
    """What the model will see of a dataset's valid rows, read with the chosen model's tokenizer."""

    rows: list[str]  # the first rows rendered as the model sees them (its chat template applied)
    stats: dict[str, Any]  # preview.token_stats of the rows (or of a random sample of them)
    figure: Any  # the token-length histogram (a matplotlib Figure)
    model: str  # the name of the folder whose tokenizer was used
    note: str  # why another tokenizer than the one asked for was used, or ""
    sampled_from: int | None  # the number of rows, when the statistics come from a sample of them
    masks: list[label_mask.RowMask]  # the trained tokens of the first rows, where the label mask applies
    refusal: DatasetError | None  # why the SFT strategy would learn nothing useful from these rows, or None


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
        engine = cls.open(settings, max_concurrent)
        engine.runner.recover()
        return engine

    @classmethod
    def open(cls, settings: Settings | None = None, max_concurrent: int = 1) -> "Engine":
        """The engine on the job store, without judging the jobs other runners left running: for commands that only
        export or join (the web app's export child process among them)."""
        settings = settings or Settings.from_env()
        settings.ensure_dirs()
        init_database(settings)
        return cls(settings=settings, runner=JobRunner(settings, max_concurrent=max_concurrent))

    def check(self, config: JobConfig) -> None:
        """Everything that can be known to be wrong before a worker starts, as one clear error."""
        strategy = runnable_strategy(config, self.settings)
        trackers.check(config.trackers, self.settings)
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
        if config.sweep is not None:
            raise ConfigError("This config lists values to sweep: queue it as a sweep (submit_sweep), one job per value.")
        return self.submit_sweep(config, account)[0]

    def submit_sweep(self, config: JobConfig, account: Account = LOCAL) -> list[Job]:
        """Queue one job per combination of the config's sweep values (JobConfig.sweep_runs), all or none, linked as
        one sweep; the queue runs them one after another like any jobs. A config without a sweep is one job."""
        for value in (config.dataset, config.eval_dataset):
            record = store.dataset_record(value) if value else None
            if record is not None and not account.may_control(record.owner):
                raise DatasetError(f"The saved dataset {value!r} belongs to another user: save your own copy of it.")
        runs = config.sweep_runs()
        self.check(runs[0])  # the runs differ only in values the checks do not depend on
        with store.transaction():
            jobs = [self.runner.submit(run) for run in runs]
            for job in jobs:
                job.sweep = jobs[0].id if config.sweep is not None else None
                job.owner = account.name
                store.update(job.id, sweep=job.sweep, owner=job.owner)
        return jobs

    def job_for(self, account: Account, job_id: int) -> Job:
        """The job, when `account` may see and control it; a clear refusal otherwise (checked here, for every caller,
        not only hidden in the UI)."""
        job = store.get_job(job_id)
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
            job = store.get_job(job_id)
        return job

    def fit_per_gpu(self, config: JobConfig) -> tuple[fit.FitEstimate, str]:
        """The will-it-fit estimate for one GPU of the job, on this machine, and how the job splits its memory.

        ConfigError when the model's shape cannot be read (a hub model outside the recommended list)."""
        report = hardware.detect(self.settings.home)
        gpus = len(report.gpus)
        training = config.training
        quantized = (STRATEGIES[config.strategy].quantization or config.quantization) == "4bit"
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
        return [(name, *vars(provider.availability(self.settings)).values()) for name, provider in PROVIDERS.items()]

    @staticmethod
    def strategies() -> list[str]:
        return list(STRATEGIES)

    def trackers(self) -> list[tuple[str, str, str | None]]:
        """(name, description, why it cannot report here or None) for each registered tracker."""
        registered = trackers.TRACKERS.values()
        return [(tracker.name, tracker.description, tracker.unavailable(self.settings)) for tracker in registered]

    def model_choices(self, task: str) -> list[str]:
        """Hub ids recommended for this machine's hardware profile and the task (the demo model aside)."""
        report = hardware.detect(self.settings.home)
        return [entry["id"] for entry in hardware.recommended_models(hardware.profile(report), task) if entry["id"] != "demo"]

    def preset(self, preset: str, model: str | None) -> dict[str, dict]:
        """The config sections a Finetune preset sets for `model` (None: the demo model), sized by its parameters."""
        return preset_overrides(preset, fit.model_params_b(model, self.settings.models_dir))

    def resume(self, job_id: int, num_processes: int | None = None, account: Account = LOCAL) -> Job:
        """Queue a stopped job again, from its last checkpoint; `num_processes`: per machine, for a DDP job."""
        self.job_for(account, job_id)
        return self.runner.resume(job_id, num_processes)

    def wait(self, job_id: int, on_update: Callable[[Job], None] | None = None) -> Job:
        """Run the queue up to this job (in this process) and return it once it has finished."""
        return self.runner.wait(job_id, on_update=on_update)

    def join(self, job_id: int, machine_rank: int) -> int:
        """Run this machine's ranks of a multi-machine job started on machine 0; 0 when they ended normally."""
        from modelforge.training.launch import join

        return join(job_id, self.settings, machine_rank)

    @staticmethod
    def build_demo_model(kind: str, settings: Settings | None = None) -> Path:
        """Build (once) a built-in demo model; its folder."""
        return demo_model.ensure_demo_model((settings or Settings.from_env()).models_dir, kind)

    # -- datasets ------------------------------------------------------------------------------------
    @staticmethod
    def dataset_fields(task: str, strategy: str | None = None) -> tuple[str, ...]:
        """The fields a strategy reads for the task; the task's own fields when no strategy is chosen."""
        return STRATEGIES[strategy].fields(task) if strategy in STRATEGIES else TASKS[task].fields

    @staticmethod
    def dataset_source(file: str | None, hub_id: str | None) -> str:
        """What a page names as a dataset, checked: an upload (its type and size), else a Hub dataset id. A page is no
        way into the server's files: a path typed there is refused."""
        if file:
            dataset_store.check_upload(file, Path(file).name)
            return file
        if hub_id and hub_id.strip():
            hub_id = hub_id.strip()
            if not data.is_hub_id(hub_id):
                raise DatasetError(
                    f"{hub_id!r} is not a Hugging Face Hub dataset id (owner/name or owner/name:split); "
                    "upload a file from your computer with the upload box instead."
                )
            return hub_id
        raise DatasetError("Upload a file or enter a Hugging Face Hub dataset id first.")

    @staticmethod
    def inspect_upload(file: str, fields: tuple[str, ...]) -> tuple[str, int, list[str], dict[str, str]]:
        """A newly uploaded file: (its safe file name, its number of rows, its columns, their automatic mapping to
        `fields`)."""
        safe_name = dataset_store.check_upload(file, Path(file).name)
        rows = data.read_rows(file)
        names = list(dict.fromkeys(column for row in rows for column in row.values))
        return safe_name, len(rows), names, data.detect_columns(names, fields)

    @staticmethod
    def map_columns(names: list[str], fields: tuple[str, ...]) -> dict[str, str]:
        """The automatic mapping of a file's columns to the fields."""
        return data.detect_columns(names, fields)

    @staticmethod
    def validate_dataset(
        source: str, task: str, columns: dict[str, str] | None = None, fields: tuple[str, ...] | None = None
    ) -> data.ValidationReport:
        """Every problem of a dataset (a file, or a Hub id) for the task, with its line; the valid rows."""
        return data.validate(source, task, columns or None, fields)

    def dataset_look(
        self, records: list[dict], task: str, strategy: str | None, model: str | None, max_length: int | None
    ) -> DatasetLook:
        """The valid rows as `model`'s tokenizer (the task's demo model when empty) renders them, their token lengths
        and, where SFT's label mask applies, its X-ray and its refusal. NotReadyError while the demo model builds."""
        sample = records if len(records) <= STATS_SAMPLE else random.Random(0).sample(records, STATS_SAMPLE)
        max_length = int(max_length or preview.DEFAULT_MAX_LENGTH)
        folder, note = preview.resolve_model_folder(self.settings, model, task)
        rows = preview.preview(records, task, folder, PREVIEW_ROWS)
        stats = preview.token_stats(sample, task, folder, max_length)
        tokenizer = preview.load_tokenizer(folder)
        masks, refusal = [], None
        if label_mask.applies(strategy, task, tokenizer):
            masks = label_mask.xray(tokenizer, records[:PREVIEW_ROWS], task, max_length)
            try:
                label_mask.check(tokenizer, sample, task, max_length)
            except DatasetError as exc:
                refusal = exc
        return DatasetLook(
            rows=rows, stats=stats, figure=plots.token_histogram(stats["lengths"], stats["max_length"]),
            model=folder.name, note=note, sampled_from=len(records) if sample is not records else None,
            masks=masks, refusal=refusal,
        )

    def dataset_choices(self, task: str, strategy: str = "sft", account: Account = LOCAL) -> list[tuple[str, str]]:
        """Saved datasets of this task, then the bundled samples for it: `<task>.jsonl`, and `<task>-demo.jsonl` where
        that sample is real text the tiny demo model cannot learn (the demo one is in the demo models' vocabulary).
        A strategy that learns from preference pairs is offered the preference sample instead."""
        saved = sorted(store.datasets(task=task), key=lambda record: record.name)
        choices = [(f"{record.name} ({record.rows} rows)", record.name) for record in saved
                   if account.may_control(record.owner)]
        names = ["preference"] if strategy in STRATEGIES and STRATEGIES[strategy].pairs else [task, f"{task}-demo"]
        for sample in (SAMPLES_DIR / f"{name}.jsonl" for name in names):
            if sample.exists():
                choices.append((f"sample: {sample.name}", str(sample)))
        return choices

    def list_jobs(self, account: Account = LOCAL) -> list[Job]:
        return store.list_jobs(account)

    def completed_jobs(self, account: Account = LOCAL) -> list[Job]:
        return store.list_jobs(account, status="completed")

    def get_job(self, job_id: int, account: Account = LOCAL) -> Job:
        return self.job_for(account, job_id)

    def list_datasets(self, account: Account = LOCAL) -> list[dict]:
        """The saved datasets `account` may use, newest first."""
        names = {record.name for record in store.datasets(account)}
        return [record for record in dataset_store.list_datasets() if record["name"] in names]

    def save_dataset(
        self, name: str, source, task: str, columns: dict, fields, account: Account = LOCAL, upload: bool = False
    ) -> dict:
        """Validate and record a dataset under `name`, owned by `account`. With `upload`, `source` is an upload's
        temporary file: a copy of it is kept in the data folder (and removed again when the dataset is refused)."""
        name = dataset_store.check_name(name)
        path = dataset_store.store_upload(self.settings, source, Path(source).name) if upload else source
        try:
            record = dataset_store.save_dataset(self.settings, name, path, task, columns, fields)
        except BaseException:
            if upload:
                path.unlink(missing_ok=True)
            raise
        if account.name is not None:
            store.set_dataset_owner(record["name"], account.name)
        return record

    def delete_job(self, job_id: int, account: Account = LOCAL) -> None:
        """Remove a finished job, its metric points and its own output folder; never a running job."""
        job = self.job_for(account, job_id)
        if not job.is_finished:
            raise JobError(f"Job {job.id} is {job.status}; cancel it before deleting it.")
        folder = Path(job.output_dir).resolve()
        others = [Path(other).resolve() for other in store.other_output_dirs(job.id)]
        shared = any(other == folder or folder in other.parents or other in folder.parents for other in others)
        store.delete_job(job)
        if not shared and folder.is_dir() and (folder / run_folder.LOG_FILE).exists():
            shutil.rmtree(folder)

    def log_tail(self, job_id: int, lines: int = 40, account: Account = LOCAL) -> str:
        return run_folder.log_tail(self.job_for(account, job_id), lines)

    @staticmethod
    def job_config(job: Job) -> JobConfig:
        return JobConfig.from_json(job.config)

    # -- views for the UI: plain data, no ORM objects ------------------------------------------------
    def current_job(self, account: Account = LOCAL) -> Job | None:
        """The job a newly opened page should show: the running one, else the next queued, else the latest."""
        return store.current_job(account)

    def job_view(self, job_id: int, account: Account = LOCAL) -> dict:
        job = self.job_for(account, job_id)
        points = store.metric_points(job.id)
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
            "trackers": [
                {"name": tracker.name, "store": str(store), "viewer": viewer}
                for tracker, store, viewer in trackers.stores(self.job_config(job), job.output_dir)
            ],
            "ranks": [
                {"rank": r.rank, "machine": r.machine_rank, "host": r.host, "pid": r.pid, "device": r.device,
                 "state": r.state, "step": r.step}
                for r in store.job_ranks(job.id)
            ],
            "points": [
                {"step": p.step, "loss": p.loss, "eval_loss": p.eval_loss, "learning_rate": p.learning_rate}
                for p in points
            ],
        }

    def sweeps(self, account: Account = LOCAL) -> list[tuple[int, str, int]]:
        """(sweep, a run's name, number of runs) of the sweeps `account` may see, newest first."""
        return store.sweeps(account)

    def compare_sweep(self, job_id: int, account: Account = LOCAL) -> sweep.SweepComparison:
        """The sweep that job `job_id` ran in (any of its jobs names it), its runs side by side, the best marked."""
        job = self.job_for(account, job_id)
        if job.sweep is None:
            raise JobError(f"Job {job.id} was not queued as part of a sweep; `python -m modelforge jobs` lists them.")
        return sweep.compare(job.sweep, [self.job_view(member.id, account) for member in store.sweep_jobs(job.sweep)])

    def export_config(self, job_id: int, account: Account = LOCAL) -> tuple[str, str]:
        """Write the job's config as YAML for download; return its path and the equivalent CLI command."""
        job = self.job_for(account, job_id)
        exports = self.settings.home / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        path = exports / f"{job.name}.yaml"
        config = self.job_config(job).model_copy(update={"output_dir": None})
        path.write_text(config.to_yaml(), encoding="utf-8")
        return str(path), f"python -m modelforge train {path.name}"

    def export_merged(
        self, job_id: int, progress: export.Progress | None = None, account: Account = LOCAL, in_process: bool = False
    ) -> Path:
        """Merge a LoRA job's adapter into its base, in a child process (torch stays out of this one); `in_process`:
        here, for the CLI (which is that child process)."""
        merge = export.merge_job if in_process else export.merge_job_in_subprocess
        return merge(self.job_for(account, job_id), self.settings, progress)

    @staticmethod
    def gguf_quants() -> list[str]:
        """The GGUF quantization types an export offers (llama.cpp's names)."""
        return list(gguf_export.QUANTS)

    def export_gguf(
        self, job_id: int, quant: str = "q8_0", progress: export.Progress | None = None, account: Account = LOCAL,
        in_process: bool = False,
    ) -> gguf_export.GGUFExport:
        """A completed job as a GGUF file of `quant` with its Ollama Modelfile, checked against the tuned model
        (modelforge.gguf_export); in a child process unless `in_process` (the CLI, which is that child)."""
        job = self.job_for(account, job_id)
        quant = gguf_export.check_quant(quant)
        if in_process:
            return gguf_export.export_job(job, self.settings, quant, progress)
        export.run_cli(job, self.settings, ["export-gguf", str(job.id), "--quant", quant], "GGUF export", progress)
        return gguf_export.saved_export(job, quant)

    def trained_model(self, job_id: int, account: Account = LOCAL) -> tuple[Path, bool]:
        """(the folder of a completed job's model, whether it is a LoRA adapter rather than a full model)."""
        folder = export.model_folder(self.job_for(account, job_id))
        return folder, run_folder.is_adapter(folder)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(
        self, target: str, dataset: str | None = None, max_samples: int | None = None, account: Account = LOCAL
    ) -> tuple[dict, Path | None]:
        """Score a completed job's model against its base (`target` a job id), or a config's model alone (`target` a
        YAML file), on `dataset`, else the config's eval_dataset, else the rows the job held out (the same split from
        the same seed). Runs here, with torch: the CLI's command. (the before/after table, where a job's is saved)."""
        from modelforge.training import evaluation

        job = None
        if target.isdigit():
            job = self.job_for(account, int(target))
            if job.status != "completed":
                raise JobError(f"Job {job.id} is {job.status}; only a completed job has a tuned model to evaluate.")
            config = self.job_config(job)
        else:
            config = JobConfig.load(target)
        if max_samples:
            config.evaluation.max_samples = max_samples
        fields = runnable_strategy(config, self.settings).fields(config.task)

        if dataset:
            records = data.load_records(resolve_dataset_source(dataset), config.task, config.columns or None, fields)
        else:
            records = job_records(config, fields)[1]
        result = evaluation.evaluate_saved(config, self.settings, records, Path(job.output_dir) if job else None)
        if job is None:
            return result, None
        saved = run_folder.evaluation_file(Path(job.output_dir), Path(dataset).stem if dataset else "held-out")
        saved.write_text(json.dumps(result, indent=2), encoding="utf-8")
        return result, saved

    # -- the playground ------------------------------------------------------------------------------
    def load_model(
        self, job_id: int | None, model_text: str | None, task: str, compare: bool, account: Account = LOCAL
    ) -> str | None:
        """Start loading a model into the shared `model_host` (a typed folder or hub id, else a finished job's model),
        beside its base when `compare`; the name the status line shows, or None when nothing was chosen. The load
        runs on in the background: `model_loading` and `wait_for_model` tell when it ends."""
        if model_text and model_text.strip():
            source = path_source(model_text, task)
        elif job_id is not None:
            source = job_source(self.job_for(account, job_id), self.settings)
        else:
            return None
        self.model_host.load(source, compare=compare)
        return source.name

    def model_status(self) -> str:
        """The shared model's status line: loading, ready, an error, or no model loaded."""
        return self.model_host.status()

    def model_loading(self) -> bool:
        return self.model_host.loading

    def wait_for_model(self, timeout: float | None = None) -> str:
        """Block until the load under way ends (or `timeout` seconds pass); the status then."""
        return self.model_host.wait(timeout)

    def unload_model(self) -> str:
        return self.model_host.unload()

    def check_model_ready(self) -> None:
        """Refuse (ModelLoadError) while no model is ready to answer: nothing loaded, or a load under way."""
        self.model_host.ready()

    def stream_reply(
        self, history: list[dict], max_new_tokens: int, temperature: float, top_p: float, which: str = "tuned"
    ) -> Iterator[str]:
        """The loaded model's (or its base's) reply to the conversation `history`, the whole text so far each time."""
        return self.model_host.stream(history, max_new_tokens, temperature, top_p, which=which)

    def answer_question(self, question: str, context: str, which: str = "tuned") -> dict[str, Any]:
        """The span of `context` that the loaded QA model (or its base) picks as the answer: text, start, end, score."""
        return self.model_host.answer(question, context, which)

    # -- the machine ---------------------------------------------------------------------------------
    def hardware_report(self) -> hardware.HardwareReport:
        return hardware.detect(self.settings.home)

    @staticmethod
    def recommended_models(profile: str, task: str) -> list[dict]:
        """The models recommended for a hardware profile and task: id, params_b, method, note."""
        return hardware.recommended_models(profile, task)

    def local_models(self) -> list[str]:
        """Model folders in the data folder (the demo models, merged models) that the estimate can read."""
        folder = self.settings.models_dir
        return sorted(path.name for path in folder.iterdir() if (path / "config.json").is_file()) if folder.is_dir() else []

    def estimate_fit(
        self, model: str, params_b: float | None, setup: fit.FitSetup, budget_gb: float | None = None
    ) -> fit.FitEstimate:
        """Will training `model` (or a model of `params_b` billion parameters) this way fit in `budget_gb`, this
        machine's memory for training when not given."""
        shape = fit.resolve_model(model, params_b or None, self.settings.models_dir)
        budget = budget_gb if budget_gb and budget_gb > 0 else self.hardware_report().to_dict()["memory_budget_gb"]
        return fit.estimate(shape, setup, budget)

    def push_to_hub(self, job_id: int, repo_id: str, account: Account = LOCAL, **options) -> hub.PushResult:
        """Push a job's adapter or merged model with a model card; `options` are hub.push_job's keywords."""
        return hub.push_job(self.job_for(account, job_id), repo_id, self.settings, **options)
