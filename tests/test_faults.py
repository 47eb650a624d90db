"""Faults injected for real: the web server killed mid-job and mid-write, a crash of runner and worker, a damaged
checkpoint on resume, a full disk, the database gone mid-job. Each ends in a recorded state whose message says
what to do, and nothing that was saved is lost."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import create_database, free_port, start_postgres

from modelforge import run_folder, store
from modelforge.config import JobConfig
from modelforge.db import Job, database, init_database
from modelforge.engine import Engine
from modelforge.runner import process_identity

ROOT = Path(__file__).resolve().parent.parent
# Two or three worker runs each: a minute or two here, but over pytest's 600 s on a machine shared by other runs.
SLOW_ON_A_BUSY_MACHINE = pytest.mark.timeout(1800)
PYTHON_ENV = {"PYTHONPATH": str(ROOT)}


def _config(dataset, output_dir=None, **training):
    settings = dict(max_steps=120, batch_size=8, learning_rate=3e-3, save_steps=10, logging_steps=1, eval_split=0)
    settings.update(training)
    return JobConfig(name="fault", dataset=str(dataset), output_dir=output_dir and str(output_dir), training=settings)


def _wait_for(predicate, timeout=300, what="the expected state"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never reached {what}")


def _whole_checkpoints(output_dir: Path) -> list[Path]:
    return [folder for folder in run_folder.newest_first(output_dir) if run_folder.problem(folder) is None]


def _points(job_id: int) -> list[tuple[int, float]]:
    return [(point.step, point.loss) for point in store.metric_points(job_id) if point.loss is not None]


@SLOW_ON_A_BUSY_MACHINE
def test_the_web_server_killed_mid_job_leaves_the_job_training_and_a_restart_adopts_it(engine, mapping_dataset):
    app = subprocess.Popen([sys.executable, "app.py", "--port", str(free_port())], cwd=ROOT, env={**os.environ, **PYTHON_ENV},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        job = engine.submit(_config(mapping_dataset["train"], max_steps=80))
        job = _wait_for(lambda: (j := store.get_job(job.id)).step >= 5 and j, what="training in the app's worker")
        assert job.supervisor == process_identity(app.pid)  # the app's runner claimed it
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()
    seen = _points(job.id)

    restarted = Engine.create(engine.settings)  # what `python app.py` does first: judge the jobs left running
    assert store.get_job(job.id).status == "running"  # its worker lives on in its own session: not interrupted
    job = restarted.runner.wait(job.id)
    assert (job.status, job.error, job.step) == ("completed", None, 80)
    points = _points(job.id)
    assert points[: len(seen)] == seen and [step for step, _ in points] == list(range(1, 81))
    assert (Path(job.output_dir) / "adapter_model.safetensors").is_file()


@SLOW_ON_A_BUSY_MACHINE
def test_a_crash_interrupts_the_job_and_resume_sets_a_damaged_checkpoint_aside(engine, mapping_dataset, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(_config(mapping_dataset["train"], max_steps=50, save_steps=5).to_yaml())
    cli = subprocess.Popen([sys.executable, "-m", "modelforge", "train", str(config)], cwd=ROOT,
                           env={**os.environ, **PYTHON_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job = _wait_for(lambda: Job.get_or_none(Job.id == 1), what="the CLI's job")
    output_dir = Path(job.output_dir)
    _wait_for(lambda: len(_whole_checkpoints(output_dir)) >= 2, what="two checkpoints")
    job = store.get_job(job.id)
    os.killpg(job.worker_pid, signal.SIGKILL)  # the machine goes down: runner and worker together
    cli.kill()
    cli.wait()
    _wait_for(lambda: process_identity(job.worker_pid).endswith(":None"), what="the worker gone")
    kept = _points(job.id)

    restarted = Engine.create(engine.settings)
    job = store.get_job(job.id)
    assert job.status == "interrupted"
    assert "The job's worker was gone when ModelForge restarted; resume continues from the last checkpoint" in job.error

    damaged, intact = _whole_checkpoints(output_dir)[:2]
    optimizer = damaged / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    restarted.runner.resume(job.id)
    job = restarted.runner.wait(job.id)
    assert (job.status, job.error, job.step) == ("completed", None, 50)
    assert job.final_metrics["resumed_from"] == intact.name
    set_aside = " ".join(job.final_metrics["checkpoints_set_aside"])
    assert f"{damaged.name} was set aside as damaged-{damaged.name}: optimizer.pt is damaged" in set_aside
    assert (output_dir / f"damaged-{damaged.name}" / "optimizer.pt").stat().st_size > 0  # kept, not deleted
    points = _points(job.id)
    assert set(kept) <= set(points) and max(step for step, _ in points) == 50


def test_resume_with_no_intact_checkpoint_says_so_and_sets_it_aside(engine, mapping_dataset):
    job = engine.submit(_config(mapping_dataset["train"], max_steps=10))
    job = engine.runner.wait(job.id)
    assert job.status == "completed", job.error
    checkpoint = run_folder.newest_first(Path(job.output_dir))[0]
    (checkpoint / "trainer_state.json").write_text('{"global_step": 10, "log_hist')  # cut short
    store.update(job.id, status="interrupted")

    engine.runner.resume(job.id)
    job = engine.runner.wait(job.id)
    assert job.status == "failed"
    assert job.error.startswith(
        f"No checkpoint to resume from is intact: {checkpoint.name} was set aside as damaged-{checkpoint.name}: "
        "trainer_state.json is damaged (Unterminated string"
    )
    assert job.error.endswith("Resume again to train from the start.")
    output_dir = Path(job.output_dir)
    assert run_folder.newest_first(output_dir) == []  # so the next resume starts over, as the message says
    assert (output_dir / f"damaged-{checkpoint.name}" / "trainer_state.json").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB tmpfs: room for two of the demo model's checkpoints (2.1 MB each), not for a third."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here to fill a disk ({mounted.stderr.strip()}); needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


@SLOW_ON_A_BUSY_MACHINE
def test_a_full_disk_while_saving_a_checkpoint_fails_the_job_with_the_intact_one_named(
    engine, mapping_dataset, small_disk
):
    job = engine.submit(_config(mapping_dataset["train"], output_dir=small_disk, max_steps=40, save_steps=5))
    job = engine.runner.wait(job.id)
    assert job.status == "failed"
    kept = _whole_checkpoints(small_disk)
    assert [folder.name for folder in run_folder.newest_first(small_disk)] == [folder.name for folder in kept]
    newest = kept[0]
    assert job.error.startswith(f"The disk holding {small_disk} is full (")
    assert job.error.endswith(
        f"a save failed. The incomplete checkpoint-{int(newest.name.split('-')[1]) + 5} was removed. "
        f"{newest.name} is intact: free some space, then resume continues from it."
    )
    points = _points(job.id)
    assert [step for step, _ in points] == list(range(1, len(points) + 1)) and len(points) >= 10

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # the user frees space
    engine.runner.resume(job.id)
    job = engine.runner.wait(job.id)
    assert (job.status, job.step) == ("completed", 40)
    assert set(points) <= set(_points(job.id))


WRITER = """
import sys
from modelforge import dataset_store
from modelforge.engine import Engine
from modelforge.config import JobConfig

engine = Engine.from_env()
sample, start = sys.argv[1], int(sys.argv[2])
for i in range(start, start + 1000):
    stored = dataset_store.store_upload(engine.settings, sample, "upload.jsonl")
    dataset_store.save_dataset(engine.settings, f"data-{i}", stored, "text-generation")
    engine.runner.submit(JobConfig(name=f"job-{i}", dataset=f"data-{i}"))
    print(i, flush=True)
"""


@pytest.mark.both_databases
def test_the_web_server_killed_during_database_writes_keeps_every_saved_row_whole(settings, mapping_dataset):
    rounds, saved = 4, []
    rng = random.Random(0)
    for round_ in range(rounds):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mapping_dataset["train"]), str(1000 * round_)],
                                  cwd=ROOT, env={**os.environ, **PYTHON_ENV}, stdout=subprocess.PIPE, text=True)
        for _line in range(rng.randint(3, 8)):
            saved.append(int(writer.stdout.readline()))
        time.sleep(rng.uniform(0, 0.05))  # land the kill somewhere inside a save
        writer.kill()
        saved += [int(line) for line in writer.stdout.read().split()]  # saves it reported before it died
        writer.wait()

    init_database(settings)
    if settings.database_url is None:
        assert database.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
    from modelforge.db import DatasetRecord

    records = {record.name: record for record in DatasetRecord.select()}
    assert {f"data-{i}" for i in saved} <= set(records)  # every save that returned is there
    assert len(records) - len(saved) <= rounds  # at most the one in flight at each kill
    for record in records.values():  # and every recorded dataset is whole
        assert Path(record.path).read_bytes() == Path(mapping_dataset["train"]).read_bytes()
    assert {f"job-{i}" for i in saved} <= {job.name for job in Job.select()}


@SLOW_ON_A_BUSY_MACHINE
def test_the_database_gone_mid_job_interrupts_it_with_a_checkpoint_and_resume_finishes(
    tmp_path, demo_models_dir, monkeypatch, mapping_dataset
):
    server = start_postgres()  # its own server, stopped mid-job; the session's one serves other tests
    try:
        url = create_database(server.url)
        home = tmp_path / "home"
        home.mkdir()
        (home / "models").symlink_to(demo_models_dir, target_is_directory=True)
        monkeypatch.setenv("MODELFORGE_HOME", str(home))
        monkeypatch.setenv("DATABASE_URL", url)
        config = tmp_path / "job.yaml"
        config.write_text(_config(mapping_dataset["train"], max_steps=80).to_yaml())
        cli = subprocess.Popen([sys.executable, "-m", "modelforge", "train", str(config)], cwd=ROOT,
                               env={**os.environ, **PYTHON_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        engine = Engine.from_env()
        job = _wait_for(lambda: (j := Job.get_or_none(Job.id == 1)) and j.step >= 10 and j, what="training")
        kept = _points(job.id)
        database.close()
        server.run("stop")
        time.sleep(5)  # the worker notices at its next step, saves a checkpoint and waits for the database
        server.run("start")
        out, err = cli.communicate(timeout=900)
        assert cli.returncode == 1
        assert "The database became unreachable" in err and "Traceback" not in err
        job = store.get_job(1)
        assert job.status == "interrupted"
        assert job.error.startswith("The database became unreachable: ")
        saved = run_folder.newest_first(Path(job.output_dir))[0]
        assert job.error.endswith(f"The job stopped at step {saved.name.split('-')[1]} with checkpoint {saved}; "
                                  "resume continues from it.")
        assert run_folder.problem(saved) is None and job.step >= 10
        assert set(kept) <= set(_points(job.id))

        job = engine.runner.wait(engine.runner.resume(job.id).id)
        assert (job.status, job.step) == ("completed", 80)
    finally:
        database.close()
        server.run("remove")
