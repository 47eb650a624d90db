"""Hostile input: a corpus of bad datasets through the running app (gradio_client) and the CLI, path tricks, size limits.

Every case must end in a clear error naming its line or column (or be accepted, where the file is only oddly shaped),
with no traceback shown to the user nor printed by the server, and the server still answering afterwards. The figures
go to a report file under the test's tmp_path, printed too (`pytest -s` shows it).
"""

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import free_port
from hostile_data import PAIRS, write_corpus
from modelforge.db import DatasetRecord, Job
from modelforge.hub import HubError
from modelforge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every case's file, the 1e6-row and 10 MB ones included, written once for the whole module."""
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_models_dir):
    """One app server for the module: (client, settings)."""
    from modelforge.engine import Engine
    from modelforge.ui import build_app

    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(demo_models_dir, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELFORGE_HOME", str(home))
        for name in ("MODELFORGE_DB_PATH", "DATABASE_URL", "MODELFORGE_MAX_UPLOAD_MB"):
            patch.delenv(name, raising=False)
        settings = Settings.from_env()
        engine = Engine.create(settings)
        app = build_app(engine)
        port = free_port()
        app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield Client(f"http://127.0.0.1:{port}/", verbose=False), engine
        finally:
            app.close()


def _validate(client, path, task, strategy=None, hub_id="", max_length=None):
    report, *_ = client.predict(
        handle_file(str(path)) if path else None, hub_id, task, strategy, "", max_length or 512, None, None, None,
        api_name="/dataset_validate",
    )
    return report.replace("\\", "")  # the page's markdown escapes


def _save(client, name, path, task="text-generation", strategy=None, mapping=("input", "output", None)):
    message, *_ = client.predict(name, handle_file(str(path)), "", task, strategy, *mapping, api_name="/dataset_save")
    return message.replace("\\", "")


def _cli(*args, settings, timeout=600):
    env = {**os.environ, "MODELFORGE_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "modelforge", *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def _sections(output: str, paths: list[Path]) -> dict[Path, str]:
    """What `validate` printed for each path: from where it names the path to where it names the next."""
    starts = sorted((output.index(str(path)), path) for path in paths)
    ends = [start for start, _ in starts[1:]] + [len(output)]
    return {path: output[start:end] for (start, path), end in zip(starts, ends)}


def test_every_bad_dataset_gets_a_clear_error_in_the_app_and_the_cli(server, corpus, tmp_path, capfd):
    client, engine = server
    settings = engine.settings
    results = []
    for case, path in corpus:
        started = time.monotonic()
        try:
            shown = _validate(client, path, case.task, case.strategy, max_length=case.max_length)
        except AppError as exc:  # the handler raised: the user saw "Error", the server printed a traceback
            shown = f"UNHANDLED {exc}"
        seconds = time.monotonic() - started
        saved = _save(client, "corpus", path, case.task, case.strategy) if case.expected and path.stat().st_size < 2**20 else ""
        results.append({"case": case, "path": path, "ui": shown, "ui_seconds": seconds, "save": saved})

    groups = defaultdict(list)
    for result in results:
        if result["case"].max_length:  # checked against the model's tokenizer: by `train` (below), not `validate`
            result.update(cli=result["ui"], cli_seconds=0.0, cli_stderr="")
            continue
        groups[(result["case"].task, result["case"].strategy)].append(result)
    for (task, strategy), members in groups.items():
        command = ["validate", *(str(r["path"]) for r in members), "--task", task, "--limit", "100"]
        started = time.monotonic()
        done = _cli(*command, *(["--strategy", strategy] if strategy else []), settings=settings)
        per_file = (time.monotonic() - started) / len(members)
        sections = _sections(done.stdout, [r["path"] for r in members])
        any_error = any(r["case"].expected for r in members)
        for result in members:
            result.update(cli=sections[result["path"]], cli_seconds=per_file, cli_rc=done.returncode,
                          cli_stderr=done.stderr)
        assert done.returncode == (2 if any_error else 0), done.stderr[-2000:]

    server_log = capfd.readouterr()
    lines = [f"{'case':<36} {'task/strategy':<16} {'app':>6} {'cli':>6}  what the user is told (app)"]
    for result in results:
        case = result["case"]
        told = next((line.strip("- ") for line in result["ui"].splitlines() if case.expected and case.expected in line),
                    result["ui"].splitlines()[0])
        lines.append(f"{case.name:<36} {case.strategy or case.task:<16} {result['ui_seconds']:5.1f}s {result['cli_seconds']:5.1f}s  {told[:150]}")
    errors = [r for r in results if r["case"].expected]
    tracebacks = sum("Traceback" in r["ui"] + r["cli"] + r["cli_stderr"] + r["save"] for r in results)
    tracebacks += server_log.err.count("Traceback") + server_log.out.count("Traceback")
    lines.append(
        f"\n{len(results)} hostile datasets tried; {len(errors)} must be refused, {len(results) - len(errors)} accepted; "
        f"errors shown: app {sum(r['case'].expected in r['ui'] for r in errors)}, "
        f"cli {sum(r['case'].expected in r['cli'] for r in errors)}; tracebacks: {tracebacks}"
    )
    report = tmp_path / "hostile-input-report.txt"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"\n{report}:\n" + report.read_text(encoding="utf-8"))

    assert len(results) >= 40
    for result in results:
        case, shown, printed = result["case"], result["ui"], result["cli"]
        assert "Traceback" not in shown + printed + result["cli_stderr"] + result["save"], case.name
        assert str(result["path"].parent) not in shown, f"{case.name}: the server's path is shown"
        if case.expected is None:
            assert shown.startswith("### ✅ Valid"), f"{case.name}: {shown[:300]}"
            assert "0 errors" not in printed and "error" not in printed.split("\n", 1)[0], f"{case.name}: {printed[:300]}"
        else:
            assert shown.startswith("❌") or shown.startswith("### ❌"), f"{case.name}: {shown[:300]}"
            assert case.expected in shown, f"{case.name}: {shown[:500]}"
            assert case.expected in printed, f"{case.name}: {printed[:500]}"
            assert result["save"] in ("", "❌ Press Validate first: the dataset, task or columns changed since the last check.")
    assert "Traceback" not in server_log.err + server_log.out
    assert DatasetRecord.select().count() == 0  # nothing bad was saved
    assert client.predict(api_name="/dataset_list")["data"] == []  # and the server still answers


@pytest.mark.parametrize("name", ["latin-1 on line 4", "chat user twice in a row", "a 10 MB line", "every label masked"])
def test_train_refuses_a_bad_dataset_before_queueing(server, corpus, tmp_path, name):
    _, engine = server
    settings = engine.settings
    case, path = next((case, path) for case, path in corpus if case.name == name)
    config = tmp_path / "job.yaml"
    config.write_text(f"task: {case.task}\ndataset: {path}\ntraining: {{max_length: {case.max_length or 512}}}\n")
    done = _cli("train", str(config), settings=settings)
    assert done.returncode == 2, done.stdout + done.stderr
    assert case.expected in done.stderr and "Traceback" not in done.stdout + done.stderr
    assert Job.select().count() == 0


def test_the_hub_id_field_reads_no_file_of_the_server(server, tmp_path):
    client, engine = server
    secret = tmp_path / "secret.jsonl"
    secret.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS), encoding="utf-8")
    for typed in (str(secret), "/etc/passwd", "../../secret.jsonl", f"{tmp_path.name}/../secret.jsonl", "~/.ssh/id_rsa"):
        shown = _validate(client, None, "text-generation", hub_id=typed)
        assert "is not a Hugging Face Hub dataset id" in shown, typed
        assert "say cat" not in shown and "valid" not in shown


def test_names_and_uploads_cannot_leave_the_data_folder(server, tmp_path):
    client, engine = server
    settings = engine.settings
    good = tmp_path / "..\\..\\escape.jsonl"  # a file name with the separators of another system
    good.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS), encoding="utf-8")
    assert _validate(client, good, "text-generation").startswith("### ✅ Valid")
    for name in ("../evil", "a/b", "..", ".", "x" * 101, "name\n.."):
        assert "is not allowed; use letters, digits" in _save(client, name, good), name
    # A link planted where the upload would be stored is not written through.
    folder = settings.datasets_dir.resolve()
    target = tmp_path / "outside.jsonl"
    (folder / "escape.jsonl").symlink_to(target)
    message = _save(client, "escaped", good)
    assert message.startswith("✅ Saved **escaped**"), message
    record = DatasetRecord.get(DatasetRecord.name == "escaped")
    assert Path(record.path) == folder / "escape-2.jsonl" and Path(record.path).read_text() == good.read_text()
    assert not target.exists()
    assert all(path.resolve().parent == folder for path in folder.iterdir() if not path.is_symlink())
    client.predict(api_name="/dataset_list")  # a refresh, not a delete: the saved dataset is kept
    record.delete_instance()


def test_output_folders_outside_the_runs_folder_or_through_a_link_are_refused(server, tmp_path):
    client, engine = server
    settings = engine.settings
    data = ROOT / "assets" / "samples" / "text-generation.jsonl"
    labels = {parameter["label"]: parameter["parameter_name"]
              for parameter in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
              ["/start_training"]["parameters"]}
    output_dir = labels["output folder under the data folder's runs/ (empty: the job's name)"]
    link = settings.runs_dir / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    for typed, expected in (("../../escape", "climbs out of its folder with '..'"), ("/tmp/elsewhere", "is outside"),
                            ("link", "is outside"), (str(tmp_path), "is outside")):
        message = client.predict(dataset=str(data), **{output_dir: typed}, api_name="/start_training")
        assert message.startswith("**Could not start:**") and expected in message, (typed, message)
    assert Job.select().count() == 0 and not (tmp_path / "escape").exists()

    config = tmp_path / "job.yaml"
    for typed, expected in (("../x", "climbs out of its folder with '..'"), (str(link), "is a symbolic link")):
        config.write_text(f"dataset: {data}\noutput_dir: {typed}\n", encoding="utf-8")
        done = _cli("train", str(config), settings=settings)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert Job.select().count() == 0


def test_hub_repo_ids_that_climb_or_nest_are_refused(server, tmp_path):
    _, engine = server
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    job = Job.create(name="done", config="{}", status="completed", stage="completed", output_dir=str(folder))
    try:
        for repo_id in ("../../etc", "owner/../name", "a/b/c", "owner/name/", "--name", "x" * 97):
            with pytest.raises(HubError, match="is not a valid repo id"):
                engine.push_to_hub(job.id, repo_id, token="hf_not_used")
        done = _cli("push", str(job.id), "../../etc", settings=engine.settings)
        assert done.returncode == 2 and "'../../etc' is not a valid repo id" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    finally:
        job.delete_instance()


def test_the_upload_size_limit_is_enforced(server, tmp_path, monkeypatch):
    client, engine = server
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as out:
        while out.tell() < 2 * 2**20:
            out.write(json.dumps({"input": f"say {out.tell()}", "output": "cat"}) + "\n")
    monkeypatch.setenv("MODELFORGE_MAX_UPLOAD_MB", "1")
    shown = _validate(client, path, "text-generation")
    assert shown == "❌ big.jsonl is 2.0 MB, over the upload limit of 1 MB; use a smaller file, or raise the limit with MODELFORGE_MAX_UPLOAD_MB"
    assert _save(client, "big", path).startswith("❌")
    monkeypatch.setenv("MODELFORGE_MAX_UPLOAD_MB", "3")
    assert _validate(client, path, "text-generation").startswith("### ✅ Valid")
