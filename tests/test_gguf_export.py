"""GGUF export: the merged job written as GGUF, quantized by llama.cpp, with an Ollama Modelfile, and the parity check
that runs both the file (in llama.cpp, prompted through the Modelfile) and the tuned model on fixed prompts."""

from pathlib import Path

import pytest

from modelforge import gguf_export, model_card, modelfile, parity
from modelforge.export import ExportError


def test_every_offered_quantization_answers_like_the_tuned_model(tuned_job, engine, demo_model_path):
    f16 = engine.export_gguf(tuned_job.id, "f16", in_process=True)

    folder = Path(tuned_job.output_dir) / "gguf"
    assert f16.gguf == folder / "playground-lora-f16.gguf" and f16.modelfile == folder / "Modelfile.f16"
    assert f16.parity["passed"], f16.parity["problems"]
    # f16 holds the merged weights rounded to 16 bits: llama.cpp gives every answer token for token.
    assert f16.parity["exact_match"] == 1.0 and f16.parity["token_agreement"] == 1.0
    assert f16.parity["prompt_tokens_match"] == 1.0
    # The file holds the tuned weights, not the base's: the base model answers these prompts otherwise.
    merged = Path(tuned_job.output_dir) / "merged"
    assert _answer_ids(merged) != _answer_ids(demo_model_path)
    assert [row["gguf"] for row in f16.parity["examples"]] == [row["tuned"] for row in f16.parity["examples"]]

    text = f16.modelfile.read_text()
    assert text.startswith("FROM ./playground-lora-f16.gguf\n")
    assert 'PARAMETER stop "</s>"' in text
    # The demo tokenizer puts a space before each text segment; llama.cpp does not: the template writes it.
    assert "<s><|user|>{{ end }} {{ .Prompt }}<|assistant|>{{ .Response }}</s>" in text

    for quant in gguf_export.QUANTS:
        result = engine.export_gguf(tuned_job.id, quant, in_process=True)
        assert result.parity["passed"], (quant, result.parity["problems"])
        assert result.parity["prompt_tokens_match"] == 1.0
        if quant != "f16":
            assert result.size < f16.size * 0.6, quant
    # tuned_job's random adapter leaves close calls between tokens: q8_0 flips a few of them (measured: 18 of 19
    # answer tokens agree, 6 of 8 answers identical; the tied output matrix is q8_0 in every type of so small a model).
    q8 = gguf_export.saved_parity(tuned_job)["q8_0"]
    assert q8["token_agreement"] >= 0.9 and q8["exact_match"] >= 0.5

    card = str(model_card.model_card(tuned_job, Path(tuned_job.output_dir), "alice/demo", has_loss_curve=False))
    assert "## GGUF export (llama.cpp, Ollama)" in card
    assert "| f16 | 2.0 MB | 100% | 100.0% | ok |" in card and "| q8_0 |" in card


def _answer_ids(model_folder: Path) -> list[list[int]]:
    return [answer for _, answer, _ in parity._tuned_answers(model_folder, parity.PROMPTS)]


def test_a_wrong_stop_token_or_template_in_the_modelfile_fails_parity(finished_job, engine):
    exported = engine.export_gguf(finished_job.id, "f16", in_process=True)
    assert exported.parity["passed"]
    merged = Path(finished_job.output_dir) / "merged"
    good = exported.modelfile.read_text()

    exported.modelfile.write_text(good.replace('PARAMETER stop "</s>"', 'PARAMETER stop "<|end|>"'))
    report = parity.check(merged, exported.gguf, exported.modelfile)
    assert not report["passed"] and report["exact_match"] < 1.0  # the answers run on past their end
    assert report["problems"][0] == (
        "prompt 1 ('red blue green'): the tuned model ends its answer with '</s>', which no stop string of the "
        "Modelfile ('<|end|>') matches: Ollama would run on past the end of the answer"
    )
    assert parity.summary(report).startswith("parity FAILED: prompt 1 ('red blue green'): the tuned model ends")

    exported.modelfile.write_text(good.replace('"</s>"', '" red"'))  # a stop that cuts answers short
    report = parity.check(merged, exported.gguf, exported.modelfile)
    assert "the stop string ' red' lies inside the tuned model's answer: Ollama would cut it short" in " ".join(
        report["problems"])

    exported.modelfile.write_text(good.replace("{{ end }} {{ .Prompt }}", "{{ end }}<|system|>{{ .Prompt }}"))
    report = parity.check(merged, exported.gguf, exported.modelfile)
    assert not report["passed"] and report["prompt_tokens_match"] == 0.0
    assert report["problems"][0].startswith("prompt 1 ('red blue green'): the Modelfile's TEMPLATE gives llama.cpp ")
    assert "from token 2: '<|system|>red" in report["problems"][0], report["problems"][0]


def test_an_unsupported_quantization_is_refused_naming_the_supported_ones(finished_job, engine):
    with pytest.raises(ExportError, match=r"Unknown GGUF quantization 'q3_xs': choose one of f16, q8_0, .*q4_k_m"):
        engine.export_gguf(finished_job.id, "q3_xs")
    assert engine.gguf_quants() == list(gguf_export.QUANTS)


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_modelfile_template_follows_a_chatml_template_and_its_end_of_turn_token(demo_model_path):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    # Qwen's and SmolLM2's template form, on the demo tokenizer given ChatML's special tokens.
    backend = Tokenizer.from_file(str(demo_model_path / "tokenizer.json"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", chat_template=CHATML,
                                        additional_special_tokens=["<|im_start|>", "<|im_end|>"])

    template, stops = modelfile.translate(tokenizer, prefix_space=False)

    assert template == (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ else }}"
        "<|im_start|>user\n{{ end }}{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
    )
    assert stops == ["<|im_end|>", "<|endoftext|>"]
    for system in (None, "be brief"):
        turns = [{"role": "system", "content": system}] if system else []
        expected = tokenizer.apply_chat_template(turns + [{"role": "user", "content": "hi"}], tokenize=False,
                                                 add_generation_prompt=True)
        assert modelfile.prompt(template, "hi", system=system) == expected


def test_a_real_instruct_model_exported_as_f16_answers_as_in_transformers(real_causal_path, tmp_path):
    """SmolLM2-135M-Instruct (a real ChatML model with a default system prompt), written by us, read by llama.cpp."""
    target = tmp_path / "smollm2-f16.gguf"
    gguf_export.write_gguf(real_causal_path, target, name="smollm2")
    (tmp_path / "Modelfile").write_text(modelfile.build(real_causal_path, target.name))

    spec = modelfile.parse((tmp_path / "Modelfile").read_text())
    assert spec.stops == ["<|im_end|>"]
    assert "{{ else }}<|im_start|>system\nYou are a helpful AI assistant named SmolLM" in spec.template
    report = parity.check(real_causal_path, target, tmp_path / "Modelfile", prompts=parity.PROMPTS[:3])
    assert report["passed"], report["problems"]
    assert report["prompt_tokens_match"] == 1.0 and report["exact_match"] == 1.0  # measured: also 8/8 prompts
    assert report["token_agreement"] == 1.0
