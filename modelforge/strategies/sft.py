"""Supervised fine-tuning: the path is chosen by the loaded model's class, never by the user.

- causal LMs (text-generation, chat, summarization): TRL's SFTTrainer, loss on the response only;
- encoder-decoders (summarization): strategies/seq2seq.py;
- encoders with a span head (extractive-qa, the only head the provider loads for it): strategies/span_qa.py.
"""

from __future__ import annotations

from modelforge.strategies import packing, seq2seq, span_qa
from modelforge import prompts
from modelforge.strategies.common import lora_config, trainer_arguments
from modelforge.tasks import TASKS

def to_sft_rows(records: list[dict], task: str, tokenizer) -> list[dict]:
    """Canonical task rows -> the rows TRL's SFTTrainer trains on, prompt and response kept apart."""
    return [prompts.sft_row(record, task, tokenizer) for record in records]


def prepare_rows(records: list[dict], task: str, tokenizer) -> list[dict]:
    """The SFT strategy's rows: SFTTrainer's, or the canonical records where the model's class decides their form (a
    task more than causal LMs learn: its rows are shaped in build_trainer, once the model is known)."""
    return to_sft_rows(records, task, tokenizer) if TASKS[task].causal_only else records


def build_trainer(run):
    family = TASKS[run.config.task].family_for(run.model.config.is_encoder_decoder)
    if family != "causal":
        packing.unpacked(run, f"only a causal language model's rows are packed, and this job trains a {family} model")
    return {"causal": _causal_trainer, "seq2seq": seq2seq.build_trainer, "qa": span_qa.build_trainer}[family](run)


def _causal_trainer(run):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = run.config

    def sft_rows(dataset):
        if dataset is None or TASKS[config.task].causal_only:
            return dataset
        return Dataset.from_list(to_sft_rows(dataset.to_list(), config.task, run.tokenizer))

    train_dataset, eval_dataset = sft_rows(run.train_dataset), sft_rows(run.eval_dataset)
    uses_messages = "messages" in train_dataset.column_names
    args = SFTConfig(
        **trainer_arguments(run),
        max_length=config.training.max_length,
        assistant_only_loss=uses_messages,
        completion_only_loss=None if uses_messages else True,
    )
    return SFTTrainer(
        model=run.model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=run.tokenizer,
        data_collator=packing.collator(run),
        peft_config=lora_config(run, "CAUSAL_LM"),
        callbacks=run.callbacks,
    )
