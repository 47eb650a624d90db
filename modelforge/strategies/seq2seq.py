"""Summarization on an encoder-decoder model (T5, BART, ...): the document goes to the encoder, the summary is the
decoder's target; transformers' Seq2SeqTrainer, with the loss on the held-out rows reported during training."""

from __future__ import annotations

from modelforge.strategies.common import adapted_model, trainer_arguments


def features(tokenizer, records: list[dict], max_length: int) -> dict[str, list]:
    """Token ids of the documents, and of the summaries as labels, each truncated to `max_length` tokens."""
    return tokenizer(
        [record["input"] for record in records],
        text_target=[record["output"] for record in records],
        max_length=max_length,
        truncation=True,
    )


def build_trainer(run):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    def tokenized(dataset):
        return Dataset.from_dict(dict(features(run.tokenizer, dataset.to_list(), run.config.training.max_length)))

    model = adapted_model(run, "SEQ_2_SEQ_LM")
    return Seq2SeqTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(**trainer_arguments(run)),
        train_dataset=tokenized(run.train_dataset),
        eval_dataset=tokenized(run.eval_dataset) if run.eval_dataset is not None else None,
        data_collator=DataCollatorForSeq2Seq(run.tokenizer, model=model),  # pads labels with -100
        processing_class=run.tokenizer,
        callbacks=run.callbacks,
    )
