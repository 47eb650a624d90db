"""The playground's model host: one tuned model per server (with its base, to compare), loaded in the background.

A LoRA job's base model is the same weights with the adapter switched off, so comparing costs no memory; only a full
fine-tune compared side by side holds a second model.

The web process imports this module at start-up, so torch, transformers and peft are imported only inside the
functions that load or run a model.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelforge import prompts, run_folder
from modelforge.config import JobConfig
from modelforge.errors import JobError, ModelForgeError, ModelLoadError
from modelforge.loading import load, resolve_model_path
from modelforge.prediction import answer_question
from modelforge.runtime import inference_runtime
from modelforge.settings import Settings
from modelforge.tasks import TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """What to load: a model folder or hub id, optionally with a LoRA adapter on top."""

    name: str  # shown in the status line
    model: str  # folder or hub id of the (base) model
    adapter: str | None = None  # folder of a peft adapter to apply on `model`
    tokenizer: str | None = None  # where the tokenizer lies when not beside `model`
    quantization: str | None = None  # 4bit | 8bit, applied on a GPU only
    task: str = "chat"  # decides the model class: causal LM, sequence-to-sequence, or span QA
    base: str | None = None  # a full fine-tune's base model, loaded beside it when compared side by side


def job_source(job, settings: Settings) -> ModelSource:
    """The model a completed job produced: its adapter on the job's base model, or its full model."""
    if job.status != "completed":
        raise JobError(f"Job #{job.id} is {job.status}; only a completed job has a model to chat with.")
    output_dir = Path(job.output_dir)
    if not output_dir.is_dir():
        raise ModelLoadError(f"Job #{job.id}'s output folder {output_dir} is missing: it was moved or deleted.")
    name = f"#{job.id} {job.name}"
    config = JobConfig.from_json(job.config)
    base = resolve_model_path(config, settings)
    if not run_folder.is_adapter(output_dir):
        return ModelSource(name=name, model=str(output_dir), task=config.task, base=base)
    return ModelSource(
        name=name,
        model=base,
        adapter=str(output_dir),
        tokenizer=str(output_dir),
        quantization=config.quantization,
        task=config.task,
    )


def path_source(text: str, task: str = "chat") -> ModelSource:
    """A model typed by the user: a local folder (a full model or an adapter) or a hub id."""
    model = text.strip()
    folder = Path(model).expanduser()
    if not run_folder.is_adapter(folder):
        return ModelSource(name=model, model=model, task=task)
    base = run_folder.read_adapter_config(folder).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(
            f"{folder} holds an adapter whose {run_folder.ADAPTER_CONFIG} names no base_model_name_or_path."
        )
    has_tokenizer = (folder / "tokenizer_config.json").is_file()
    return ModelSource(
        name=model, model=base, adapter=str(folder), tokenizer=str(folder) if has_tokenizer else None, task=task
    )


def chat_messages(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Gradio chat history (content as a string or a list of parts) as plain role/content messages."""
    messages = []
    for message in history:
        content = message["content"]
        if isinstance(content, str):
            text = content
        else:  # Gradio 6: [{'type': 'text', 'text': ...}, {'type': 'file', ...}]; only text reaches the model
            parts = content if isinstance(content, list) else [content]
            text = "".join(part["text"] for part in parts if isinstance(part, dict) and part.get("type") == "text")
        messages.append({"role": message["role"], "content": text})
    return messages


@dataclass
class _Loaded:
    source: ModelSource
    model: Any
    tokenizer: Any
    base_model: Any = None  # a full fine-tune's base, when loaded to compare

    def variant(self, which: str):
        """(model, context to run it in) for the tuned model or its base."""
        if which == "tuned":
            return self.model, nullcontext()
        if self.source.adapter:
            return self.model, self.model.disable_adapter()
        if self.base_model is not None:
            return self.base_model, nullcontext()
        raise ModelLoadError(
            f"{self.source.name} has no base model to compare with: load a finished job (a full fine-tune needs "
            "'side by side' ticked when it is loaded), or untick 'side by side'."
        )


class ModelHost:
    """Holds at most one chat model for the whole server; every method is safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loaded: _Loaded | None = None
        self._loading: ModelSource | None = None
        self._error: str | None = None
        self._ticket = 0  # bumped by every load and unload, so that a superseded load is discarded
        # One generation at a time: the base of a LoRA model is the same module with its adapter switched off.
        self._generating = threading.Lock()

    # -- state ---------------------------------------------------------------------------------------
    @property
    def loading(self) -> bool:
        with self._lock:
            return self._loading is not None

    def status(self) -> str:
        with self._lock:
            return self._status()

    def _status(self) -> str:
        if self._loading is not None:
            return f"loading {self._loading.name}…"
        if self._loaded is not None:
            return f"ready: {self._loaded.source.name}"
        if self._error is not None:
            return f"error: {self._error}"
        return "no model loaded"

    def wait(self, timeout: float | None = None) -> str:
        """Block until the current load ends (or `timeout` seconds pass) and return the status."""
        with self._changed:
            self._changed.wait_for(lambda: self._loading is None, timeout)
            return self._status()

    # -- loading -------------------------------------------------------------------------------------
    def load(self, source: ModelSource, compare: bool = False) -> str:
        """Unload the current model and load `source` in a background thread; returns the status at once.

        With `compare`, a full fine-tune's base model is loaded beside it (an adapter's base needs nothing more).
        """
        with self._changed:
            self._ticket += 1
            ticket = self._ticket
            self._release()
            self._loading, self._error = source, None
            self._changed.notify_all()
        threading.Thread(target=self._load, args=(source, compare, ticket), name="modelforge-load", daemon=True).start()
        return self.status()

    @property
    def task(self) -> str | None:
        with self._lock:
            return self._loaded.source.task if self._loaded else None

    def unload(self) -> str:
        """Drop the model (and any load in progress) and free its memory."""
        with self._changed:
            self._ticket += 1
            self._loading, self._error = None, None
            self._release()
            self._changed.notify_all()
            return self._status()

    def _load(self, source: ModelSource, compare: bool, ticket: int) -> None:
        loaded, error = None, None
        try:
            loaded = _Loaded(source, *load_model(source))
            if compare and source.base and not source.adapter:
                loaded.base_model, _ = load_model(ModelSource(name=source.base, model=source.base, task=source.task))
        except ModelForgeError as exc:
            error = str(exc)
        except Exception as exc:  # the thread's top: whatever went wrong becomes the status the user sees
            log.exception("loading %s failed", source.name)
            error = f"Could not load {source.name}: {type(exc).__name__}: {exc}"
        with self._changed:
            if ticket != self._ticket:  # unloaded or replaced while loading
                log.info("discarding %s: superseded while it loaded", source.name)
                return
            self._loaded, self._loading, self._error = loaded, None, error
            self._changed.notify_all()
        if loaded:
            log.info("loaded %s", source.name)

    def _release(self) -> None:
        """Drop the reference to the loaded model and free its memory (called with the lock held)."""
        if self._loaded is None:
            return
        log.info("unloading %s", self._loaded.source.name)
        self._loaded = None
        gc.collect()
        import torch  # already imported: a model was loaded

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- generation ----------------------------------------------------------------------------------
    def ready(self) -> _Loaded:
        """The loaded model, or a clear error while none is ready (nothing loaded, or a load under way)."""
        with self._lock:
            if self._loaded is None:
                raise ModelLoadError(f"No model is ready ({self._status()}): load a job's model or a model id first.")
            return self._loaded

    def answer(self, question: str, context: str, which: str = "tuned") -> dict[str, Any]:
        """The span of `context` that answers `question` (extractive QA models): text, start, end, score."""
        loaded = self.ready()
        if TASKS[loaded.source.task].family != "qa":
            raise ModelLoadError(f"{loaded.source.name} is loaded for {loaded.source.task}, not extractive question answering.")
        model, context_manager = loaded.variant(which)
        with self._generating, context_manager:
            return answer_question(model, loaded.tokenizer, question, context)

    def stream(
        self,
        history: list[dict[str, Any]],
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.95,
        which: str = "tuned",
    ) -> Iterator[str]:
        """Yield the reply to the conversation `history` as it grows (the whole text so far each time).

        temperature 0 decodes greedily (deterministic); otherwise tokens are sampled with temperature and top_p.
        `which` picks the tuned model or its base. An encoder-decoder model answers the last message alone.
        """
        loaded = self.ready()
        if TASKS[loaded.source.task].family == "qa":
            raise ModelLoadError(f"{loaded.source.name} answers questions from a context; it does not generate text.")
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, context_manager = loaded.variant(which)
        tokenizer = loaded.tokenizer
        inputs = encode_prompt(tokenizer, chat_messages(history), model.config).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()  # set when the caller stops listening, so the generation ends early

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return stop.is_set()

        sampling = (
            dict(do_sample=True, temperature=float(temperature), top_p=float(top_p))
            if temperature > 0
            else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        )
        failures: list[BaseException] = []

        def generate() -> None:
            try:
                with context_manager:
                    model.generate(
                        **inputs,
                        **sampling,
                        max_new_tokens=int(max_new_tokens),
                        pad_token_id=tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([StopWhenAsked()]),
                    )
            except Exception as exc:  # reported to the caller below, after the streamer is ended
                failures.append(exc)
                streamer.end()

        text = ""
        with self._generating:
            thread = threading.Thread(target=generate, name="modelforge-generate", daemon=True)
            thread.start()
            try:
                for piece in streamer:
                    if piece:
                        text += piece
                        yield text
            finally:
                stop.set()
                thread.join()
        if failures:
            raise ModelForgeError(f"Generation with {loaded.source.name} failed: {failures[0]}") from failures[0]


def encode_prompt(tokenizer, messages: list[dict[str, str]], model_config):
    """Token ids of the conversation, ending where the assistant's answer starts, as the model was trained."""
    from transformers import BatchEncoding

    if model_config.is_encoder_decoder:  # e.g. a summarizer: the document is the whole input
        return tokenizer(messages[-1]["content"] if messages else "", return_tensors="pt", truncation=True)
    ids = prompts.prompt_ids(tokenizer, prompts.conversation_prompt(tokenizer, messages))
    return BatchEncoding({"input_ids": [ids], "attention_mask": [[1] * len(ids)]}, tensor_type="pt")


def load_model(source: ModelSource):
    """Load (model, tokenizer) for `source` and its task, on the GPU when there is one, else on the CPU."""
    runtime = inference_runtime()
    quantization = source.quantization if runtime.device == "cuda" else None
    loaded = load(source.model, source.task, runtime, quantization=quantization, tokenizer=source.tokenizer,
                  adapter=source.adapter, name=source.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.eval()
    return model, tokenizer
