"""Will it fit? The memory a fine-tuning job needs, by plain arithmetic (no torch), and what would make it fit.

All figures are GB of 2**30 bytes, as NVML and the hardware report count them. With P the model's parameters, T the
trainable ones and p the bytes of the training precision (bf16/fp16: 2, fp32: 4):

- full:  weights P·p, gradients T·p, AdamW's two moments 8·T and, in 16-bit mixed precision, an fp32 master copy
         4·T: 16 bytes a parameter either way.
- lora:  frozen weights P·p; adapters T·4 (PEFT keeps them in fp32), their gradients T·4 and AdamW 8·T.
- qlora: lora on a base whose linear layers are NF4 with double quantization (4.127 bits = 0.516 bytes a weight);
         embeddings and the LM head stay in p.
- LoRA of rank r on every linear layer: T = r · layers · (8·h + 3·(h + i)) for q, k, v, o (h×h) and gate, up,
  down (h×i); k and v are counted h wide, an upper bound under grouped-query attention.
- Activations, after Korthikanti et al. 2022 ("Reducing activation recomputation in large transformer models") with a
  fused attention kernel (no s×s scores kept): a layer keeps s·b·(16·h + 6·i)·p/2 bytes (4·i for a non-gated MLP),
  b the batch, s the sequence length. LoRA adds s·b·(12·h + 2·i)·p/2: PEFT casts each adapted linear's input to the
  adapters' fp32 and autocast casts it back, so every adapter keeps its own copy of its input. Without checkpointing
  every layer keeps that; with it each layer keeps only its input (s·b·h·p) and one layer at a time is recomputed.
  The logits add s·b·vocab·(p + 8) bytes (the logits, their fp32 copy for the loss and its gradient).
- Per GPU of a job of N processes: DDP keeps all of it on every GPU; ZeRO-2 splits the gradients and optimizer state
  N ways; FSDP and ZeRO-3 split weights, adapters, gradients and optimizer state N ways. Activations stay per GPU.
- Total = the sum + OVERHEAD (15 %: CUDA context, allocator fragmentation, temporary buffers).
- Checked on an H100 (random 0.95B Llama, bf16 autocast, AdamW, batch 4 × 1024 tokens): measured peaks 20.9 GB
  (full), 17.8 (full, checkpointing), 9.6 (LoRA), 3.6 (LoRA, checkpointing); estimates 22.4, 18.3, 10.8, 4.4.
- Verdict: fits below 90 % of the available memory, tight up to 100 %, else does not fit.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from modelforge.errors import ConfigError
from modelforge.hardware import known_models

GB = 1024**3
OVERHEAD = 0.15
TIGHT_ABOVE = 0.90  # share of the available memory above which the verdict is "tight"
NF4_BYTES = 4.127 / 8
ADAM_BYTES = 8  # two fp32 moments a trainable parameter
MASTER_BYTES = 4  # fp32 master copy of a trainable parameter in 16-bit mixed precision
ADAPTER_BYTES = 4  # LoRA weights are fp32
GUESSED_VOCAB = 32000

METHODS: dict[str, str] = {  # method -> label; full: every weight trains; lora: adapters on a frozen base
    "full": "full fine-tuning",
    "lora": "LoRA",
    "qlora": "QLoRA (LoRA on a 4-bit base)",
}
PRECISION_BYTES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp32": 4}
SHARDING: dict[str, str] = {  # how a job of several processes splits its state -> label
    "none": "a full copy on each GPU",
    "zero2": "gradients and optimizer state split across the GPUs",
    "full": "weights, gradients and optimizer state split across the GPUs",
}
FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"
SEQ_LENGTHS = (8192, 4096, 2048, 1024, 512, 256, 128)


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model."""

    params: float  # all parameters (a count, not billions)
    hidden_size: int
    layers: int  # encoder + decoder layers for a seq2seq model
    vocab_size: int
    intermediate_size: int
    embedding_params: float  # input embeddings + an untied LM head: not quantized by QLoRA
    gated_mlp: bool = True  # gate, up and down projections (Llama, Qwen, T5 v1.1) rather than two
    source: str = ""  # where the figures come from, shown to the user

    @classmethod
    def from_params(cls, params_b: float, source: str = "") -> "ModelShape":
        """Guess a Llama-like shape from a parameter count: P ≈ 12·layers·h² with layers ≈ h/128, i = 8/3·h."""
        params = params_b * 1e9
        hidden = max(64, round((params * 128 / 12) ** (1 / 3) / 64) * 64)
        return cls(params=params, hidden_size=hidden, layers=max(1, round(hidden / 128)), vocab_size=GUESSED_VOCAB,
                   intermediate_size=round(hidden * 8 / 3 / 64) * 64,
                   embedding_params=min(2 * GUESSED_VOCAB * hidden, params / 2),
                   source=source or f"{format_params(params)} parameters; shape guessed from the count")

    @classmethod
    def from_entry(cls, model_id: str, entry: dict) -> "ModelShape":
        """A model of the recommended list (assets/recommended_models.yaml); missing shape fields are guessed."""
        guess = cls.from_params(entry["params_b"])
        hidden = entry.get("hidden_size", guess.hidden_size)
        vocab = entry.get("vocab_size", guess.vocab_size)
        return replace(guess, hidden_size=hidden, vocab_size=vocab, layers=entry.get("layers", guess.layers),
                       intermediate_size=entry.get("intermediate_size", guess.intermediate_size),
                       embedding_params=min(2 * vocab * hidden, guess.params),
                       source=f"{model_id}: {format_params(guess.params)} parameters (recommended list)")

    @classmethod
    def from_config(cls, config: dict, source: str = "config.json") -> "ModelShape":
        """Count parameters from a transformers config.json: per layer attention h·(q + 2·kv + o heads)·head_dim,
        MLP 3·h·i (gated) or 2·h·i, cross-attention 4·h·heads·head_dim in a seq2seq decoder; embeddings vocab·h, twice
        when the LM head is untied. Norms, biases and position embeddings (< 2 %) are left out."""
        def first(*keys, default=None):
            return next((config[key] for key in keys if config.get(key) is not None), default)

        hidden = first("hidden_size", "d_model", "n_embd", "dim")
        vocab = first("vocab_size")
        if hidden is None or vocab is None:
            raise ConfigError(f"{source} has no hidden size or vocabulary size: enter the parameter count instead")
        encoder_layers = first("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers", default=0)
        decoder_layers = first("num_decoder_layers", "decoder_layers", default=0)
        heads = first("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads", default=1)
        head_dim = first("head_dim", "d_kv", default=hidden // heads)
        kv_heads = first("num_key_value_heads", default=heads)
        intermediate = first("intermediate_size", "d_ff", "n_inner", "ffn_dim", "encoder_ffn_dim", "hidden_dim",
                             default=4 * hidden)
        gated = (str(config.get("feed_forward_proj", "")).startswith("gated")
                 or first("hidden_act", "hidden_activation", default="") in ("silu", "swish")
                 or str(config.get("model_type", "")).startswith("gemma"))
        layers = encoder_layers + decoder_layers
        attention = hidden * (2 * heads + 2 * kv_heads) * head_dim
        per_layer = attention + (3 if gated else 2) * hidden * intermediate
        embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", True) else 2)
        params = layers * per_layer + decoder_layers * 4 * hidden * heads * head_dim + embeddings
        return cls(params=params, hidden_size=hidden, layers=layers, vocab_size=vocab, intermediate_size=intermediate,
                   embedding_params=embeddings, gated_mlp=gated, source=source)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ModelShape":
        """A local model folder: the shape from config.json, the exact count from its safetensors headers (adapter
        files aside: they hold LoRA weights, not the model's)."""
        folder = Path(folder)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{folder} has no config.json: enter the model's parameter count instead")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        shape = cls.from_config(config, source=f"{folder.name}: config.json")
        files = [path for path in sorted(folder.glob("*.safetensors")) if not path.name.startswith("adapter")]
        if files and "quantization_config" not in config:  # a quantized file packs several weights in one element
            shape = replace(shape, params=sum(safetensors_params(path) for path in files),
                            source=f"{folder.name}: config.json and safetensors")
        return shape

    def with_params(self, params_b: float) -> "ModelShape":
        """The same model with another count; far from this one's (±20 %) the shape is guessed from the count."""
        if abs(params_b * 1e9 - self.params) > 0.2 * self.params:
            return ModelShape.from_params(params_b)
        return replace(self, params=params_b * 1e9, embedding_params=min(self.embedding_params, params_b * 1e9),
                       source=f"{format_params(params_b * 1e9)} parameters (entered); shape of "
                              f"{self.source.split(':')[0]}")


def safetensors_params(path: str | Path) -> int:
    """The number of elements in a .safetensors file, read from its JSON header (8-byte little-endian length)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return sum(math.prod(tensor["shape"]) for key, tensor in header.items() if key != "__metadata__")


def resolve_model(model: str | None, params_b: float | None = None, models_dir: str | Path | None = None) -> ModelShape:
    """The shape of `model`: a local folder (as a path, or a name under `models_dir`) with a config.json, or an id of
    the recommended list. `params_b` overrides the count, and alone describes a model by its size."""
    model = (model or "").strip()
    shape = None
    if model:
        folder = next((path for path in (Path(model).expanduser(), Path(models_dir or ".") / model)
                       if (path / "config.json").is_file()), None)
        known = known_models()
        if folder is not None:
            shape = ModelShape.from_folder(folder)
        elif model in known:
            shape = ModelShape.from_entry(model, known[model])
        elif not params_b:
            raise ConfigError(f"{model} is neither in the recommended list nor a local folder with a config.json: "
                              "enter its parameter count in billions")
    if params_b:
        if params_b <= 0:
            raise ConfigError("the parameter count must be positive (in billions, e.g. 7 or 0.135)")
        return shape.with_params(params_b) if shape else ModelShape.from_params(params_b)
    if shape is None:
        raise ConfigError("choose a model or enter its parameter count in billions")
    return shape


# The size many Hub ids carry: Llama-3.1-70B-Instruct, SmolLM2-135M, opt-1.3b (not the 2.5 of Qwen2.5-7B).
_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)([BbMm])(?![A-Za-z])")


def model_params_b(model: str | None, models_dir: str | Path | None = None) -> float | None:
    """Billions of parameters of `model` (None: the demo model): a local folder's or the recommended list's count,
    else the size written in its name; None when neither tells."""
    try:
        return resolve_model(model or "demo", None, models_dir).params / 1e9
    except ConfigError:
        sizes = [float(number) / (1000 if unit in "Mm" else 1) for number, unit in _SIZE_IN_NAME.findall(model or "")]
        return max(sizes) if sizes else None


@dataclass(frozen=True)
class FitSetup:
    """How the model is to be trained: the inputs of the estimate besides the model."""

    method: str = "lora"  # a key of METHODS
    precision: str = "bf16"  # a key of PRECISION_BYTES; the compute precision for qlora
    batch_size: int = 1
    seq_length: int = 512
    lora_rank: int = 16
    gradient_checkpointing: bool = True
    processes: int = 1  # GPUs the job trains on together; the estimate is for one of them
    sharding: str = "none"  # a key of SHARDING

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.sharding not in SHARDING:
            raise ConfigError(f"sharding must be one of {', '.join(SHARDING)}, not {self.sharding!r}")
        if self.precision not in PRECISION_BYTES:
            raise ConfigError(f"precision must be one of {', '.join(PRECISION_BYTES)}, not {self.precision!r}")
        for name in ("batch_size", "seq_length", "lora_rank", "processes"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1")


@dataclass(frozen=True)
class Suggestion:
    text: str  # what to change, with the new total
    setup: FitSetup
    total_gb: float


@dataclass(frozen=True)
class FitEstimate:
    shape: ModelShape
    setup: FitSetup
    budget_gb: float | None  # the memory available; None: unknown
    trainable_params: float
    weights_gb: float
    adapters_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    total_gb: float
    verdict: str  # fits, tight, does not fit, or unknown without a budget
    suggestions: list[Suggestion]

    def rows(self) -> list[list]:
        """The breakdown as [part, GB] rows, total last."""
        parts = ("weights", "adapters", "gradients", "optimizer", "activations", "overhead", "total")
        return [[part, round(getattr(self, f"{part}_gb"), 3)] for part in parts]

    def to_dict(self) -> dict:
        return asdict(self)


def trainable_params(shape: ModelShape, setup: FitSetup) -> float:
    if setup.method == "full":
        return shape.params
    h, i = shape.hidden_size, shape.intermediate_size
    return setup.lora_rank * shape.layers * (8 * h + 3 * (h + i))


def activation_bytes(shape: ModelShape, setup: FitSetup) -> float:
    """Activations kept for the backward pass, including the logits (formula in the module docstring)."""
    p = PRECISION_BYTES[setup.precision]
    tokens = setup.batch_size * setup.seq_length
    width = 16 * shape.hidden_size + (6 if shape.gated_mlp else 4) * shape.intermediate_size
    if setup.method != "full":
        width += 12 * shape.hidden_size + 2 * shape.intermediate_size  # each adapter's own copy of its input
    per_layer = tokens * width * p / 2
    if setup.gradient_checkpointing:
        layers = shape.layers * tokens * shape.hidden_size * p + per_layer
    else:
        layers = shape.layers * per_layer
    return layers + tokens * shape.vocab_size * (p + 8)


def verdict(total_gb: float, budget_gb: float | None) -> str:
    if not budget_gb or budget_gb <= 0:
        return "unknown"
    if total_gb <= TIGHT_ABOVE * budget_gb:
        return FITS
    return TIGHT if total_gb <= budget_gb else NO_FIT


def breakdown(shape: ModelShape, setup: FitSetup) -> dict[str, float]:
    """The memory of each part in GB, overhead and total included (formulas in the module docstring)."""
    p = PRECISION_BYTES[setup.precision]
    trainable = trainable_params(shape, setup)
    if setup.method == "full":
        weights, adapters = shape.params * p, 0.0
        gradients = trainable * p
        optimizer = trainable * (ADAM_BYTES + (MASTER_BYTES if p < 4 else 0))
    else:
        if setup.method == "qlora":
            weights = (shape.params - shape.embedding_params) * NF4_BYTES + shape.embedding_params * p
        else:
            weights = shape.params * p
        adapters = gradients = trainable * ADAPTER_BYTES
        optimizer = trainable * ADAM_BYTES
    split = setup.processes if setup.sharding != "none" else 1
    if setup.sharding == "full":
        weights, adapters = weights / split, adapters / split
    parts = {"weights": weights, "adapters": adapters, "gradients": gradients / split, "optimizer": optimizer / split,
             "activations": activation_bytes(shape, setup)}
    subtotal = sum(parts.values())
    parts.update(overhead=subtotal * OVERHEAD, total=subtotal * (1 + OVERHEAD))
    return {part: value / GB for part, value in parts.items()}


def total_gb(shape: ModelShape, setup: FitSetup) -> float:
    return breakdown(shape, setup)["total"]


def estimate(shape: ModelShape, setup: FitSetup, budget_gb: float | None = None) -> FitEstimate:
    """The memory `setup` needs for `shape`, its verdict against `budget_gb` and, unless it fits, suggestions."""
    parts = breakdown(shape, setup)
    return FitEstimate(
        shape=shape, setup=setup, budget_gb=budget_gb, trainable_params=trainable_params(shape, setup),
        **{f"{part}_gb": value for part, value in parts.items()},
        verdict=verdict(parts["total"], budget_gb), suggestions=suggest(shape, setup, budget_gb),
    )


def format_gb(value: float) -> str:
    return f"{value:.1f} GB" if value >= 1 else f"{value * 1024:.0f} MB"


def format_params(count: float) -> str:
    return f"{count / 1e9:.3g}B" if count >= 1e9 else f"{count / 1e6:.3g}M"


def _single_changes(setup: FitSetup, good) -> list[tuple[str, FitSetup]]:
    """One change at a time, least disruptive first; for batch size and length, the largest value that is good."""
    changes = []
    if not setup.gradient_checkpointing:
        changes.append(("turn on gradient checkpointing (about 30 % slower)",
                        replace(setup, gradient_checkpointing=True)))
    batch = setup.batch_size // 2
    while batch >= 1:
        if good(replace(setup, batch_size=batch)):
            steps = math.ceil(setup.batch_size / batch)
            changes.append((f"batch size {batch} with gradient_accumulation {steps} (the same "
                            f"{batch * steps} rows per update)", replace(setup, batch_size=batch)))
            break
        batch //= 2
    for length in (length for length in SEQ_LENGTHS if length < setup.seq_length):
        if good(replace(setup, seq_length=length)):
            changes.append((f"max_length {length} (longer rows are truncated)", replace(setup, seq_length=length)))
            break
    if setup.method == "full":
        changes.append(("use LoRA", replace(setup, method="lora")))
    if setup.method != "qlora":
        changes.append(("use QLoRA (LoRA on a 4-bit base)", replace(setup, method="qlora")))
    if setup.precision == "fp32":
        changes.append(("train in bf16 (fp16 on GPUs older than Ampere)", replace(setup, precision="bf16")))
    if setup.method != "full" and setup.lora_rank > 8:
        changes.append(("LoRA rank 8", replace(setup, lora_rank=8)))
    return changes


def suggest(shape: ModelShape, setup: FitSetup, budget_gb: float | None) -> list[Suggestion]:
    """Changes that bring the estimate under the budget (to "fits" when it is already "tight"), each re-estimated.
    Single changes first; if none is enough, the memory savers combined; if even that is not, a smaller model."""
    current = verdict(total_gb(shape, setup), budget_gb)
    if current in (FITS, "unknown"):
        return []
    wanted = (FITS,) if current == TIGHT else (FITS, TIGHT)

    def good(candidate: FitSetup) -> bool:
        return verdict(total_gb(shape, candidate), budget_gb) in wanted

    def suggestion(text: str, candidate: FitSetup) -> Suggestion:
        new_total = total_gb(shape, candidate)
        return Suggestion(f"{text}: {format_gb(new_total)}", candidate, new_total)

    found = [suggestion(text, candidate) for text, candidate in _single_changes(setup, good) if good(candidate)]
    if found:
        return found
    steps, lean = [], setup
    for text, change in (
        ("gradient checkpointing", {"gradient_checkpointing": True}),
        ("QLoRA", {"method": "qlora"}),
        ("bf16", {"precision": "bf16"} if setup.precision == "fp32" else {}),
        ("batch size 1 with gradient accumulation", {"batch_size": 1}),
    ):
        candidate = replace(lean, **change)
        if candidate == lean:
            continue
        steps.append(text)
        lean = candidate
        if good(lean):
            return [suggestion("combine " + ", ".join(steps), lean)]
    for length in (length for length in SEQ_LENGTHS if length < lean.seq_length):
        if good(replace(lean, seq_length=length)):
            return [suggestion("combine " + ", ".join([*steps, f"max_length {length}"]),
                               replace(lean, seq_length=length))]
    lean = replace(lean, seq_length=setup.seq_length)
    low, high = 0.0, shape.params / 1e9
    for _ in range(30):  # bisect the largest guessed-shape model that fits the lean setup
        middle = (low + high) / 2
        if verdict(total_gb(ModelShape.from_params(middle), lean), budget_gb) in wanted:
            low = middle
        else:
            high = middle
    if low < 0.01:
        return []
    smaller = ModelShape.from_params(low)
    return [Suggestion(f"a smaller model, up to about {low:.2g}B parameters, with "
                       f"{', '.join(steps) or 'this setup'}: {format_gb(total_gb(smaller, lean))}",
                       lean, total_gb(smaller, lean))]

