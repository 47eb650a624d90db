"""What the SFT strategy's trainer really trains on a row, to check the label-mask X-ray against; and chat templates
that break what SFT needs, on the demo model's tokenizer, for the X-ray's refusals."""

import shutil
from pathlib import Path

from modelforge import label_mask, preview
from modelforge.config import JobConfig

# The demo template without its {% generation %} marks, and one whose assistant turn ends without EOS.
UNMARKED_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
ENDLESS_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
    "{% else %}{{ message['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tokenizer_with_template(demo_model_path: Path, folder: Path, template: str) -> Path:
    """The demo model's tokenizer files in `folder`, with another chat template."""
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo_model_path / name, folder / name)
    (folder / "chat_template.jinja").write_text(template)
    return folder


def trainer_rows(model_path: Path, task: str, records: list[dict], tmp_path: Path) -> list[dict]:
    """The tokenized rows of the SFT strategy's own trainer for `records`: input_ids, and which of them its labels
    train (TRL folds the completion or assistant mask into `labels`, -100 where masked)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.runtime import resolve_runtime
    from modelforge.strategies import STRATEGIES
    from modelforge.training.pipeline import TrainingRun

    config = JobConfig(task=task, dataset="rows.jsonl", model=str(model_path))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    run = TrainingRun(
        config=config, runtime=resolve_runtime(config), model=AutoModelForCausalLM.from_pretrained(model_path),
        tokenizer=tokenizer, train_dataset=Dataset.from_list(STRATEGIES["sft"].prepare_rows(records, task, tokenizer)),
        eval_dataset=None, output_dir=tmp_path / "run",
    )
    (stage,) = STRATEGIES["sft"].stages
    dataset = stage.build_trainer(run).train_dataset
    return [{"ids": row["input_ids"], "trained": [label != -100 for label in row["labels"]]} for row in dataset]


def assert_xray_matches_the_trainer(model_path: Path, task: str, records: list[dict], tmp_path: Path) -> list:
    masks = label_mask.xray(preview.load_tokenizer(model_path), records, task, max_length=512)
    assert [{"ids": mask.ids, "trained": mask.trained} for mask in masks] == trainer_rows(
        model_path, task, records, tmp_path
    )
    return masks
