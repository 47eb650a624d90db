"""Chat SFT: the demo model learns multi-turn conversations, answering every assistant turn from the turns before it.

The demo chat template marks assistant turns for generation, so the loss falls on every assistant turn (earlier ones
included) and on nothing the user wrote.
"""

import json
from pathlib import Path

from modelforge.config import JobConfig

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "chat.jsonl"


def test_chat_sft_answers_the_training_conversations(engine, demo_model_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.prediction import generate_reply

    conversations = [json.loads(line)["messages"] for line in SAMPLE.read_text().splitlines() if line.strip()]
    assert any(len(messages) > 2 for messages in conversations)  # multi-turn conversations are part of it
    config = JobConfig(
        name="chat", task="chat", dataset=str(SAMPLE),
        training={"max_steps": 120, "batch_size": 16, "learning_rate": 3e-3, "eval_split": 0, "save_steps": 200},
    )
    job = engine.runner.wait(engine.submit(config).id)
    assert job.status == "completed", job.error

    tokenizer = AutoTokenizer.from_pretrained(job.output_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(demo_model_path), job.output_dir).eval()
    turns = [(messages[:index], message["content"]) for messages in conversations
             for index, message in enumerate(messages) if message["role"] == "assistant"]
    hits = sum(generate_reply(model, tokenizer, history) == answer for history, answer in turns)
    with model.disable_adapter():  # the demo base model only repeats what it reads
        base_hits = sum(generate_reply(model, tokenizer, history) == answer for history, answer in turns)
    assert hits / len(turns) >= 0.95 and base_hits / len(turns) <= 0.1, (hits, base_hits, len(turns))
