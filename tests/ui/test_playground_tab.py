"""The Playground tab through the running app's API: list finished jobs, load one, compare it with its base, unload."""

import pytest
from gradio_client.exceptions import AppError

from modelforge.db import Job

GREEDY = (12, 0, 0.95)  # max new tokens, temperature, top-p


def _text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def test_the_tuned_model_and_its_base_answer_the_same_message_side_by_side(engine, tuned_job, app_client):
    job = tuned_job
    Job.create(name="broken", config=job.config, status="failed", output_dir=job.output_dir)

    assert app_client.predict(api_name="/playground_jobs")["choices"] == [[f"#{job.id} playground-lora", job.id]]
    with pytest.raises(AppError, match="No model is ready"):
        app_client.predict("hello", [], [], True, *GREEDY, api_name="/playground_chat")

    assert app_client.predict(job.id, "", "chat", True, api_name="/playground_load") == f"ready: #{job.id} playground-lora"
    streaming = app_client.submit("red blue green", [], [], True, *GREEDY, api_name="/playground_chat")
    base, tuned, textbox = streaming.result()
    assert textbox == ""
    assert [m["role"] for m in base] == [m["role"] for m in tuned] == ["user", "assistant"]
    assert _text(base[-1]) == "red blue green"  # the demo base model repeats its input
    assert _text(tuned[-1]).strip() and _text(tuned[-1]) != _text(base[-1])  # the adapter changed the answer
    assert len(streaming.outputs()) > 3  # the messages first, then each reply as it grows

    # Without side by side only the tuned model answers, and the base conversation is left as it was.
    base_again, tuned_again, _ = app_client.predict("red blue green", base, tuned, False, *GREEDY, api_name="/playground_chat")
    assert [_text(m) for m in base_again] == [_text(m) for m in base]
    assert [m["role"] for m in tuned_again] == ["user", "assistant"] * 2 and _text(tuned_again[-1]).strip()

    assert app_client.predict(api_name="/playground_unload") == "no model loaded"
    with pytest.raises(AppError, match="No model is ready"):
        app_client.predict("hello", base, tuned, True, *GREEDY, api_name="/playground_chat")


def test_a_typed_model_has_no_base_to_compare_and_summarizes_alone(app_client, demo_model_path):
    status = app_client.predict(None, str(demo_model_path), "summarization", True, api_name="/playground_load")
    assert status == f"ready: {demo_model_path}"
    with pytest.raises(AppError, match="no base model to compare with"):
        app_client.predict("red blue green", True, *GREEDY, api_name="/playground_summarize")
    base, tuned = app_client.predict("red blue green", False, *GREEDY, api_name="/playground_summarize")
    assert base == "" and tuned == "red blue green"
    with pytest.raises(AppError, match="not extractive question answering"):
        app_client.predict("what?", "some context", False, api_name="/playground_answer")


def test_playground_explains_what_to_choose_and_bad_models(app_client, tmp_path):
    assert app_client.predict(None, "", "chat", True, api_name="/playground_load") == (
        "Choose a finished job, or type a model folder or hub id."
    )
    status = app_client.predict(None, str(tmp_path / "missing"), "chat", True, api_name="/playground_load")
    assert status.startswith("error: Model folder") and "missing" in status


CONTEXT = "the tiger is pink. the bear lives in the hill. the dog lives in the island. the frog is yellow."


def _answer_spans(highlighted: list[dict]) -> list[str]:
    return [piece["token"] for piece in highlighted if piece["class_or_confidence"] == "answer"]


def test_extractive_qa_highlights_each_models_answer_in_the_context(engine, app_client, demo_qa_path):
    """A QA job's adapter (random, so that it changes the answer) beside its base, both spans shown in the context."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from modelforge.config import JobConfig

    torch.manual_seed(0)
    output_dir = engine.settings.runs_dir / "qa-lora"
    model = get_peft_model(
        AutoModelForQuestionAnswering.from_pretrained(demo_qa_path),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", exclude_modules=["qa_outputs"], task_type="QUESTION_ANS",
                   init_lora_weights=False),
    )
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(demo_qa_path).save_pretrained(output_dir)
    config = JobConfig(name="qa-lora", task="extractive-qa", dataset="qa.jsonl", output_dir=str(output_dir))
    job = Job.create(name="qa-lora", config=config.to_json(), status="completed", output_dir=str(output_dir))

    app_client.predict(api_name="/playground_jobs")
    assert app_client.predict(job.id, "", "extractive-qa", True, api_name="/playground_load") == f"ready: #{job.id} qa-lora"
    base, tuned = app_client.predict("where does the bear live?", CONTEXT, True, api_name="/playground_answer")
    for highlighted in (base, tuned):
        assert "".join(piece["token"] for piece in highlighted) == CONTEXT  # the whole context, the answer marked
        [span] = _answer_spans(highlighted)
        assert span.strip() and span in CONTEXT
    with pytest.raises(AppError, match="does not generate text"):
        app_client.predict("hello", [], [], True, *GREEDY, api_name="/playground_chat")
    with pytest.raises(AppError, match="Give both a context and a question"):
        app_client.predict("where?", " ", True, api_name="/playground_answer")
