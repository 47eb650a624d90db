"""What a model answers, task by task: a reply, a summary of a document, the span of a context that answers a question.

Used by the evaluation and the playground. Torch is imported inside the functions: the web process imports this
module.
"""

from __future__ import annotations

from contextlib import contextmanager

from modelforge import prompts
from modelforge.loading import restore_4bit_training_layout

MAX_ANSWER_TOKENS = 30  # longest answer span considered, as in SQuAD evaluation
GENERATION_BATCH = 8


def answer_question(
    model, tokenizer, question: str, context: str, max_length: int = 384, stride: int | None = None
) -> dict:
    """The best answer span over every window of the context: {"text", "start", "end", "score"}.

    `start` and `end` are character offsets into `context` (text == context[start:end]); `score` is the span's
    probability within its window, the start's times the end's. Windows overlap by `stride` tokens (by default a
    third of max_length, as in training).
    """
    import torch

    from modelforge.strategies.span_qa import encode_windows  # here: the strategies import this module

    encoded = encode_windows(tokenizer, [question], [context], max_length, stride)
    inputs = tokenizer.pad(
        {name: encoded[name] for name in tokenizer.model_input_names if name in encoded}, return_tensors="pt"
    ).to(model.device)
    with evaluating(model), torch.no_grad():
        output = model(**inputs)
    best = {"text": "", "start": 0, "end": 0, "score": 0.0}
    for window, offsets in enumerate(encoded["offset_mapping"]):
        in_context = torch.tensor([sequence == 1 for sequence in encoded.sequence_ids(window)], device=model.device)
        # The first token (CLS) keeps its share: training points it out in a window without the answer, so that
        # window's spans then get little probability.
        scored = in_context.clone()
        scored[0] = True
        starts, ends = (
            logits[window, : len(offsets)].float().masked_fill(~scored, float("-inf")).softmax(-1)
            for logits in (output.start_logits, output.end_logits)
        )
        spans = starts[:, None] * ends[None, :] * (in_context[:, None] & in_context[None, :])
        # Spans that end at or after their start, at most MAX_ANSWER_TOKENS long.
        score, index = spans.triu().tril(MAX_ANSWER_TOKENS - 1).flatten().max(0)
        if score.item() > best["score"]:
            first, last = divmod(index.item(), len(offsets))
            start, end = offsets[first][0], offsets[last][1]
            best = {"text": context[start:end], "start": start, "end": end, "score": score.item()}
    return best


def generate_summary(model, tokenizer, document: str, max_new_tokens: int = 64) -> str:
    """The greedy summary of `document` by an encoder-decoder model."""
    import torch

    inputs = tokenizer(document, return_tensors="pt", truncation=True).to(model.device)
    with evaluating(model), torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0], skip_special_tokens=True).strip()


@contextmanager
def evaluating(model):
    """Eval mode while predicting, then the model exactly as it was (it may be mid-training), the layout of its 4-bit
    weights included."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
        restore_4bit_training_layout(model)


def generate_reply(model, tokenizer, conversation: str | list[dict[str, str]], max_new_tokens: int = 32) -> str:
    """A causal LM's greedy answer to one user message, or to a list of messages ending with a user turn, asked as
    training asked it (modelforge.prompts)."""
    messages = [{"role": "user", "content": conversation}] if isinstance(conversation, str) else conversation
    asked = prompts.prompt_ids(tokenizer, prompts.conversation_prompt(tokenizer, messages))
    return generate_texts(model, tokenizer, [asked], max_new_tokens)[0]


def generate_texts(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy continuations of each prompt (token ids, from modelforge.prompts), in left-padded batches."""
    import torch

    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts = []
    try:
        for start in range(0, len(prompt_ids), GENERATION_BATCH):
            batch = tokenizer.pad(
                {"input_ids": prompt_ids[start : start + GENERATION_BATCH]}, return_tensors="pt"
            ).to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            texts += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = padding_side
    return texts
