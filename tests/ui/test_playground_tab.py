"""The Playground tab through the running app's API: list finished jobs, load one, compare it with its base, unload."""

import logging
import threading

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from modelforge import inference
from modelforge.db import Job
from modelforge.inference import job_source

GREEDY = {"max_new_tokens": 12, "temperature": 0, "top_p": 0.95}


def load(job_id, model_text: str = "", task: str = "chat") -> dict:
    """The keywords of pressing Load (side by side with the base model)."""
    return dict(job_id=job_id, model_text=model_text, task=task, side_by_side=True, api_name="/playground_load")


def chat(message: str, base_history=(), tuned_history=(), side_by_side: bool = True) -> dict:
    """The keywords of sending a message, greedily."""
    return dict(message=message, base_history=list(base_history), tuned_history=list(tuned_history),
                side_by_side=side_by_side, **GREEDY, api_name="/playground_chat")


def _text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def test_the_tuned_model_and_its_base_answer_the_same_message_side_by_side(engine, tuned_job, app_client):
    job = tuned_job
    Job.create(name="broken", config=job.config, status="failed", output_dir=job.output_dir)

    assert app_client.predict(api_name="/playground_jobs")["choices"] == [[f"#{job.id} playground-lora", job.id]]
    assert app_client.predict(**load(job.id)) == f"ready: #{job.id} playground-lora"
    streaming = app_client.submit(**chat("red blue green"))
    base, tuned, textbox, notice = streaming.result()
    assert textbox == "" and notice == ""
    assert [m["role"] for m in base] == [m["role"] for m in tuned] == ["user", "assistant"]
    assert _text(base[-1]) == "red blue green"  # the demo base model repeats its input
    assert _text(tuned[-1]).strip() and _text(tuned[-1]) != _text(base[-1])  # the adapter changed the answer
    assert len(streaming.outputs()) > 3  # the messages first, then each reply as it grows

    # Without side by side only the tuned model answers, and the base conversation is left as it was.
    base_again, tuned_again, *_ = app_client.predict(**chat("red blue green", base, tuned, False))
    assert [_text(m) for m in base_again] == [_text(m) for m in base]
    assert [m["role"] for m in tuned_again] == ["user", "assistant"] * 2 and _text(tuned_again[-1]).strip()


def test_a_send_without_a_ready_model_is_taken_back_and_says_why(engine, tuned_job, app_url, app_client, caplog, capfd, monkeypatch):
    """No model, then a reload under way: each send leaves both conversations as they were, puts the message back in
    the textbox and says why; Send is disabled from the start of a load until the model is ready; the next send after
    the load is answered as if the failed ones never happened; the refusals log one line each, no traceback."""
    caplog.set_level(logging.INFO, logger="modelforge.ui.playground_tab")
    job = tuned_job
    base, tuned, textbox, notice = app_client.predict(**chat("hello"))
    assert (base, tuned, textbox) == ([], [], "hello")
    assert notice.startswith("⚠️ Not sent: No model is ready (no model loaded)")

    # gradio_client leaves buttons out of an endpoint's outputs unless told to keep every component.
    with_buttons = Client(app_url, verbose=False, _skip_components=False)
    loading = with_buttons.submit(**load(job.id))
    loading.result()
    first_status, first_send = loading.outputs()[0]
    assert first_status == f"loading #{job.id} playground-lora…" and first_send["interactive"] is False
    assert all(send["interactive"] is False for status, send in loading.outputs() if not status.startswith("ready"))
    status, send = loading.outputs()[-1]
    assert status == f"ready: #{job.id} playground-lora" and send["interactive"] is True

    answered = app_client.predict(**chat("red blue green"))
    # A reload under way (held until the refused send is done): nothing answers meanwhile.
    release = threading.Event()
    load_model = inference.load_model
    monkeypatch.setattr(inference, "load_model", lambda source: release.wait(60) and load_model(source))
    engine.model_host.load(job_source(job, engine.settings))
    refused = app_client.predict(**chat("lion mouse", answered[0], answered[1]))
    assert refused[:3] == (answered[0], answered[1], "lion mouse")
    assert refused[3].startswith(f"⚠️ Not sent: No model is ready (loading #{job.id} playground-lora…)")
    release.set()
    assert engine.model_host.wait(timeout=60) == f"ready: #{job.id} playground-lora"
    base, tuned, _, notice = app_client.predict(**chat("red blue green", answered[0], answered[1]))
    assert notice == "" and [m["role"] for m in tuned] == ["user", "assistant"] * 2
    assert [_text(m) for m in tuned[:2]] == [_text(m) for m in answered[1]] and _text(tuned[-1]).strip()
    assert not any("lion mouse" in _text(m) for m in base + tuned)  # the refused message left no trace

    assert with_buttons.predict(api_name="/playground_unload")[1]["interactive"] is False
    refused = app_client.predict(**chat("hello", base, tuned))
    assert refused[:3] == (base, tuned, "hello") and "No model is ready" in refused[3]
    assert "Generation refused: No model is ready" in caplog.text
    assert "Traceback" not in caplog.text + capfd.readouterr().err  # Gradio prints one for any gr.Error left to it


def test_a_typed_model_has_no_base_to_compare_and_summarizes_alone(app_client, demo_model_path):
    status = app_client.predict(**load(None, str(demo_model_path), "summarization"))
    assert status == f"ready: {demo_model_path}"
    with pytest.raises(AppError, match="no base model to compare with"):
        app_client.predict(document="red blue green", side_by_side=True, **GREEDY, api_name="/playground_summarize")
    base, tuned = app_client.predict(
        document="red blue green", side_by_side=False, **GREEDY, api_name="/playground_summarize"
    )
    assert base == "" and tuned == "red blue green"
    with pytest.raises(AppError, match="not extractive question answering"):
        app_client.predict(question="what?", context="some context", side_by_side=False, api_name="/playground_answer")


def test_playground_explains_what_to_choose_and_bad_models(app_client, tmp_path):
    assert app_client.predict(**load(None)) == (
        "Choose a finished job, or type a model folder or hub id."
    )
    status = app_client.predict(**load(None, str(tmp_path / "missing")))
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
    assert app_client.predict(**load(job.id, "", "extractive-qa")) == f"ready: #{job.id} qa-lora"
    base, tuned = app_client.predict(
        question="where does the bear live?", context=CONTEXT, side_by_side=True, api_name="/playground_answer"
    )
    for highlighted in (base, tuned):
        assert "".join(piece["token"] for piece in highlighted) == CONTEXT  # the whole context, the answer marked
        [span] = _answer_spans(highlighted)
        assert span.strip() and span in CONTEXT
    assert "does not generate text" in app_client.predict(**chat("hello"))[3]
    with pytest.raises(AppError, match="Give both a context and a question"):
        app_client.predict(question="where?", context=" ", side_by_side=True, api_name="/playground_answer")
