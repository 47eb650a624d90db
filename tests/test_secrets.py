"""No secret leaves its place: after a push of the adapter and of the merged model, the Hugging Face token is in no
row of the database, no file of the data folder (job folders, logs, exported configs) and nothing pushed; and what
left the server (the pushed files, the model card) names none of its folders (home, data folder, temporary paths)."""

import sqlite3
import tempfile
from pathlib import Path

from modelforge import export
from modelforge.hub import push_job
from test_hub import evaluated_job  # noqa: F401  (the fixture: a finished job with its scores and loss points)

TOKEN = "hf_NeverStoreThisSecret0123456789"


def _server_paths(engine, demo_model_path) -> set[str]:
    """Absolute folders of this server that must not be published."""
    return {str(Path.home()), str(engine.settings.home), tempfile.gettempdir(), str(Path(demo_model_path).parent)}


def test_the_token_is_stored_nowhere_and_nothing_pushed_names_a_server_folder(
    evaluated_job, engine, fake_hub, demo_model_path, monkeypatch, caplog
):
    fake_hub.add_account(TOKEN, "alice")
    monkeypatch.setattr(export, "merge_job_in_subprocess", export.merge_job)  # test_export runs the child process
    push_job(evaluated_job, "demo", engine.settings, token=TOKEN)
    push_job(evaluated_job, "demo-merged", engine.settings, token=TOKEN, merged=True)
    engine.export_config(evaluated_job.id)

    connection = sqlite3.connect(engine.settings.database_path)
    tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    rows = [(table, row) for table in tables for row in connection.execute(f'SELECT * FROM "{table}"')]
    connection.close()
    assert not [table for table, row in rows if TOKEN in repr(row)]
    files = [path for path in engine.settings.home.rglob("*") if path.is_file()]
    assert {"train.log", "modelforge.yaml", "training_args.bin", "model.safetensors"} <= {path.name for path in files}
    assert not [path for path in files if TOKEN.encode() in path.read_bytes()]
    assert TOKEN not in caplog.text

    pushed = {f"{repo_id}/{name}": content for repo_id, repo in fake_hub.repos.items() for name, content in repo.files.items()}
    assert {"alice/demo/adapter_config.json", "alice/demo/modelforge.yaml", "alice/demo/README.md",
            "alice/demo-merged/config.json", "alice/demo-merged/README.md"} <= set(pushed)
    assert not [name for name in pushed if name.endswith("training_args.bin")]
    leaks = {
        (name, folder) for name, content in pushed.items() for folder in _server_paths(engine, demo_model_path)
        if folder.encode() in content or TOKEN.encode() in content
    }
    assert leaks == set()
    print(f"scanned: {len(rows)} database rows, {len(files)} files of the data folder, {len(pushed)} pushed files")
