"""Padding-free batches for SFT of causal LMs: a batch's rows laid end to end in one sequence, positions restarting at
each row, wherever that costs less compute than padding every row to the longest one.

The rows of a step stay the rows the user asked for (batch size, epochs and learning rate mean what they meant), so
learning is unchanged; only the pad tokens' compute goes. Rows stay apart because the model builds a block-diagonal
attention mask from the restarting position_ids (transformers' masks for sdpa/eager attention do; FlashAttention's
varlen kernels take the row boundaries) and the first token of each row is never a label, so no row predicts another.
Whether a model keeps rows apart is checked on the model itself (`keeps_rows_apart`), not assumed from its name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from modelforge.errors import ConfigError

log = logging.getLogger(__name__)

# Attention kernels that attend within each row only (varlen); any other gets a dense block-diagonal mask, whose
# cost grows with the square of the whole flattened batch.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


def keeps_rows_apart(model) -> bool:
    """Whether `model` gives a row the same logits after another row, positions restarting, as alone."""
    import torch

    from modelforge.prediction import evaluating

    vocab = model.config.get_text_config().vocab_size
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(vocab, (length,), generator=generator) for length in (7, 5))
    packed_positions = torch.cat([torch.arange(7), torch.arange(5)])
    # Without a cache, as in training (TRL passes use_cache=False): transformers reads packed rows from position_ids
    # only when there is none.
    with evaluating(model), torch.no_grad():
        alone = model(input_ids=second[None].to(model.device), use_cache=False).logits[0].float()
        packed = model(
            input_ids=torch.cat([first, second])[None].to(model.device),
            position_ids=packed_positions[None].to(model.device),
            use_cache=False,
        ).logits[0, 7:].float()
    # A row that sees its neighbour moves its logits by a large share of their scale; kernels and low precision by
    # well under 2 %.
    return bool((alone - packed).abs().max() <= 0.02 * alone.abs().max())


def batch_cost(lengths: list[int], flat: bool, varlen: bool, pair_cost: float) -> float:
    """The compute of one forward pass over rows of these token lengths, in token-equivalents: every token position the
    linear layers see, plus the attended (query, key) pairs at `pair_cost` each.

    Padded: every row as long as the longest, causal kernels skipping the upper triangle. Flat: the real tokens only;
    varlen kernels attend within each row, a dense block-diagonal mask computes the whole square of the batch."""
    if not flat:
        tokens = len(lengths) * max(lengths)
        return tokens + pair_cost * tokens * max(lengths) / 2
    tokens = sum(lengths)
    pairs = sum(length * length for length in lengths) / 2 if varlen else tokens * tokens
    return tokens + pair_cost * pairs


@dataclass
class PaddingFreeWherePays:
    """The SFT collator: each batch laid end to end (TRL's padding-free form: position_ids and row boundaries, no
    attention mask, each row's first label masked) when that costs less than padding it, else padded."""

    pad_token_id: int
    varlen: bool
    pair_cost: float  # an attended (query, key) pair's compute over one token's through the linear layers
    _flat: Any = field(init=False, repr=False)
    _padded: Any = field(init=False, repr=False)

    def __post_init__(self):
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self._flat = DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id, padding_free=True)
        self._padded = DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id)

    def pays(self, lengths: list[int]) -> bool:
        flat = batch_cost(lengths, True, self.varlen, self.pair_cost)
        return flat < batch_cost(lengths, False, self.varlen, self.pair_cost)

    def __call__(self, examples: list[dict]) -> dict:
        lengths = [len(example["input_ids"]) for example in examples]
        return (self._flat if self.pays(lengths) else self._padded)(examples)


def why_not_packed(run) -> str | None:
    """Why this SFT job's batches cannot be laid end to end; None when they can."""
    if run.config.provider == "unsloth":
        return "the unsloth provider patches the model's attention with its own kernels, which this check does not cover"
    attention = run.model.config._attn_implementation
    if not keeps_rows_apart(run.model):
        return (
            f"this model ({type(run.model).__name__}, {attention} attention) lets a row attend to the row before it "
            "when they share a sequence (it does not build its attention mask from position_ids)"
        )
    return None


def unpacked(run, reason: str) -> None:
    """A job whose rows are not packed, for `reason`: a ConfigError when training.packing asks for it, else logged."""
    if run.config.training.packing is True:
        raise ConfigError(f"training.packing: {reason}; set it to auto or false.")
    if run.config.training.packing == "auto":
        log.info("packing: off, %s", reason)


def collator(run):
    """The data collator the SFT trainer of a causal LM uses: padding-free where it pays, or None (TRL's padded one).

    training.packing auto turns it on wherever the model keeps packed rows apart and says in the job's log why not
    elsewhere; true where it cannot is a ConfigError naming the reason."""
    if run.config.training.packing is False:
        return None
    reason = why_not_packed(run)
    if reason:
        unpacked(run, reason)
        return None
    attention = run.model.config._attn_implementation
    varlen = attention in VARLEN_ATTENTION
    # Per token, a transformer layer's linear maps cost ~24·d² FLOPs (12·d² weights) and each attended pair ~4·d.
    pair_cost = 1 / (6 * run.model.config.get_text_config().hidden_size)
    log.info(
        "packing: on (%s attention): a batch's rows are laid end to end without padding wherever that costs less "
        "than padding them", attention,
    )
    return PaddingFreeWherePays(pad_token_id=run.tokenizer.pad_token_id, varlen=varlen, pair_cost=pair_cost)
