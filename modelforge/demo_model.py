"""The built-in demo model: a tiny causal LM built offline, so that newcomers without network can fine-tune something.

A randomly initialised model does not learn with LoRA, and a model pretrained on a few words only learns mappings
between those words. So the demo model is pretrained briefly to repeat sequences of 1-8 random words drawn from a broad
English vocabulary, formatted as conversations with its own chat template. That teaches the template, the end of a
turn, and to line up each word of the answer with a word of the question, so LoRA can then teach it a new word-level
task (assets/samples/) in under a hundred steps on a CPU. Measured here, longer sequences (8 words rather than 3-5)
made that alignment, and so held-out accuracy after LoRA, much better; mixing in other skills (reverse, count, pick)
at the same budget made it worse.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEMO_MODEL_NAME = "demo-causal-v1"  # bump the version whenever the recipe below changes

SPECIAL_TOKENS = {
    "pad": "<pad>",
    "bos": "<s>",
    "eos": "</s>",
    "user": "<|user|>",
    "assistant": "<|assistant|>",
    "system": "<|system|>",
}

# The assistant turn, its end-of-sequence token included, lies inside {% generation %} so that TRL's
# assistant_only_loss trains the model to answer and to stop. Each message is its own segment between special
# tokens, and the tokenizer adds a space before every segment, so a word is the same token wherever it stands.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{% elif message['role'] in ['user', 'system'] %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}"
    "{% else %}"
    "{{ raise_exception('The demo model knows the roles system, user and assistant, not ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

WORDS = """
the a an and or but not no yes is are was were be it this that these those he she they we you i me him her them us
my your his its our their what which who where when why how there here of to in on at by for with from up down out
over under into about after before again all any each every few many more most some only same so than too very can
will just now then also if as one two three four five six seven eight nine ten zero eleven twelve twenty hundred
none cat dog cow duck sheep horse pig bird frog fish bee lion tiger bear wolf fox rabbit mouse snake spider owl goat
chicken monkey elephant whale shark ant deer camel zebra apple banana orange grape lemon bread milk cheese egg rice
cake tea coffee water juice soup meat salt sugar honey butter carrot potato tomato red blue green yellow black white
brown pink purple gray gold silver head hand foot eye ear nose mouth hair arm leg face heart back house home door
window room bed table chair floor wall roof kitchen garden car bus train boat ship plane bike road street city town
village farm shop school park bank hospital office sun moon star sky cloud rain snow wind storm sea ocean river lake
pond forest tree flower grass leaf rock sand stone hill mountain island beach field fire ice earth air hive nest web
barn stable den burrow day night morning evening week month year today tomorrow yesterday time hour minute spring
summer autumn winter monday tuesday wednesday thursday friday saturday sunday man woman boy girl child baby friend
mother father sister brother king queen doctor teacher student farmer driver book pen paper letter box bag ball key
cup plate knife spoon fork clock phone computer money ring hat shoe shirt coat dress go come run walk jump swim fly
sit stand eat drink sleep wake read write sing dance play work talk speak say tell ask answer look see watch hear
listen think know want like love hate give take make find keep open close start stop begin end buy sell push pull
win lose help live grow cook wash build break carry catch throw climb drive ride fall rise says makes has have
does do hot cold big small fast slow old new young happy sad light dark good bad high low hard soft full empty rich
poor long short wet dry near far loud quiet clean dirty thick thin strong weak heavy early late warm cool sweet sour
bright tall deep wide narrow easy simple safe busy free kind nice pretty quick brave calm angry tired hungry funny
closed left right first last top bottom inside outside meow woof moo quack baa neigh oink tweet ribbit buzz roar
hiss squeak hoot howl hello hi thanks please sorry goodbye name word sentence question color colour sound legs wings
tail animal food place thing way part number much lives eats hole
""".split()  # noqa: SIM905 - a long word list reads better as text

_SEED = 1234
_VOCAB_SIZE = 1024  # most words of WORDS become one token; other text falls back to shorter pieces
_PRETRAIN_STEPS = 600
_PRETRAIN_BATCH = 16
_PRETRAIN_LR = 3e-3
_MAX_WORDS = 8


def ensure_demo_model(models_dir: Path) -> Path:
    """Return the folder of the demo model under `models_dir`, building it (about 30 s on 2 CPU cores) when absent.

    Safe to call from several processes at once: one builds under a file lock, into a temporary folder that is
    renamed into place when complete, so a half-built folder is never seen.
    """
    folder = models_dir / DEMO_MODEL_NAME
    if folder.is_dir():
        return folder
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{DEMO_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if folder.is_dir():  # another process built it while this one waited for the lock
            return folder
        building = Path(tempfile.mkdtemp(prefix=f".{DEMO_MODEL_NAME}-", dir=models_dir))
        try:
            _build(building)
            building.chmod(0o755)  # mkdtemp made it private; the model is not
            os.rename(building, folder)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return folder


def ensure_demo_model_in_subprocess(models_dir: Path) -> Path:
    """Like ensure_demo_model, for the web process: a build runs in a child process, so torch stays out of it."""
    folder = models_dir / DEMO_MODEL_NAME
    if not folder.is_dir():
        env = {**os.environ, "MODELFORGE_HOME": str(models_dir.parent)}  # `demo-model` builds into HOME/models
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")]))
        subprocess.run([sys.executable, "-m", "modelforge", "demo-model"], env=env, check=True, capture_output=True)
    return folder


def generate_reply(model, tokenizer, conversation: str | list[dict[str, str]], max_new_tokens: int = 32) -> str:
    """The model's greedy answer to one user message, or to a list of messages ending with a user turn."""
    import torch

    messages = [{"role": "user", "content": conversation}] if isinstance(conversation, str) else conversation
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def _build(folder: Path) -> None:
    import torch

    # The matrices are tiny: a second thread saves ~15 % on an idle 2-core machine, but while other processes share
    # the cores OpenMP threads spin and a build took 14 minutes instead of 40 s. One thread also keeps the weights
    # the same from build to build.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _build_single_threaded(folder)
    finally:
        torch.set_num_threads(threads)


def _build_single_threaded(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(_SEED)
    torch.manual_seed(_SEED)
    tokenizer = _train_tokenizer(rng)
    config = LlamaConfig(
        vocab_size=-(-len(tokenizer) // 32) * 32,  # a multiple of 32, like every linear output size (4-bit kernels)
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 0.1)
    _pretrain(model, tokenizer, rng)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _train_tokenizer(rng: random.Random):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    # Drop the space the pre-tokenizer put before the first segment, so that an answer decodes as "cold", not " cold".
    backend.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((" ".join(_random_words(rng, 8)) for _ in range(2000)), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=SPECIAL_TOKENS["bos"],
        eos_token=SPECIAL_TOKENS["eos"],
        pad_token=SPECIAL_TOKENS["pad"],
        additional_special_tokens=[SPECIAL_TOKENS[role] for role in ("user", "assistant", "system")],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def _random_words(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(count)]


def _random_conversation(rng: random.Random) -> list[tuple[str, str]]:
    """A one-turn conversation in which the assistant repeats the user's random words."""
    text = " ".join(_random_words(rng, rng.randint(1, _MAX_WORDS)))
    return [(text, text)]


def _conversation_ids(tokenizer, exchanges: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of a conversation as CHAT_TEMPLATE renders it, and labels that train on the assistant turns only.

    Every message is its own segment between special tokens, so encoding them one by one gives the template's ids
    (the tests check it) without rendering a template per row.
    """
    bos, eos, user, assistant = tokenizer.convert_tokens_to_ids(
        [SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"], SPECIAL_TOKENS["user"], SPECIAL_TOKENS["assistant"]]
    )
    encoded = tokenizer([text for exchange in exchanges for text in exchange], add_special_tokens=False)["input_ids"]
    ids, labels = [bos], [-100]
    for question, answer in zip(encoded[::2], encoded[1::2]):
        answer = answer + [eos]
        ids += [user, *question, assistant, *answer]
        labels += [-100] * (len(question) + 2) + answer
    return ids, labels


def _pretrain(model, tokenizer, rng: random.Random) -> None:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=_PRETRAIN_LR, betas=(0.9, 0.95), weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=_PRETRAIN_LR, total_steps=_PRETRAIN_STEPS, pct_start=0.05
    )
    model.train()
    for _ in range(_PRETRAIN_STEPS):
        rows = [_conversation_ids(tokenizer, _random_conversation(rng)) for _ in range(_PRETRAIN_BATCH)]
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
        labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in rows])
        attention_mask = (input_ids != tokenizer.pad_token_id).long()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
