"""The job config: the one typed description of a fine-tuning run, shared by the UI, the CLI and the database."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelforge.errors import ConfigError
from modelforge.providers import PROVIDERS
from modelforge.strategies import STRATEGIES
from modelforge.tasks import DEFAULT_TASK, PREFERENCE_FIELDS, TASKS, UNPAIRED_FIELDS
from modelforge.trackers import TRACKERS

# Tasks, providers and strategies are named by their registries' keys, checked when a config is read.
Precision = Literal["auto", "fp32", "fp16", "bf16"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]
Quantization = Literal["4bit", "8bit"]
# The common preference losses of TRL's DPOConfig.loss_type (the rest need extra settings or are experimental).
PreferenceLoss = Literal["sigmoid", "ipo", "hinge", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down"]
RlAlgorithm = Literal["grpo", "rloo"]
# How the processes of a distributed job share the model (accelerate's names; deepspeed-* is DeepSpeed's ZeRO stage).
DistributedStrategy = Literal["auto", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"]
SHARDING_STRATEGIES = ("fsdp", "deepspeed-zero3")  # weights themselves are split across the processes

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainingConfig(_Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps; -1 trains for `epochs`.")
    batch_size: int = Field(8, ge=1, description="Rows per device per step.")
    gradient_accumulation: int = Field(1, ge=1, description="Steps whose gradients are summed before an update.")
    learning_rate: float = Field(2.0e-4, gt=0, lt=1, description="Peak learning rate.")
    scheduler: Scheduler = Field("cosine", description="Learning-rate schedule after warm-up.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of the steps spent warming up.")
    max_length: int = Field(512, ge=8, description="Longest tokenized row; longer rows are truncated.")
    eval_split: float = Field(0.1, ge=0, lt=1, description="Share of the rows held out for evaluation.")
    seed: int = Field(42, description="Seed for the split, the initialisation of adapters and the data order.")
    precision: Precision = Field("auto", description="auto: bf16 where the GPU supports it, else fp16 on GPU, fp32 on CPU.")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="Trade compute for memory; auto: on for GPUs, off on CPU."
    )
    packing: bool | Literal["auto"] = Field(
        "auto",
        description="SFT of causal LMs: lay a batch's rows end to end without padding (positions restart at each row, "
        "so no row sees or predicts another) wherever that costs less compute than padding them: much faster on rows "
        "of mixed lengths, the same rows per step. auto: on where the model is checked to keep packed rows apart, off "
        "elsewhere with the reason in the job's log.",
    )
    save_steps: int = Field(50, ge=1, description="Write a checkpoint every this many steps.")
    logging_steps: int = Field(5, ge=1, description="Record loss and learning rate every this many steps.")
    retry_out_of_memory: bool = Field(
        True,
        description="Out of memory: retry once from the last checkpoint with half the batch size and twice the "
        "gradient accumulation (the same effective batch), recording the change in the job's config.",
    )
    stop_on_bad_loss: bool = Field(
        True,
        description="A NaN/Inf or exploding loss: stop with a checkpoint and a diagnosis instead of training on.",
    )


class LoraConfig(_Section):
    r: int = Field(16, ge=1, description="Rank of the adapter matrices.")
    alpha: int = Field(32, ge=1, description="Scaling of the adapter (alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: str | list[str] = Field("all-linear", description="Layers to adapt: all-linear or a list of names.")


class EvaluationConfig(_Section):
    compare_base: bool = Field(True, description="Also score the base model on the same held-out rows: a before/after table.")
    max_samples: int = Field(64, ge=1, description="Held-out rows scored (reference loss and greedy generation).")
    max_new_tokens: int = Field(64, ge=1, description="Longest generated answer when scoring by generation.")


class PreferenceConfig(_Section):
    beta: float = Field(
        0.1, gt=0, description="The preference strategies: how strongly the policy is held close to its reference (rlhf: the KL "
        "penalty; orpo: the weight of the odds-ratio term; simpo: the scale of mean log-probabilities, best near 2)."
    )
    loss_type: PreferenceLoss = Field(
        "sigmoid", description="dpo: sigmoid (DPO), ipo, hinge (SLiC), bco_pair, sppo_hard, nca_pair, apo_zero or apo_down."
    )
    rl_algorithm: RlAlgorithm = Field("grpo", description="rlhf stage 2: the online RL algorithm, grpo or rloo.")
    num_generations: int = Field(
        4, ge=2, description="rlhf: answers sampled per prompt and compared; training.batch_size must be a multiple of it."
    )
    max_completion_length: int = Field(64, ge=1, description="rlhf: longest sampled answer, in tokens.")
    reward_model_steps: int = Field(
        -1, ge=-1, description="rlhf stage 1: optimizer steps of the reward model; -1 trains it for training.epochs."
    )


class DistributedConfig(_Section):
    """More than one process, GPU or machine for one job; accelerate's names. Each process is one rank of torchrun."""

    num_processes: int | Literal["auto"] = Field(
        1, description="Processes on each machine, one per GPU (on a CPU-only machine: CPU processes); auto: one per "
        "visible GPU."
    )
    strategy: DistributedStrategy = Field(
        "auto", description="ddp: a full copy of the model per process; fsdp: weights, gradients and optimizer state "
        "sharded; deepspeed-zero2: gradients and optimizer state sharded; deepspeed-zero3: everything sharded; "
        "auto: ddp."
    )
    cpu_offload: bool = Field(
        False, description="fsdp and deepspeed: keep the sharded parameters and optimizer state in CPU memory."
    )
    num_machines: int = Field(1, ge=1, description="Machines the job runs on, each with num_processes processes.")
    machine_rank: int = Field(
        0, ge=0, description="The machine that starts the job is 0; machine N joins it with "
        "`python -m modelforge join JOB --machine-rank N`."
    )
    main_process_ip: str | None = Field(None, description="Address of machine 0 that the other machines reach.")
    main_process_port: int = Field(29500, ge=1, le=65535, description="Port on machine 0 where the machines meet.")
    gpu_ids: list[int] | None = Field(
        None, description="GPUs this job may use on each machine (CUDA_VISIBLE_DEVICES), e.g. 0,1; null: all."
    )

    @field_validator("gpu_ids", mode="before")
    @classmethod
    def _gpu_ids_from_text(cls, value: Any) -> Any:
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):  # accelerate writes "0,1" (or "all")
            if value.strip().lower() in ("", "all"):
                return None
            try:
                return [int(part) for part in value.split(",")]
            except ValueError:
                raise ValueError(f"expected GPU numbers separated by commas, e.g. 0,1 (got {value!r})") from None
        return value

    @field_validator("num_processes")
    @classmethod
    def _check_processes(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or auto")
        return value

    @property
    def is_distributed(self) -> bool:
        """Whether the job runs as more than one rank (an `auto` count is only known on the machine)."""
        return self.num_processes == "auto" or self.num_processes * self.num_machines > 1


MAX_SWEEP_RUNS = 8  # a sweep is a small comparison queued one job after another, not a search


class SweepConfig(_Section):
    """Values to try: the job is queued once per combination, each run a whole job config of its own."""

    learning_rate: list[float] = Field(default_factory=list, description="Peak learning rates to try (training.learning_rate).")
    lora_r: list[int] = Field(default_factory=list, description="LoRA ranks to try (lora.r; lora.alpha stays as given).")

    @field_validator("learning_rate", "lora_r", mode="before")
    @classmethod
    def _from_text(cls, value: Any, info) -> Any:
        """`1e-3, 3e-3` as typed in a form (or a YAML list, where PyYAML reads 1e-3 as text): a list of numbers."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (int, float)):
            value = [value]
        if not isinstance(value, list):
            return value
        kind, example = (float, "1e-3, 3e-3") if info.field_name == "learning_rate" else (int, "4, 8")
        numbers = []
        for item in value:
            try:
                numbers.append(kind(item) if isinstance(item, str) else item)
            except ValueError:
                raise ValueError(f"{item!r} is not a {'number' if kind is float else 'whole number'}; give values "
                                 f"separated by commas, e.g. {example}") from None
        return numbers

    @field_validator("learning_rate")
    @classmethod
    def _check_rates(cls, values: list[float]) -> list[float]:
        bad = [value for value in values if not 0 < value < 1]
        if bad:
            raise ValueError(f"a learning rate lies between 0 and 1, e.g. 3e-4 (got {bad[0]:g})")
        return _distinct(values)

    @field_validator("lora_r")
    @classmethod
    def _check_ranks(cls, values: list[int]) -> list[int]:
        bad = [value for value in values if value < 1]
        if bad:
            raise ValueError(f"a LoRA rank is a whole number of at least 1, e.g. 8 (got {bad[0]})")
        return _distinct(values)

    @model_validator(mode="after")
    def _check_size(self) -> "SweepConfig":
        runs = max(len(self.learning_rate), 1) * max(len(self.lora_r), 1)
        if not (self.learning_rate or self.lora_r):
            raise ValueError("list the values to try, e.g. learning_rate: [1e-3, 3e-3] or lora_r: [4, 8]")
        if runs > MAX_SWEEP_RUNS:
            raise ValueError(
                f"{len(self.learning_rate) or 1} learning rates x {len(self.lora_r) or 1} LoRA ranks make {runs} runs; "
                f"a sweep queues at most {MAX_SWEEP_RUNS}: try fewer values"
            )
        return self


def _distinct(values: list) -> list:
    if len(set(values)) < len(values):
        raise ValueError(f"each value once (got {', '.join(f'{value:g}' for value in values)})")
    return values


class JobConfig(_Section):
    name: str = Field(default_factory=lambda: datetime.now().strftime("run-%Y%m%d-%H%M%S"))
    task: str = Field(DEFAULT_TASK, description="A key of modelforge.tasks.TASKS.")
    model: str | None = Field(
        None, description="Hub id, local folder or GGUF file (converted once); None uses the built-in demo model."
    )
    provider: str = Field("huggingface", description="A key of modelforge.providers.PROVIDERS.")
    strategy: str = Field("sft", description="A key of modelforge.strategies.STRATEGIES.")
    init_from: str | None = Field(
        None,
        description="The preference strategies: start from the LoRA adapter of a finished job, given as the job's id or the adapter's "
        "folder; with model empty, that job's (or adapter's) base model is used.",
    )
    dataset: str = Field(description="Local file (jsonl/json/csv/parquet), a saved dataset name, or a hub dataset id.")
    columns: dict[str, str] = Field(default_factory=dict, description="Task field -> column of the data file.")
    eval_dataset: str | None = Field(None, description="Held-out rows from their own source; None holds out eval_split.")
    output_dir: str | None = Field(None, description="Where the run's files go; default: runs/<name> in the data folder.")
    quantization: Quantization | None = Field(None, description="Load the base model in 4 or 8 bits.")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    lora: LoraConfig | None = Field(default_factory=LoraConfig, description="null: full fine-tuning.")
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    trackers: list[str] = Field(
        default_factory=list,
        description="Experiment trackers the job reports to, keys of modelforge.trackers.TRACKERS (tensorboard, "
        "trackio, wandb, mlflow), each writing to its store in the job's folder; empty: none.",
    )
    sweep: SweepConfig | None = Field(
        None, description="Values to try, one queued job per combination (at most 8); null: one job."
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)")
        return value

    @field_validator("task", "provider", "strategy")
    @classmethod
    def _check_registered(cls, value: str, info) -> str:
        registry = {"task": TASKS, "provider": PROVIDERS, "strategy": STRATEGIES}[info.field_name]
        if value not in registry:
            raise ValueError(f"must be one of {_listed(list(registry))} (got {value!r})")
        return value

    @field_validator("trackers")
    @classmethod
    def _check_trackers(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in TRACKERS]
        if unknown:
            raise ValueError(f"must be among {_listed(list(TRACKERS), 'and')} (got {', '.join(map(repr, unknown))})")
        return list(dict.fromkeys(value))  # each once, in the order given

    @field_validator("output_dir")
    @classmethod
    def _check_output_dir(cls, value: str | None) -> str | None:
        if value is not None and ".." in Path(value).parts:
            raise ValueError(f"{value!r} climbs out of its folder with '..'; give the folder itself")
        return value

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, value: dict[str, str], info) -> dict[str, str]:
        task = info.data.get("task")
        if task in TASKS:
            allowed = set(TASKS[task].fields) | set(PREFERENCE_FIELDS) | set(UNPAIRED_FIELDS)
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise ValueError(f"unknown field {', '.join(unknown)}; the fields are {', '.join(sorted(allowed))}")
        return value

    @field_validator("init_from", mode="before")
    @classmethod
    def _job_id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value  # `init_from: 3` in YAML names job 3

    @model_validator(mode="after")
    def _check_preference_settings(self) -> "JobConfig":
        strategy = STRATEGIES[self.strategy]
        if self.init_from is not None and not strategy.pairs:
            starting = _listed([name for name, other in STRATEGIES.items() if other.pairs], "and")
            raise ValueError(f"init_from: only the {starting} strategies start from a finished job, not {self.strategy}")
        if self.init_from is not None and self.lora is None:
            raise ValueError("init_from: the adapter it names is trained further, so lora cannot be null")
        if self.training.packing is True and strategy.pairs:
            raise ValueError(
                f"training.packing: packing lays the rows of SFT end to end; {self.strategy} trains on preference "
                "pairs. Set it to auto or false"
            )
        problem = strategy.check(self) if strategy.check else None
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _check_sweep(self) -> "JobConfig":
        if self.sweep and self.sweep.lora_r and self.lora is None:
            raise ValueError("sweep.lora_r: full fine-tuning (lora: null) has no LoRA rank to sweep")
        return self

    @model_validator(mode="after")
    def _check_distributed(self) -> "JobConfig":
        distributed = self.distributed
        if distributed.machine_rank >= distributed.num_machines:
            raise ValueError(
                f"distributed.machine_rank: {distributed.machine_rank} is not below num_machines "
                f"({distributed.num_machines})"
            )
        if distributed.num_machines > 1 and not distributed.main_process_ip:
            raise ValueError(
                "distributed.main_process_ip: a job on more than one machine needs the address of machine 0 that "
                "the others reach, e.g. 10.0.0.1"
            )
        if distributed.gpu_ids is not None and distributed.num_processes not in ("auto", len(distributed.gpu_ids)):
            raise ValueError(
                f"distributed.gpu_ids: {len(distributed.gpu_ids)} GPUs given for {distributed.num_processes} "
                "processes; give one GPU per process, or num_processes: auto"
            )
        if distributed.is_distributed and self.provider == "unsloth":
            raise ValueError("distributed: the unsloth provider trains on one GPU; use the huggingface provider")
        quantization = self.quantization or STRATEGIES[self.strategy].quantization
        if quantization == "8bit" and distributed.strategy in SHARDING_STRATEGIES:
            raise ValueError(
                f"distributed.strategy: 8-bit weights cannot be sharded by {distributed.strategy}; use 4-bit "
                "(the qlora strategy), or ddp / deepspeed-zero2, which keep whole weights on every GPU"
            )
        if quantization and distributed.strategy == "fsdp" and distributed.cpu_offload:
            # bitsandbytes' 4-bit weights lose their quantization state when FSDP gathers them from the CPU to save.
            raise ValueError(
                "distributed.cpu_offload: a 4-bit (QLoRA) model sharded by FSDP cannot be saved from CPU offload; "
                "turn cpu_offload off, or use deepspeed-zero3"
            )
        return self

    # -- serialisation -------------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Any, source: str = "config") -> "JobConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, source)) from None

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> "JobConfig":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from None
        return cls.parse(data or {}, source)

    @classmethod
    def load(cls, path: str | Path) -> "JobConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.")
        return cls.from_yaml(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def from_json(cls, text: str) -> "JobConfig":
        return cls.parse(json.loads(text), "stored config")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def sweep_runs(self) -> list["JobConfig"]:
        """The jobs a sweep queues, one per combination of its values (learning rates first), each without a sweep
        and named after its values; a config without a sweep is its one run."""
        if self.sweep is None:
            return [self]
        runs = []
        for rate in self.sweep.learning_rate or [self.training.learning_rate]:
            for rank in self.sweep.lora_r or [self.lora.r if self.lora else None]:
                suffix = f"-lr{rate:g}" + (f"-r{rank}" if rank is not None else "")
                update: dict[str, Any] = {
                    "name": self.name[: 100 - len(suffix)] + suffix, "sweep": None,
                    "training": self.training.model_copy(update={"learning_rate": rate}),
                    "output_dir": str(Path(self.output_dir) / (self.name + suffix)) if self.output_dir else None,
                }
                if rank is not None:
                    update["lora"] = self.lora.model_copy(update={"r": rank})
                runs.append(JobConfig.parse({**self.to_dict(), **_dumped(update)}, f"sweep run {suffix[1:]}"))
        return runs

    def with_overrides(self, assignments: list[str]) -> "JobConfig":
        """Apply `key=value` strings (dotted keys, YAML values), as given to `--set` on the command line."""
        data = self.to_dict()
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. training.epochs=2")
            *parents, leaf = key.strip().split(".")
            node = data
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            try:
                node[leaf] = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({exc})") from None
        return JobConfig.parse(data, "--set")


def _dumped(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value.model_dump(mode="json") if isinstance(value, BaseModel) else value for key, value in values.items()}


def _listed(names: list[str], last: str = "or") -> str:
    """Names as prose: `a, b or c`."""
    return f" {last} ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, naming the key and what it accepts."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "literal_error":
            allowed = error["ctx"]["expected"].replace("'", "")
            message = f"must be one of {allowed} (got {error['input']!r})"
        elif error["type"] == "extra_forbidden":
            message = "is not a known key"
        elif error["type"] == "missing":
            message = "is required"
        else:
            message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {message}" if key else message)  # a check across keys names its keys itself
    return f"Invalid {source}:\n  " + "\n  ".join(lines)


# Starting points offered by the Finetune tab. Every preset sets the same keys, so choosing one replaces them all; the
# learning rate comes from the model's size (MODEL_SIZES, LEARNING_RATES).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "quick test": {"training": {"epochs": 1.0, "max_steps": 30, "batch_size": 8, "save_steps": 10},
                   "lora": {"r": 16, "alpha": 32}},
    "balanced": {"training": {"epochs": 3.0, "max_steps": -1, "batch_size": 8, "save_steps": 50},
                 "lora": {"r": 16, "alpha": 32}},
    "thorough": {"training": {"epochs": 5.0, "max_steps": -1, "batch_size": 8, "save_steps": 50},
                 "lora": {"r": 32, "alpha": 64}},
}
DEFAULT_PRESET = "balanced"
# Size classes by parameter count (upper bounds, billions). The rate that works differs by orders of magnitude: the
# tiny demo models (~1 M) learn their samples at 3e-3 in tens of steps and learn nothing at 2e-4; LoRA on real models
# uses 2e-4 up to ~20B and 1e-4 above, the rates of the QLoRA paper (Dettmers et al. 2023: 7B/13B vs 33B/65B).
MODEL_SIZES: dict[str, float] = {"tiny": 0.05, "standard": 20.0, "large": float("inf")}
LEARNING_RATES: dict[str, dict[str, float]] = {  # model size -> preset -> peak learning rate
    "tiny": {"quick test": 3.0e-3, "balanced": 3.0e-3, "thorough": 3.0e-3},
    "standard": {"quick test": 2.0e-4, "balanced": 2.0e-4, "thorough": 1.0e-4},
    "large": {"quick test": 1.0e-4, "balanced": 1.0e-4, "thorough": 5.0e-5},
}


def model_size(params_b: float | None) -> str:
    """The size class (a key of MODEL_SIZES) of a model of `params_b` billion parameters; unknown: standard."""
    if params_b is None:
        return "standard"
    return next(size for size, below in MODEL_SIZES.items() if params_b < below)


def preset_overrides(preset: str, params_b: float | None) -> dict[str, dict[str, Any]]:
    """The config sections `preset` sets for a model of `params_b` billion parameters (None: unknown)."""
    overrides = {section: dict(values) for section, values in PRESETS[preset].items()}
    overrides["training"]["learning_rate"] = LEARNING_RATES[model_size(params_b)][preset]
    return overrides

