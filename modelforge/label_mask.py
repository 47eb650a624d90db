"""The label-mask X-ray: which tokens of a row the SFT strategy trains on, and which it masks, seen before training.

It takes the rows the strategy itself builds (sft.to_sft_rows), renders them through the model's own chat template
(or the plain prompt format when it has none) and tokenizes them as TRL's SFTTrainer does: a prompt/completion row
trains the tokens after the longest common prefix of the tokenized prompt and prompt+completion; a conversation
trains the tokens inside the template's `{% generation %}` marks; truncation to max_length comes last. A test checks
the result against the labels of a real SFTTrainer. Light, like the preview: tokenizers and jinja2, no transformers.

`check` refuses data that would train on nothing, or train a model that never learns to stop.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelforge import gguf, preview
from modelforge.config import JobConfig
from modelforge.preview import LightTokenizer
from modelforge.demo_model import DEMO_MODELS, demo_kind
from modelforge.errors import DatasetError
from modelforge.prompts import GENERATION_MARK
from modelforge.settings import Settings
from modelforge.strategies import STRATEGIES
from modelforge.strategies.sft import to_sft_rows
from modelforge.tasks import TASKS

CHECK_SAMPLE = 2000


@dataclass(frozen=True)
class RowMask:
    """One row as the trainer sees it: its tokens (text pieces, special tokens by name), their ids, and which count."""

    pieces: list[str]
    ids: list[int]
    trained: list[bool]

    @property
    def trained_text(self) -> str:
        return "".join(piece for piece, trained in zip(self.pieces, self.trained) if trained)

    def highlighted(self) -> list[tuple[str, str | None]]:
        """(text, "trained" or None) spans for gr.HighlightedText, neighbouring tokens of one kind joined."""
        spans: list[tuple[str, str | None]] = []
        for piece, trained in zip(self.pieces, self.trained):
            label = "trained" if trained else None
            if spans and spans[-1][1] == label:
                spans[-1] = (spans[-1][0] + piece, label)
            else:
                spans.append((piece, label))
        return spans


def applies(strategy: str | None, task: str, tokenizer: LightTokenizer) -> bool:
    """Whether the X-ray shows what `strategy` (None: not chosen yet, so sft) trains: the SFT rows of a causal-LM
    task on a model that is not an encoder-decoder."""
    if (strategy is not None and STRATEGIES[strategy].pairs) or "causal" not in TASKS[task].families:
        return False
    return not tokenizer.encoder_decoder


def xray(tokenizer: LightTokenizer, records: list[dict[str, Any]], task: str, max_length: int) -> list[RowMask]:
    """The trained/masked tokens of each record, for a causal-LM task (see applies)."""
    return [_mask(tokenizer, row, max_length) for row in to_sft_rows(records, task, tokenizer)]


def _mask(tokenizer: LightTokenizer, row: dict[str, Any], max_length: int) -> RowMask:
    if "messages" in row:  # a conversation whose template marks the assistant's turns
        text, spans = tokenizer.render_messages(row["messages"])
        encoding = tokenizer.backend.encode(text, add_special_tokens=False)
        trained = [any(start < end and a <= start < b for a, b in spans) for start, end in encoding.offsets]
    else:
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, list):
            prompt_text, _ = tokenizer.render_messages(prompt, add_generation_prompt=True)
            text, _ = tokenizer.render_messages(prompt + completion)
            special = False
        else:  # plain text: TRL ends the answer with the EOS token
            prompt_text, text = prompt, prompt + completion + (tokenizer.special_tokens.get("eos_token") or "")
            special = True
        prompt_ids = tokenizer.backend.encode(prompt_text, add_special_tokens=special).ids
        encoding = tokenizer.backend.encode(text, add_special_tokens=special)
        shared = next((i for i, (a, b) in enumerate(zip(prompt_ids, encoding.ids)) if a != b),
                      min(len(prompt_ids), len(encoding.ids)))
        trained = [index >= shared for index in range(len(encoding.ids))]
    pieces = [text[start:end] if end > start else token
              for (start, end), token in zip(encoding.offsets, encoding.tokens)]
    return RowMask(pieces[:max_length], encoding.ids[:max_length], trained[:max_length])


def end_of_turn_ids(tokenizer: LightTokenizer) -> set[int]:
    """The ids that end an answer: the EOS token and the generation config's eos_token_id(s)."""
    ids = set()
    eos = tokenizer.special_tokens.get("eos_token")
    if eos and tokenizer.backend.token_to_id(eos) is not None:
        ids.add(tokenizer.backend.token_to_id(eos))
    generation = tokenizer.folder / "generation_config.json"
    if generation.is_file():
        value = json.loads(generation.read_text(encoding="utf-8")).get("eos_token_id")
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


def check(tokenizer: LightTokenizer, records: list[dict[str, Any]], task: str, max_length: int) -> None:
    """A DatasetError saying why SFT on the records would train nothing, or a model that never stops, and the fix.

    Tokenized on a random sample of CHECK_SAMPLE rows: the template's marks and tokens are the same for every row."""
    name = tokenizer.folder.name
    template = tokenizer.chat_template
    if TASKS[task].conversation and template and GENERATION_MARK not in template:
        earlier = sum(sum(turn["role"] == "assistant" for turn in record["messages"]) > 1 for record in records)
        if earlier:
            raise DatasetError(
                f"The chat template of {name} does not mark the assistant's turns ({GENERATION_MARK}…"
                "{% endgeneration %}), so only the last reply of a conversation can be trained, and "
                f"{earlier} of {len(records)} conversations have earlier assistant replies that would not be learned. "
                "Fix: wrap the assistant message in the model's chat template (chat_template.jinja) in "
                f"{GENERATION_MARK}…{{% endgeneration %}}, end marks included, or split each conversation into one "
                "row per assistant reply."
            )
    if len(records) > CHECK_SAMPLE:
        records = random.Random(0).sample(records, CHECK_SAMPLE)
    masks = xray(tokenizer, records, task, max_length)
    if not any(any(mask.trained) for mask in masks):
        longest = max((len(mask.ids) for mask in xray(tokenizer, records, task, 10**9)), default=0)
        raise DatasetError(
            f"Every row is masked: no row has an answer token within max_length {max_length} tokens of {name}, so "
            f"there is nothing to train on. Fix: raise max length (training.max_length) to {longest}, the longest "
            "row, or shorten the prompts."
        )
    stops = end_of_turn_ids(tokenizer)
    for number, mask in enumerate(masks, start=1):
        trained_ids = [token for token, trained in zip(mask.ids, mask.trained) if trained]
        if len(mask.ids) < max_length and trained_ids and not stops & set(trained_ids):
            where = "its chat template writes" if template else "the tokenizer has"
            raise DatasetError(
                f"Row {number}'s answer ends without an end-of-turn token: {where} no EOS token "
                f"({tokenizer.special_tokens.get('eos_token') or 'none set'}) after the answer, so the tuned model "
                "would never learn to stop. Fix: end the assistant turn with {{ eos_token }} in the chat template, "
                "or set eos_token in tokenizer_config.json to the token that ends a turn."
            )


def check_job(config: JobConfig, records: list[dict[str, Any]], settings: Settings) -> None:
    """`check` for a job about to be queued, with its model's tokenizer where that lies on this machine already (the
    demo model, a local folder, a converted GGUF file); a Hub model's tokenizer is only known once downloaded."""
    if config.model is None:
        folder = settings.models_dir / DEMO_MODELS[demo_kind(config.task)]
    else:
        file = gguf.gguf_file(config.model)
        folder = gguf.converted_folder(file, settings.models_dir) if file else Path(config.model).expanduser()
    if not (folder / "tokenizer.json").is_file():
        return
    tokenizer = preview.load_tokenizer(folder)
    if applies(config.strategy, config.task, tokenizer):
        check(tokenizer, records, config.task, config.training.max_length)
