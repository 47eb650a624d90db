"""The built-in demo models: plain Hugging Face folders, built once, safely, each pretrained on its generic task."""

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelforge import demo_model
from modelforge.config import JobConfig
from modelforge.demo_model import DEMO_MODEL_NAME, DEMO_MODELS, ensure_demo_model
from modelforge.prediction import generate_reply

CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hot big"},
    {"role": "assistant", "content": "cold small"},
    {"role": "user", "content": "and up?"},
    {"role": "assistant", "content": "down"},
]


@pytest.fixture(scope="module")
def demo(demo_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(demo_model_path).eval(), AutoTokenizer.from_pretrained(demo_model_path)


def test_the_folder_loads_with_the_plain_auto_classes(demo):
    model, tokenizer = demo
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert model.config.eos_token_id == tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert len(tokenizer) <= model.config.vocab_size


def test_every_linear_output_size_is_a_multiple_of_32(demo):
    import torch

    model, _ = demo
    sizes = {module.out_features for module in model.modules() if isinstance(module, torch.nn.Linear)}
    assert sizes and all(size % 32 == 0 for size in sizes), sizes


def test_the_chat_template_marks_each_assistant_turn_and_its_end(demo):
    _, tokenizer = demo
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == (
        "<s><|system|>be brief<|user|>hot big<|assistant|>cold small</s><|user|>and up?<|assistant|>down</s>"
    )
    encoded = tokenizer.apply_chat_template(CONVERSATION, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, mask in zip(encoded["input_ids"], encoded["assistant_masks"]) if mask]
    answers = tokenizer(["cold small", "down"], add_special_tokens=False)["input_ids"]
    assert masked == answers[0] + [tokenizer.eos_token_id] + answers[1] + [tokenizer.eos_token_id]
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|user|>hot big<|assistant|>")


def test_a_word_is_the_same_tokens_wherever_it_stands(demo):
    _, tokenizer = demo

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    assert ids("cow hot squeak") == ids("cow") + ids("hot") + ids("squeak")
    assert tokenizer.decode(ids("cow hot squeak")) == "cow hot squeak"


def test_pretraining_encodes_conversations_exactly_as_the_chat_template(demo):
    _, tokenizer = demo
    turns = [("hot big", "cold small"), ("and up?", "down")]
    ids, labels = demo_model._conversation_ids(tokenizer, turns)
    messages = [{"role": role, "content": text} for turn in turns for role, text in zip(("user", "assistant"), turn)]
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    assert ids == encoded["input_ids"]
    assert labels == [token if mask else -100 for token, mask in zip(ids, encoded["assistant_masks"])]


def test_the_pretrained_model_repeats_random_words_and_stops(demo):
    """The pretraining task, on sequences it never saw: about 3 in 4 are repeated exactly (measured 77 of 100)."""
    model, tokenizer = demo
    rng = random.Random(3)
    exchanges = [exchange for _ in range(20) for exchange in demo_model._random_conversation(rng)]
    hits = sum(generate_reply(model, tokenizer, question) == answer for question, answer in exchanges)
    assert hits >= 12
    assert generate_reply(model, tokenizer, "milk and honey for the queen") == "milk and honey for the queen"


def test_a_second_call_returns_the_built_folder_without_building(demo_models_dir, monkeypatch):
    monkeypatch.setattr(demo_model, "_build", lambda folder, kind, report: pytest.fail("rebuilt an existing demo model"))
    assert ensure_demo_model(demo_models_dir) == demo_models_dir / DEMO_MODEL_NAME


def test_concurrent_calls_build_once_and_never_expose_a_partial_folder(tmp_path, monkeypatch):
    builds = []

    def slow_build(folder: Path, kind: str, report) -> None:
        builds.append(folder)
        (folder / "config.json").write_text("{}")
        time.sleep(0.3)
        (folder / "model.safetensors").write_text("weights")

    monkeypatch.setattr(demo_model, "_build", slow_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_demo_model(tmp_path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and results == [tmp_path / DEMO_MODEL_NAME] * 3
    assert sorted(path.name for path in (tmp_path / DEMO_MODEL_NAME).iterdir()) == ["config.json", "model.safetensors"]
    assert [path.name for path in tmp_path.iterdir() if path.is_dir()] == [DEMO_MODEL_NAME]


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def failing_build(folder: Path, kind: str, report) -> None:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("out of disk")

    monkeypatch.setattr(demo_model, "_build", failing_build)
    with pytest.raises(RuntimeError, match="out of disk"):
        ensure_demo_model(tmp_path)
    assert [path for path in tmp_path.iterdir() if path.is_dir()] == []


def test_a_background_build_shows_its_progress_and_stops_with_the_web_process(tmp_path):
    """The app's first start builds the demo model in a child; Validate meanwhile says so; should the web process
    die (here kill -9 of a stand-in), the child stops and leaves no half-built folder."""
    from modelforge import preview
    from modelforge.errors import NotReadyError
    from modelforge.settings import Settings

    settings = Settings(home=tmp_path)
    code = ("import sys, time; from pathlib import Path; from modelforge.demo_model import start_background_build;"
            "print(start_background_build(Path(sys.argv[1])).pid, flush=True); time.sleep(600)")
    web = subprocess.Popen([sys.executable, "-c", code, str(settings.models_dir)], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parent.parent)
    try:
        child = int(web.stdout.readline())
        deadline = time.monotonic() + 500  # slow on a busy machine
        while not (state := demo_model.build_state(settings.models_dir)).building:  # the child takes the lock first
            assert not state.error and time.monotonic() < deadline, state
            time.sleep(0.1)
        while (state := demo_model.build_state(settings.models_dir)).step < 20:
            assert state.building and time.monotonic() < deadline, state
            time.sleep(0.5)
        assert state.total == 600 and "being built" in state.describe() and f"(step {state.step} of 600)" in state.describe()
        with pytest.raises(NotReadyError, match=r"being built .*: \d+ % .*press Validate again"):
            preview.resolve_model_folder(settings, "")
    finally:
        web.kill()
        web.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child}").exists() and "zombie" not in Path(f"/proc/{child}/status").read_text():
        assert time.monotonic() < deadline, "the build outlived the web process"
        time.sleep(0.2)
    state = demo_model.build_state(settings.models_dir)
    assert not state.ready and not state.building
    assert [path.name for path in settings.models_dir.iterdir() if path.is_dir()] == []


# -- the encoder-decoder and the span-QA demo models ----------------------------------------------------------------


@pytest.mark.parametrize(
    "task, kind", [("text-generation", "causal"), ("chat", "causal"), ("summarization", "seq2seq"), ("extractive-qa", "qa")]
)
def test_a_job_without_a_model_trains_its_tasks_demo_model(task, kind, settings, monkeypatch):
    from modelforge.loading import resolve_model_path

    monkeypatch.setattr(demo_model, "ensure_demo_model", lambda models_dir, kind="causal": models_dir / DEMO_MODELS[kind])
    assert resolve_model_path(JobConfig(task=task, dataset="data.jsonl"), settings) == str(
        settings.models_dir / DEMO_MODELS[kind]
    )
    assert resolve_model_path(JobConfig(task=task, dataset="data.jsonl", model="some/model"), settings) == "some/model"


def test_the_three_demo_models_share_one_vocabulary(demo_model_path, demo_seq2seq_path, demo_qa_path):
    from transformers import AutoTokenizer

    text = "the cow says moo. where is the red fox?"
    causal, seq2seq, qa = (AutoTokenizer.from_pretrained(path) for path in (demo_model_path, demo_seq2seq_path, demo_qa_path))
    assert seq2seq(text, add_special_tokens=False) == causal(text, add_special_tokens=False)
    assert qa(text, add_special_tokens=False)["input_ids"] == causal(text, add_special_tokens=False)["input_ids"]


def test_the_encoder_decoder_copies_a_document_it_never_saw(demo_seq2seq_path):
    """Its pretraining task on new random documents: copied exactly (measured 30 of 30)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from modelforge.prediction import generate_summary

    tokenizer = AutoTokenizer.from_pretrained(demo_seq2seq_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(demo_seq2seq_path)
    assert tokenizer("milk and honey")["input_ids"][-1] == tokenizer.eos_token_id  # labels teach it to stop
    rng = random.Random(3)
    documents = [demo_model._random_document(rng, 16) for _ in range(30)]
    copied = sum(generate_summary(model, tokenizer, document, 48) == document for document in documents)
    assert copied >= 20


def test_the_span_model_answers_its_pretraining_questions(demo_qa_path):
    """Span lookup and the rest of a sentence after the question's words, on new random contexts (measured 38 of 40)."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from modelforge.prediction import answer_question

    tokenizer = AutoTokenizer.from_pretrained(demo_qa_path)
    model = AutoModelForQuestionAnswering.from_pretrained(demo_qa_path)
    rng = random.Random(3)
    examples = [demo_model._span_example(rng) for _ in range(40)]
    answers = [answer_question(model, tokenizer, example["question"], example["context"]) for example in examples]
    for example, answer in zip(examples, answers):
        assert example["context"][answer["start"] : answer["end"]] == answer["text"]
    hits = sum(answer["text"] == example["answer"]["text"] for example, answer in zip(examples, answers))
    assert hits >= 30


@pytest.mark.parametrize("kind", ["seq2seq", "qa"])
def test_the_web_process_entry_point_returns_a_built_model(kind, demo_models_dir, demo_seq2seq_path, demo_qa_path):
    """`python -m modelforge.demo_model DIR KIND`, which ensure_demo_model_in_subprocess runs in a child process."""
    result = subprocess.run(
        [sys.executable, "-m", "modelforge.demo_model", str(demo_models_dir), kind],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.stdout.strip() == str(demo_models_dir / DEMO_MODELS[kind])
