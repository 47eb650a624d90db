"""What every strategy shares: trainer arguments from the job config and runtime, LoRA (the prompt format is in
modelforge/prompts.py)."""

from __future__ import annotations

from pathlib import Path


def trainer_arguments(run) -> dict:
    """Keyword arguments for transformers' TrainingArguments (and TRL's configs, which extend it), the job's trackers'
    and the distributed strategy's (FSDP, DeepSpeed) included."""
    from modelforge import trackers
    from modelforge.distributed import trainer_options

    training = run.config.training
    has_eval = run.eval_dataset is not None and len(run.eval_dataset) > 0
    return dict(
        output_dir=str(run.output_dir),
        num_train_epochs=training.epochs,
        max_steps=training.max_steps,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation,
        learning_rate=training.learning_rate,
        lr_scheduler_type=training.scheduler,
        warmup_steps=training.warmup_ratio,  # a float below 1 is a ratio of the total steps
        seed=training.seed,
        data_seed=training.seed,
        use_cpu=run.runtime.use_cpu,
        bf16=run.runtime.precision == "bf16",
        fp16=run.runtime.precision == "fp16",
        gradient_checkpointing=run.runtime.gradient_checkpointing,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=training.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=training.save_steps if has_eval else None,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **trackers.trainer_options(run.config, Path(run.output_dir)),
        **trainer_options(run.config, run.runtime.use_cpu),
    )


def lora_config(run, task_type: str, **options):
    """The LoRA a trainer applies; None for full fine-tuning, or when the model already has its adapters (the
    provider applied them, as Unsloth does, or they were loaded to be trained further). `options` go to LoraConfig."""
    from peft import LoraConfig, PeftModel

    lora = run.config.lora
    if lora is None or isinstance(run.model, PeftModel):
        return None
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
        **options,
    )


def adapted_model(run, task_type: str, **options):
    """The model a plain transformers Trainer trains: wrapped with LoRA (a quantized base prepared for it first, as
    TRL's trainers do), or as it is for full fine-tuning or when it already has its adapters."""
    config = lora_config(run, task_type, **options)
    if config is None:
        return run.model
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = run.model
    if run.config.quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=run.runtime.gradient_checkpointing)
    return get_peft_model(model, config)
