"""Parity of a GGUF export with the tuned model: a fixed prompt set through both, compared token by token.

The GGUF file runs in llama.cpp (llama-cpp-python), independent of the code that wrote it, and is prompted as Ollama
prompts it: the Modelfile's TEMPLATE rendered for the prompt, tokenized by llama.cpp, greedy answers cut at the
Modelfile's stop strings only. The tuned model runs in transformers, prompted by modelforge.prompts as in training.

Figures: greedy exact match (the answer's tokens identical, its end included) and token agreement (llama.cpp's top
token at each position of the tuned model's answer, given the same tokens before it: no drift after a first
difference). Problems found: a template that gives other prompt tokens than the tuned model reads, a stop string that
never ends an answer or cuts one short. Any problem fails the check, with a message that says where.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelforge import modelfile

PROMPTS = [
    "red blue green",
    "cat dog cow",
    "one two three four",
    "apple banana orange",
    "the sun is hot",
    "what is your name",
    "tell me about the sea",
    "hello",
]
MAX_NEW_TOKENS = 24
CONTEXT = 512


def check(tuned_folder: Path, gguf_path: Path, modelfile_path: Path, prompts: list[str] = PROMPTS) -> dict:
    """The parity report of `gguf_path` prompted by `modelfile_path` against the model in `tuned_folder`."""
    spec = modelfile.parse(modelfile_path.read_text(encoding="utf-8"))
    tuned = _tuned_answers(tuned_folder, prompts)
    with _Runner(gguf_path) as runner:
        return _compare(runner, tuned, prompts, spec, gguf_path)


def _compare(runner, tuned, prompts: list[str], spec: modelfile.Modelfile, gguf_path: Path) -> dict:
    problems: list[str] = []
    exact = agreed = compared = prompts_matched = 0
    examples = []
    for number, (text, (prompt_ids, answer, ended)) in enumerate(zip(prompts, tuned), 1):
        asked = runner.tokenize(modelfile.prompt(spec.template, text))
        if asked == prompt_ids:
            prompts_matched += 1
        else:
            problems.append(f"prompt {number} ({text!r}): the Modelfile's TEMPLATE gives llama.cpp "
                            f"{_first_difference(asked, prompt_ids, runner.text)}")
        # Stop strings are matched in the text llama.cpp makes of the tokens, as Ollama matches them.
        answer_text = runner.text(answer)
        end = runner.text(answer[-1:]) if ended else ""
        if ended:
            if not any(answer_text.endswith(stop) for stop in spec.stops):
                problems.append(f"prompt {number} ({text!r}): the tuned model ends its answer with {end!r}, which "
                                f"no stop string of the Modelfile ({', '.join(map(repr, spec.stops))}) matches: "
                                "Ollama would run on past the end of the answer")
        body = answer_text[: len(answer_text) - len(end)]
        early = [stop for stop in spec.stops if stop in body]
        if early:
            problems.append(f"prompt {number} ({text!r}): the stop string {early[0]!r} lies inside the tuned "
                            "model's answer: Ollama would cut it short")
        generated = runner.greedy(asked, spec.stops)
        if not ended:  # the tuned model's answer is cut at MAX_NEW_TOKENS: so is the file's
            generated = generated[:MAX_NEW_TOKENS]
        exact += generated == answer
        predicted = runner.next_tokens(prompt_ids, answer)
        agreed += sum(a == b for a, b in zip(predicted, answer))
        compared += len(answer)
        examples.append({"prompt": text, "tuned": runner.text(answer), "gguf": runner.text(generated)})
    count = len(prompts)
    return {
        "runner": f"llama.cpp (llama-cpp-python {runner.version})",
        "gguf": gguf_path.name,
        "size_bytes": gguf_path.stat().st_size,
        "prompts": count,
        "exact_match": exact / count,
        "token_agreement": agreed / compared if compared else 1.0,
        "prompt_tokens_match": prompts_matched / count,
        "stops": spec.stops,
        "problems": problems,
        "passed": not problems,
        "examples": examples,
    }


def summary(report: dict) -> str:
    """One line a person reads: the figures, or what failed."""
    figures = (f"{round(report['exact_match'] * report['prompts'])}/{report['prompts']} greedy answers identical "
               f"({report['exact_match']:.0%}), token agreement {report['token_agreement']:.1%}")
    if report["passed"]:
        return f"parity passed: {figures}"
    more = f" (and {len(report['problems']) - 1} more)" if len(report["problems"]) > 1 else ""
    return f"parity FAILED: {report['problems'][0]}{more}; {figures}"


def _tuned_answers(folder: Path, prompts: list[str]) -> list[tuple[list[int], list[int], bool]]:
    """Per prompt: (prompt ids, greedy answer ids with its end token, whether it ended)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prompts import conversation_prompt, prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    answers = []
    for text in prompts:
        ids = prompt_ids(tokenizer, conversation_prompt(tokenizer, [{"role": "user", "content": text}]))
        with torch.no_grad():
            output = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        answer = output[0, len(ids):].tolist()
        ended = tokenizer.eos_token_id in answer
        if ended:
            answer = answer[: answer.index(tokenizer.eos_token_id) + 1]
        answers.append((ids, answer, ended))
    return answers


def _first_difference(got: list[int], wanted: list[int], text) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, wanted)) if a != b), min(len(got), len(wanted)))
    return (f"{len(got)} prompt tokens where the tuned model reads {len(wanted)}; from token {at}: "
            f"{text(got[at : at + 4])!r} instead of {text(wanted[at : at + 4])!r}")


class _Runner:
    """The GGUF file in llama.cpp, greedy, one prompt at a time."""

    def __init__(self, path: Path):
        import llama_cpp

        self.version = llama_cpp.__version__
        self.llm = llama_cpp.Llama(str(path), n_ctx=CONTEXT, logits_all=True, verbose=False, seed=0,
                                   # llama.cpp's threads spin while they wait: on a machine busy with other
                                   # work, as many threads as cores made it 20x slower, not faster
                                   n_threads=max(1, (os.cpu_count() or 2) // 2))
        self.add_bos = self.llm._model.add_bos_token()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.llm.close()  # now, not in a finalizer at interpreter exit, when llama.cpp's library may be gone

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=self.add_bos, special=True)

    def text(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="replace")

    def greedy(self, prompt: list[int], stops: list[str]) -> list[int]:
        """Greedy answer ids, through the token that completes a stop string (or MAX_NEW_TOKENS and a few more, so
        an answer that runs on past the tuned model's end shows as longer)."""
        self.llm.reset()
        self.llm.eval(prompt)
        answer: list[int] = []
        while len(answer) < MAX_NEW_TOKENS + 4:
            token = int(self.llm.scores[self.llm.n_tokens - 1].argmax())
            answer.append(token)
            if any(stop in self.text(answer) for stop in stops):
                break
            self.llm.eval([token])
        return answer

    def next_tokens(self, prompt: list[int], answer: list[int]) -> list[int]:
        """llama.cpp's top token at each answer position, given the prompt and the answer before it."""
        self.llm.reset()
        self.llm.eval(prompt + answer)
        rows = self.llm.scores[len(prompt) - 1 : len(prompt) + len(answer) - 1]
        return rows.argmax(axis=1).tolist()
