"""The engine: one per process, the single entry point the CLI and every UI tab call.

It stays light to import (no torch, transformers or trl): training happens in worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from modelforge import data, jobs
from modelforge.config import JobConfig
from modelforge.db import Job, init_database
from modelforge.errors import ConfigError, DatasetError
from modelforge.providers import PROVIDERS
from modelforge.runner import JobRunner
from modelforge.settings import Settings
from modelforge.strategies import STRATEGIES
from modelforge.training import resolve_dataset_source


@dataclass
class Engine:
    settings: Settings
    runner: JobRunner

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
        strategy = STRATEGIES.get(config.strategy)
        if strategy is None:
            raise ConfigError(f"strategy: {config.strategy} is not available yet; available: {', '.join(STRATEGIES)}")
        if config.task not in strategy.tasks:
            raise ConfigError(
                f"task: strategy {config.strategy} supports {', '.join(strategy.tasks)}, not {config.task}"
            )
        availability = PROVIDERS[config.provider].availability()
        if not availability.available:
            raise ConfigError(f"provider: {config.provider} is unavailable: {availability.reason}")
        source = resolve_dataset_source(config.dataset)
        if data.is_hub_id(source):
            return  # validated by the worker once downloaded
        report = data.validate(source, config.task, config.columns or None, strategy.fields(config.task))
        if not report.ok:
            raise DatasetError(report.summary())

    def submit(self, config: JobConfig) -> Job:
        self.check(config)
        return self.runner.submit(config)

    def cancel(self, job_id: int, wait: bool = False, interval: float = 0.5) -> Job:
        """Ask a job to stop; with `wait`, kill its worker if it has not stopped within the grace period."""
        job = self.runner.cancel(job_id)
        deadline = time.monotonic() + self.runner.cancel_grace
        while wait and job.status == "running":
            if time.monotonic() > deadline:
                self.runner.kill(job, f"did not stop within {self.runner.cancel_grace:.0f} s and was killed")
            time.sleep(interval)
            job = jobs.get_job(job_id)
        return job

    def list_jobs(self) -> list[Job]:
        return list(Job.select().order_by(Job.id.desc()))

    @staticmethod
    def job_config(job: Job) -> JobConfig:
        return JobConfig.from_json(job.config)
