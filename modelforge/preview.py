"""What the model will see of a dataset, read in the web process without torch or transformers: a model's
`tokenizer.json` (the `tokenizers` library) and its chat template, rendered in jinja2's sandbox as transformers renders
it; the first rows as the model sees them, and their token lengths."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from modelforge import prompts
from modelforge.config import TrainingConfig
from modelforge.errors import ModelLoadError, NotReadyError
from modelforge.settings import Settings
from modelforge.tasks import TASKS

DEFAULT_MAX_LENGTH: int = TrainingConfig.model_fields["max_length"].default
DEMO_MODEL = "built-in demo model"

_HUB_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
# Private-use characters the template renderer puts around a `{% generation %}` part, removed from the text it returns.
_GENERATION_START, _GENERATION_END = "\ue000", "\ue001"


@dataclass(frozen=True)
class LightTokenizer:
    """A model's tokenizer and chat template, read without transformers."""

    folder: Path
    backend: Any  # tokenizers.Tokenizer
    chat_template: str | None
    special_tokens: dict[str, str]  # bos_token, eos_token, ...: the names chat templates use
    encoder_decoder: bool = False  # reads the input alone and learns to write the output

    def render(self, record: dict[str, Any], task: str) -> str:
        """A canonical record as the text the model trains on (modelforge.prompts), special tokens included."""
        if "chosen" in record:  # a preference pair, whatever the task: shown as its prompt and chosen answer
            record, task = {"input": record["prompt"], "output": record["chosen"]}, "text-generation"
        if TASKS[task].family == "qa":  # the question and the context, as the tokenizer pairs them for the span head
            return self.backend.decode(self.encode([record], task)[0], skip_special_tokens=False)
        if self.encoder_decoder:  # the encoder's input, then the target the decoder learns
            source, target = (
                self.backend.decode(self.backend.encode(record[key]).ids, skip_special_tokens=False)
                for key in ("input", "output")
            )
            return f"{source}\n→ {target}"
        if self.chat_template is None:
            if TASKS[task].conversation:  # no format to train on without a template: the turns, for reading
                return "\n".join(f"{turn['role']}: {turn['content']}" for turn in record["messages"])
            return prompts.plain_prompt(record["input"]) + record["output"] + self.special_tokens.get("eos_token", "")
        return self.render_messages(prompts.conversation(record, task))[0]

    def render_messages(self, messages: list[dict], add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
        """The conversation through the chat template, and the (start, end) characters of each `{% generation %}`
        part (the assistant's tokens that assistant-only loss trains)."""
        import jinja2

        try:
            marked = _compile(self.chat_template).render(
                messages=messages, add_generation_prompt=add_generation_prompt, **self.special_tokens
            )
        except jinja2.TemplateError as exc:
            raise ModelLoadError(f"the chat template of {self.folder} failed on this row: {exc}") from None
        text, spans, start = "", [], 0
        for piece in re.split(f"([{_GENERATION_START}{_GENERATION_END}])", marked):
            if piece == _GENERATION_START:
                start = len(text)
            elif piece == _GENERATION_END:
                spans.append((start, len(text)))
            else:
                text += piece
        return text, spans

    def encode(self, records: list[dict[str, Any]], task: str) -> list[list[int]]:
        """The token ids of each rendered record."""
        if TASKS[task].family == "qa":
            encodings = self.backend.encode_batch([prompts.span_pair(record) for record in records])
        elif self.encoder_decoder:  # the encoder's input: the longer side of a summary pair
            encodings = self.backend.encode_batch([record["input"] for record in records])
        else:  # a chat template writes its special tokens into the text; plain text gets the tokenizer's own
            texts = [self.render(record, task) for record in records]
            encodings = self.backend.encode_batch(texts, add_special_tokens=self.chat_template is None)
        return [encoding.ids for encoding in encodings]


def resolve_model_folder(
    settings: Settings, model: str | Path | None = None, task: str = "text-generation"
) -> tuple[Path, str]:
    """(folder holding tokenizer.json, note for the user): the task's demo model when `model` is empty, a local folder,
    or a Hub model's cached or downloaded tokenizer files; the demo model, with a note saying so, when a Hub model
    cannot be had."""
    model = str(model or "").strip()
    if not model or model == DEMO_MODEL:
        return _demo_folder(settings, task), ""
    if Path(model).expanduser().exists():
        folder = Path(model).expanduser()
        if not (folder / "tokenizer.json").is_file():
            raise ModelLoadError(f"{folder} has no tokenizer.json; give a model folder saved with a fast tokenizer")
        return folder, ""
    if not _HUB_MODEL.fullmatch(model):
        raise ModelLoadError(f"{model}: no such folder, and not a Hugging Face Hub model id (owner/name)")
    try:
        from huggingface_hub import hf_hub_download

        folder = Path(hf_hub_download(model, "tokenizer.json")).parent
        hf_hub_download(model, "tokenizer_config.json")
    except Exception as exc:  # offline, unknown, gated or without a fast tokenizer: hub errors have many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        note = (
            f"The tokenizer of {model} is not available offline or from the Hub ({reason}); "
            "the preview and token counts use the demo model's tokenizer instead."
        )
        return _demo_folder(settings, task), note
    try:
        hf_hub_download(model, "chat_template.jinja")
    except Exception:  # most models keep their template in tokenizer_config.json
        pass
    return folder, ""


def load_tokenizer(model_folder: str | Path) -> LightTokenizer:
    """The tokenizer.json and chat template of a model folder (chat_template.jinja or tokenizer_config.json)."""
    folder = Path(model_folder).resolve()
    try:
        changed = max(path.stat().st_mtime_ns for path in folder.iterdir() if path.suffix in (".json", ".jinja"))
    except (OSError, ValueError):  # no such folder, or no tokenizer files in it
        message = f"{model_folder} holds no tokenizer.json; give a model folder with a fast tokenizer"
        raise ModelLoadError(message) from None
    return _load_tokenizer(folder, changed)


@lru_cache(maxsize=8)
def _load_tokenizer(folder: Path, changed: int) -> LightTokenizer:
    """Cached per folder until one of its tokenizer files changes (`changed` is the newest modification time)."""
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # missing or unreadable: tokenizers raises plain Exception
        raise ModelLoadError(f"cannot read the tokenizer of {folder}: {exc}") from None
    try:
        # special_tokens_map.json is written by older transformers; tokenizer_config.json wins where both name a token
        special_map = _read_json(folder / "special_tokens_map.json")
        config = _read_json(folder / "tokenizer_config.json")
        template_path = folder / "chat_template.jinja"
        template = template_path.read_text(encoding="utf-8") if template_path.is_file() else config.get("chat_template")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the tokenizer settings of {folder}: {exc}") from None
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        template = {entry["name"]: entry["template"] for entry in template}.get("default")
    special = {}
    for key, value in {**special_map, **config}.items():
        if key.endswith("_token") and isinstance(value, (str, dict)):
            special[key] = value["content"] if isinstance(value, dict) else value
    encoder_decoder = bool(_read_json(folder / "config.json").get("is_encoder_decoder"))
    return LightTokenizer(folder, backend, template or None, special, encoder_decoder)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def preview(records: list[dict[str, Any]], task: str, model_folder: str | Path, limit: int = 5) -> list[str]:
    """The first `limit` records rendered exactly as the model will see them (its chat template applied)."""
    tokenizer = load_tokenizer(model_folder)
    return [tokenizer.render(record, task) for record in records[:limit]]


def token_stats(
    records: list[dict[str, Any]], task: str, model_folder: str | Path, max_length: int = DEFAULT_MAX_LENGTH
) -> dict[str, Any]:
    """Token lengths of the rendered records: count, min, mean, median, p95, max, and rows over `max_length`
    (which training truncates); `lengths` holds every row's length, for plots.token_histogram.
    """
    tokenizer = load_tokenizer(model_folder)
    lengths = [len(ids) for ids in tokenizer.encode(records, task)]
    ordered = sorted(lengths)
    count = len(ordered)
    return {
        "count": count,
        "min": ordered[0] if count else 0,
        "mean": sum(ordered) / count if count else 0.0,
        "median": _percentile(ordered, 0.5),
        "p95": _percentile(ordered, 0.95),
        "max": ordered[-1] if count else 0,
        "max_length": max_length,
        "over_max_length": sum(length > max_length for length in ordered),
        "lengths": lengths,
    }


def _percentile(ordered: list[int], fraction: float) -> float:
    """Linear interpolation between the closest ranks, as numpy.percentile does by default."""
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _demo_folder(settings: Settings, task: str) -> Path:
    from modelforge.demo_model import build_state, demo_kind, ensure_demo_model_in_subprocess

    kind = demo_kind(task)
    state = build_state(settings.models_dir, kind)
    if state.building:  # the web app builds it in the background at its first start
        raise NotReadyError(f"{state.describe()} The preview and token counts follow once it is ready: "
                            "press Validate again then.")
    return ensure_demo_model_in_subprocess(settings.models_dir, kind)


@lru_cache(maxsize=16)
def _compile(template: str):
    """A chat template compiled the way transformers compiles it: sandboxed, with its helpers and generation tag."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` marks the assistant's tokens for training: the text is kept,
        between two marker characters that render_messages turns into character spans."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return f"{_GENERATION_START}{caller()}{_GENERATION_END}"

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        from datetime import datetime

        return datetime.now().strftime(format)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = tojson
    environment.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ModelLoadError(f"the model's chat template is not valid jinja: {exc}") from None
