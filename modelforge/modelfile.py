"""The Ollama Modelfile of a GGUF export: FROM the file, the model's chat template as an Ollama TEMPLATE, and its
end-of-turn tokens as PARAMETER stop.

The TEMPLATE is read off the tokenizer's own chat template (rendered with marker contents and cut at the markers), or
is the plain prompt format of modelforge.prompts for a model without one. Ollama's template is text, tokenized by
llama.cpp, which adds no space before a text segment; a tokenizer that does (byte-level BPE with add_prefix_space, as
the demo model's) gets that space written into the template, so both give the model the same tokens.

`parse` and `prompt` read a Modelfile back as Ollama uses it, for the parity check (modelforge.parity).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from modelforge.errors import ModelForgeError
from modelforge.prompts import SEPARATOR

SYSTEM, PROMPT, RESPONSE = "{{ .System }}", "{{ .Prompt }}", "{{ .Response }}"
_MARK = {"system": "\x00SYSTEM\x00", "user": "\x00PROMPT\x00", "assistant": "\x00RESPONSE\x00"}


class ModelfileError(ModelForgeError):
    """A chat template that has no Ollama equivalent, or a Modelfile the parity check cannot read."""


@dataclass
class Modelfile:
    source: str  # FROM
    template: str
    stops: list[str]


def build(folder: Path, gguf_name: str) -> str:
    """The Modelfile text for the model in `folder`, exported as `gguf_name` beside it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    template, stops = translate(tokenizer, _adds_prefix_space(spec))
    if '"""' in template:
        raise ModelfileError('The chat template contains """, which an Ollama TEMPLATE cannot hold.')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f"PARAMETER stop {json.dumps(stop)}" for stop in stops]
    return "\n".join(lines) + "\n"


def translate(tokenizer, prefix_space: bool) -> tuple[str, list[str]]:
    """(Ollama TEMPLATE, stop strings) equivalent to how modelforge.prompts asks the tokenizer's model."""
    specials = sorted(tokenizer.all_special_tokens, key=len, reverse=True)
    if not tokenizer.chat_template:
        template = _as_llama_text(PROMPT + SEPARATOR + RESPONSE, specials, prefix_space)
        return template, [tokenizer.eos_token]

    def render(messages, generation: bool) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False)

    user = {"role": "user", "content": _MARK["user"]}
    asked = render([user], True)
    head, _, turn = asked.partition(_MARK["user"])
    answered = render([user, {"role": "assistant", "content": _MARK["assistant"]}], False)
    before, _, after = answered.partition(_MARK["assistant"])
    if before != head + _MARK["user"] + turn:
        raise ModelfileError("The chat template writes an answered turn unlike the turn it asks for: Ollama's "
                             "TEMPLATE cannot express it.")
    body = head + PROMPT + turn + RESPONSE + after
    try:
        with_system = render([{"role": "system", "content": _MARK["system"]}, user], True)
    except Exception:  # a template that refuses system turns: the Modelfile has none either
        with_system = None
    if with_system and with_system.endswith(_MARK["user"] + turn) and _MARK["system"] in with_system:
        system_head = with_system[: -len(_MARK["user"] + turn)].replace(_MARK["system"], SYSTEM)
        body = "{{ if .System }}" + system_head + "{{ else }}" + head + "{{ end }}" + PROMPT + turn + RESPONSE + after
    template = _as_llama_text(body, specials, prefix_space)
    # The end of a turn: the special tokens written after the answer (an end-of-turn marker), and EOS.
    stops = [token for token in specials if token in after]
    if tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    return template, stops


def _as_llama_text(template: str, specials: list[str], prefix_space: bool) -> str:
    """`template` with the space the tokenizer puts before each text segment written out, for llama.cpp."""
    if not prefix_space:
        return template
    pieces = re.split("(" + "|".join(re.escape(token) for token in specials) + ")", template)
    written = []
    for piece in pieces:
        if piece in specials or not piece:
            written.append(piece)
            continue
        # A segment that starts with a control ({{ if }}, {{ end }}) gets its space at its first text or field.
        controls = re.match(r"((?:\{\{ (?:if \.System|else|end) \}\})*)(.*)", piece, re.S)
        leading, rest = controls[1], controls[2]
        written.append(leading + ("" if rest.startswith((" ", RESPONSE)) or not rest else " ") + rest)
    return "".join(written)


def _adds_prefix_space(spec: dict) -> bool:
    from modelforge.gguf_export import byte_level

    step = byte_level(spec)
    return bool(step and step.get("add_prefix_space"))


def parse(text: str) -> Modelfile:
    """FROM, TEMPLATE and the stop parameters of a Modelfile."""
    source = re.search(r"^FROM (.+)$", text, re.M)
    template = re.search(r'^TEMPLATE """(.*?)"""', text, re.M | re.S)
    if not source or not template:
        raise ModelfileError("The Modelfile has no FROM line or no TEMPLATE \"\"\"...\"\"\" block.")
    stops = [json.loads(value) for value in re.findall(r"^PARAMETER stop (.+)$", text, re.M)]
    return Modelfile(source[1].strip(), template[1], stops)


def prompt(template: str, user: str, system: str | None = None) -> str:
    """What Ollama sends llama.cpp for one user message: the TEMPLATE rendered up to {{ .Response }}. Reads the
    template forms `translate` writes: {{ .System }}, {{ .Prompt }}, {{ .Response }} and {{ if .System }}..."""
    text = template.split(RESPONSE, 1)[0]
    text = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ else \}\}(.*?)\{\{ end \}\}",
                  lambda m: m[1] if system else m[2], text, flags=re.S)
    text = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ end \}\}", lambda m: m[1] if system else "", text, flags=re.S)
    rendered = text.replace(SYSTEM, system or "").replace(PROMPT, user)
    unknown = re.search(r"\{\{.*?\}\}", rendered)
    if unknown:
        raise ModelfileError(f"The Modelfile's TEMPLATE uses {unknown[0]}, which the parity check cannot render.")
    return rendered
