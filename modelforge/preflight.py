"""The checks a job passes before it is queued: its strategy runs here, its `init_from` and datasets resolve.

The web process and the CLI run them on submit, so a bad config fails at once with an actionable error; the worker
runs them again on the config it starts from. They read the database and files only, never a model.
"""

from __future__ import annotations

from pathlib import Path

from modelforge import data, run_folder, store
from modelforge.config import JobConfig
from modelforge.demo_model import DEMO_MODEL_NAME
from modelforge.errors import ConfigError, UnavailableError
from modelforge.providers import PROVIDERS
from modelforge.settings import Settings
from modelforge.strategies import STRATEGIES


def runnable_strategy(config: JobConfig, settings: Settings):
    """The config's strategy, once it is known to run here (as `settings` say) with the config's task and provider."""
    strategy = STRATEGIES[config.strategy]
    if config.task not in strategy.tasks:
        raise ConfigError(f"task: strategy {config.strategy} supports {', '.join(strategy.tasks)}, not {config.task}")
    if strategy.quantization and config.lora is None:
        raise ConfigError(f"lora: strategy {config.strategy} trains LoRA adapters on a quantized model; it cannot be null")
    reason = PROVIDERS[config.provider].supports(config)
    if reason:
        raise ConfigError(f"provider: {config.provider} cannot train this: {reason}")
    availability = PROVIDERS[config.provider].availability(settings)
    if not availability.available:
        raise UnavailableError(f"provider: {config.provider} is unavailable: {availability.reason}")
    return strategy


def resolve_init_from(config: JobConfig, settings: Settings) -> JobConfig:
    """The config with `init_from` resolved to the adapter's folder and, when `model` is empty, the adapter's base.

    ConfigError when it names a job that does not exist or has not completed, a folder without a causal-LM LoRA
    adapter, or an adapter trained on another base model than `model`.
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
        if not run_folder.is_adapter(folder):
            raise ConfigError(
                f"init_from: job {value} ({job.name}) trained the full model, not a LoRA adapter; "
                f"use its folder {folder} as model instead."
            )
    else:
        folder = Path(value).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"init_from: {value} is neither a job id nor a folder.")
        if not run_folder.is_adapter(folder):
            raise ConfigError(
                f"init_from: {folder} holds no LoRA adapter ({run_folder.ADAPTER_CONFIG}); give the id or the folder "
                "of a finished LoRA job."
            )
    adapter = run_folder.read_adapter_config(folder)
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


def job_records(config: JobConfig, fields: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """The job's training rows and its held-out rows (its eval dataset, else the seeded split of its dataset): what
    the worker trains and scores on, and what a later evaluation of the job scores again."""
    def read(source: str) -> list[dict]:
        return data.load_records(resolve_dataset_source(source), config.task, config.columns or None, fields)

    if config.eval_dataset:
        return read(config.dataset), read(config.eval_dataset)
    return data.split_records(read(config.dataset), config.training.eval_split, config.training.seed)
