"""GGUF export of a finished job, for llama.cpp and Ollama, checked against the tuned model.

The job's model (a LoRA job merged first, modelforge.export) is written as a GGUF file in f16 with the `gguf` package,
then quantized by llama.cpp itself (llama-cpp-python's `llama_model_quantize`) when another type is asked for. An
Ollama Modelfile goes beside it (modelforge.modelfile), and modelforge.parity runs a fixed prompt set through the file
with llama.cpp, as the Modelfile prompts it, and through the tuned model with transformers; its figures are saved
beside the file and shown on the model card and in the Hub tab.

The writer covers the Llama family (the demo model, SmolLM2, Llama, Mistral) with byte-level BPE tokenizers; other
models get a clear error. llama.cpp reads what we write, so a wrong tensor, tokenizer or template shows in parity.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from modelforge import export, run_folder
from modelforge.export import ExportError, Progress
from modelforge.settings import Settings

log = logging.getLogger(__name__)

GGUF_DIR = "gguf"  # inside the job's folder, beside `merged`
# Quantization types offered: the name llama.cpp's tools use -> its file type (enum llama_ftype). f16 is written here
# directly; the others are llama.cpp's own quantizer's. K-quants need rows of 256 values: llama.cpp falls back to a
# legacy type for tensors with shorter rows (the demo model's), as it does for any model.
QUANTS: dict[str, int] = {"f16": 1, "q8_0": 7, "q6_k": 18, "q5_k_m": 17, "q4_k_m": 15}
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama"}
# llama.cpp reorders the query and key rows of these architectures for its rotary embedding.
_PERMUTED = ("self_attn.q_proj.weight", "self_attn.k_proj.weight")


@dataclass
class GGUFExport:
    """What one export wrote: the GGUF file, its Modelfile and the parity check's report (modelforge.parity)."""

    gguf: Path
    modelfile: Path
    parity: dict

    @property
    def size(self) -> int:
        return self.gguf.stat().st_size


def check_quant(quant: str) -> str:
    quant = quant.lower()
    if quant not in QUANTS:
        raise ExportError(f"Unknown GGUF quantization {quant!r}: choose one of {', '.join(QUANTS)}.")
    return quant


def gguf_dir(job) -> Path:
    return Path(job.output_dir) / GGUF_DIR


def paths(job, quant: str) -> tuple[Path, Path, Path]:
    """(GGUF file, Modelfile, parity report) of `job` exported as `quant`."""
    folder = gguf_dir(job)
    return folder / f"{job.name}-{quant}.gguf", folder / f"Modelfile.{quant}", folder / f"parity-{quant}.json"


def saved_parity(job) -> dict[str, dict]:
    """quant -> the parity report of each GGUF export of `job` so far (the card and the Hub tab show them)."""
    found = {}
    for path in sorted(gguf_dir(job).glob("parity-*.json")):
        found[path.stem.removeprefix("parity-")] = json.loads(path.read_text())
    return found


def saved_export(job, quant: str) -> GGUFExport:
    """The files and parity report an earlier export of `job` as `quant` left (the child process's, say)."""
    target, modelfile_path, parity_path = paths(job, quant)
    if not parity_path.is_file():
        raise ExportError(f"Job #{job.id} has no GGUF export as {quant} yet.")
    return GGUFExport(target, modelfile_path, json.loads(parity_path.read_text()))


def card_lines(job) -> list[str]:
    """The model card's section on the job's GGUF exports and their parity with the tuned model (none: no lines)."""
    reports = saved_parity(job)
    if not reports:
        return []
    lines = [
        "## GGUF export (llama.cpp, Ollama)",
        "",
        f"Checked against this model on {next(iter(reports.values()))['prompts']} fixed prompts, the GGUF file run "
        "by llama.cpp and prompted through its Ollama Modelfile (chat template and stop strings).",
        "",
        "| quantization | size | greedy exact match | token agreement | template and stops |",
        "| --- | --- | --- | --- | --- |",
    ]
    for quant, report in reports.items():
        checked = "ok" if report["passed"] else "FAILED: " + report["problems"][0]
        lines.append(f"| {quant} | {report['size_bytes'] / 1e6:.1f} MB | {report['exact_match']:.0%} | "
                     f"{report['token_agreement']:.1%} | {checked} |")
    return [*lines, ""]


def export_job(job, settings: Settings, quant: str = "q8_0", progress: Progress | None = None) -> GGUFExport:
    """Export a completed job as a GGUF file of `quant` with its Modelfile, and check both against the tuned model.
    Runs here, with torch and llama.cpp: the CLI's `export-gguf` (the web process runs that in a child)."""
    from modelforge import modelfile, parity

    report = progress or (lambda fraction, message: None)
    quant = check_quant(quant)
    llama_cpp = _llama_cpp()
    folder = export.model_folder(job)
    if run_folder.is_adapter(folder):
        folder = export.merge_job(job, settings, lambda f, m: report(0.3 * f, f"merging: {m}"))
    target, modelfile_path, parity_path = paths(job, quant)
    target.parent.mkdir(exist_ok=True)
    f16 = target.with_name(f"{job.name}-f16.gguf")
    if not f16.is_file():
        report(0.3, "writing the GGUF file (f16)")
        write_gguf(folder, f16, name=job.name)
    if quant != "f16":
        report(0.5, f"quantizing to {quant} with llama.cpp")
        quantize(llama_cpp, f16, target, quant)
    report(0.6, "writing the Ollama Modelfile")
    modelfile_path.write_text(modelfile.build(folder, target.name), encoding="utf-8")
    report(0.7, "parity check: the fixed prompts through the GGUF file and through the tuned model")
    result = parity.check(folder, target, modelfile_path)
    parity_path.write_text(json.dumps(result, indent=2))
    report(1.0, f"{target} ({target.stat().st_size / 1e6:.1f} MB): {parity.summary(result)}")
    return GGUFExport(target, modelfile_path, result)


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise ExportError(
            "GGUF export needs llama-cpp-python (llama.cpp quantizes the file and runs the parity check): "
            "pip install llama-cpp-python (it compiles llama.cpp, ~5 min)."
        ) from exc
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # its quantizer logs every tensor otherwise
    return llama_cpp


def quantize(llama_cpp, source: Path, target: Path, quant: str) -> None:
    """llama.cpp's quantizer, as `llama-quantize source target quant` runs it."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant]
    params.nthread = 0  # all cores
    building = target.with_name(f".{target.name}.part")
    if llama_cpp.llama_model_quantize(str(source).encode(), str(building).encode(), params) != 0:
        building.unlink(missing_ok=True)
        raise ExportError(f"llama.cpp could not quantize {source.name} to {quant}: the server's log has its output.")
    building.rename(target)


def write_gguf(folder: Path, target: Path, name: str) -> None:
    """Write the transformers model in `folder` (a Llama-family causal LM) as an f16 GGUF file at `target`."""
    import gguf
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    architecture = next(iter(config.get("architectures") or []), "?")
    if architecture not in ARCHITECTURES:
        raise ExportError(
            f"GGUF export writes {', '.join(ARCHITECTURES)} models; this one is {architecture}. "
            "Convert it with llama.cpp's convert_hf_to_gguf.py instead."
        )
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{folder} holds no safetensors weights to convert.")
    heads, layers = config["num_attention_heads"], config["num_hidden_layers"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    rope = config.get("rope_parameters") or {}

    building = target.with_name(f".{target.name}.part")
    writer = gguf.GGUFWriter(building, ARCHITECTURES[architecture])
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config["vocab_size"])
    _add_tokenizer(writer, folder, config["vocab_size"])

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for file in files:
        for key, tensor in load_file(file).items():
            key = key.removeprefix("model.")
            if key == "lm_head.weight" and config.get("tie_word_embeddings"):
                continue  # llama.cpp reuses the token embedding
            if key.endswith(_PERMUTED[0]):
                tensor = _permute(tensor, heads)
            elif key.endswith(_PERMUTED[1]):
                tensor = _permute(tensor, kv_heads)
            gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise ExportError(f"GGUF export does not know the tensor {key} of this {architecture} model.")
            # Norms and other vectors stay float32, as llama.cpp expects them; matrices are stored in f16.
            array = tensor.float().numpy()
            writer.add_tensor(gguf_name, array if array.ndim == 1 else array.astype("float16"))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        building.rename(target)
    finally:
        building.unlink(missing_ok=True)


def _permute(weight, heads: int):
    """Query/key rows from the rotate-half order transformers uses to the interleaved pairs llama.cpp rotates."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _add_tokenizer(writer, folder: Path, vocab_size: int) -> None:
    """The tokenizer as llama.cpp's byte-level BPE: tokens by id, their kinds, merges, special ids, chat template."""
    import gguf
    from transformers import AutoTokenizer

    spec = json.loads((folder / "tokenizer.json").read_text())
    if spec["model"]["type"] != "BPE" or not byte_level(spec):
        raise ExportError("GGUF export writes byte-level BPE tokenizers (GPT-2 style); this model's is not one.")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    special = {added["content"] for added in spec.get("added_tokens", []) if added["special"]}
    added = {added["content"] for added in spec.get("added_tokens", [])}
    tokens, kinds = [], []
    for index in range(vocab_size):
        token = by_id.get(index, f"[PAD{index}]")
        tokens.append(token)
        if token in special:
            kinds.append(gguf.TokenType.CONTROL)
        elif token in added:
            kinds.append(gguf.TokenType.USER_DEFINED)
        elif index in by_id:
            kinds.append(gguf.TokenType.NORMAL)
        else:
            kinds.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(token_id)
    # A BOS is added by llama.cpp only where the tokenizer adds one itself; a chat template that writes it has it.
    writer.add_add_bos_token(bool(tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]))
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def byte_level(spec: dict) -> dict | None:
    """The ByteLevel pre-tokenizer of a tokenizer.json (alone or in a Sequence), when it splits as GPT-2 does."""
    pre = spec.get("pre_tokenizer") or {}
    for step in pre.get("pretokenizers", [pre]):
        if step.get("type") == "ByteLevel" and step.get("use_regex", True):
            return step
    return None
