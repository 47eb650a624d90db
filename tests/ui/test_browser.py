"""End to end in real headless Chromium: upload, validate, train from the CLI and from the page, reload mid-training,
read the drawn charts, compare the result with its base; every tab's screenshot is checked by what it shows."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from modelforge import store
from modelforge.config import JobConfig
from modelforge.db import init_database
from modelforge.hardware import detect, recommended_models
from modelforge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "samples" / "text-generation.jsonl"
CHROMIUM = "/usr/bin/chromium"
QA_CONTEXT = "the tiger is pink. the bear lives in the hill. the dog lives in the island. the frog is yellow."
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# A short job a user starts from a terminal while the page is open: warm-up then cosine decay, evaluated twice.
CLI_JOB = """\
dataset: {dataset}
name: from-cli
training: {{max_steps: 20, batch_size: 16, learning_rate: 0.003, warmup_ratio: 0.25, logging_steps: 2, save_steps: 10}}
evaluation: {{compare_base: false, max_samples: 8}}
"""
# What a LinePlot drew, read from Vega's SVG scenegraph: each axis's description (its scale type) and tick labels
# (value and position), and each line's colour and points (the datum drawn and its position), in drawn order.
READ_CHART = """(id) => {
  const svg = document.querySelector(`#${id} svg.marks`);
  if (!svg) return null;
  const axes = {};
  for (const g of svg.querySelectorAll("g.role-axis[aria-label]")) {
    const label = g.getAttribute("aria-label");
    const ticks = Array.from(g.querySelectorAll(".role-axis-label text"), t => t.__data__)
      .map(item => [item.datum.value, item.x, item.y]);
    axes[label[0]] = {label, ticks};
  }
  const lines = Array.from(svg.querySelectorAll("g.mark-line path"), path => ({
    stroke: path.getAttribute("stroke"),
    points: path.__data__.mark.items.map(item => [item.datum, item.x, item.y]),
  }));
  return {axes, lines};
}"""


@dataclass
class Server:
    url: str
    home: Path
    env: dict


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path, demo_models_dir):
    """`python app.py` as a user starts it, in its own process, on a fresh data folder."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(demo_models_dir, target_is_directory=True)
    port = _free_port()
    env = {**os.environ, "MODELFORGE_HOME": str(home), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("MODELFORGE_DB_PATH", None)
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "server.log").read_text())
            time.sleep(0.2)
    yield Server(url, home, env)
    process.terminate()
    process.wait(timeout=30)
    for job in ("1", "2"):  # a worker a failed test left behind
        subprocess.run([sys.executable, "-m", "modelforge", "cancel", job], cwd=ROOT, env=env, capture_output=True, timeout=120)


def _visible(locator):
    return locator.filter(visible=True).first


def _set_number(field, value: str) -> None:
    """Type into a number field until the app keeps the value (fields in a just-opened accordion may re-mount)."""
    for _ in range(5):
        field.fill(value)
        field.press("Tab")  # a number field hands its value to the app when it loses focus
        field.page.wait_for_timeout(400)
        if field.input_value() == value:
            return
    raise AssertionError(f"the field kept {field.input_value()!r} instead of {value!r}")


def _step(page) -> tuple[int, int]:
    match = re.search(r"step (\d+)/(\d+)", page.locator("#job-status").inner_text())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _wait_for_step_above(page, step: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current, _ = _step(page)
        if current > step:
            return current
        page.wait_for_timeout(500)
    raise AssertionError(f"training did not get past step {step}: {page.locator('#job-status').inner_text()}")


def _choose_finished_job(page, tab: str, option: str):
    """Open a tab, refresh its finished jobs and choose one; returns the dropdown."""
    page.get_by_role("tab", name=tab).click()
    _visible(page.get_by_role("button", name=re.compile("Refresh jobs"))).click()
    dropdown = _visible(page.get_by_label("Finished job"))
    dropdown.click()
    _visible(page.get_by_role("option", name=re.compile(option))).click()
    return dropdown


def _until(check, timeout: float = 30):
    """Retry a check of what the page shows until it passes: the page polls once a second and redraws."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _pixel_to_value(ticks: list[tuple[float, float]], pixel: float) -> float:
    (first, first_pixel), (last, last_pixel) = ticks[0], ticks[-1]
    return first + (pixel - first_pixel) * (last - first) / (last_pixel - first_pixel)


def _drawn_lines(page, chart_id: str, x: str, y: str, color: str | None = None) -> dict:
    """The lines a person sees in a chart, {series: [(x, y), ...]} in drawn order, once it is checked that both axes are
    linear with numeric ticks ascending (rightwards, upwards), each line has its own colour, its points run in x order
    and each point sits where the axes say its values are."""
    drawn = page.evaluate(READ_CHART, chart_id)
    assert drawn is not None, f"#{chart_id} draws no chart"
    assert set(drawn["axes"]) == {"X", "Y"}, drawn["axes"]
    ticks = {}
    for axis in "XY":
        label, values = drawn["axes"][axis]["label"], drawn["axes"][axis]["ticks"]
        assert "for a linear scale" in label, label
        # Ticks in the order a person reads them: left to right, bottom to top.
        ticks[axis] = sorted(((value, pixel_x if axis == "X" else pixel_y) for value, pixel_x, pixel_y in values),
                             key=lambda tick: tick[1] if axis == "X" else -tick[1])
        numbers = [value for value, _ in ticks[axis]]
        assert len(numbers) >= 2 and all(isinstance(value, (int, float)) for value in numbers), label
        assert numbers == sorted(set(numbers)), f"{label}: ticks {numbers} at {[pixel for _, pixel in ticks[axis]]}"
    spans = {axis: ticks[axis][-1][0] - ticks[axis][0][0] for axis in "XY"}
    lines, strokes = {}, set()
    for line in drawn["lines"]:
        if not line["points"]:
            continue
        series = line["points"][0][0][color] if color else None
        assert line["stroke"] not in (None, "", "none"), f"#{chart_id}: the line of {series} has no colour"
        strokes.add(line["stroke"])
        pixels = [pixel for _, pixel, _ in line["points"]]
        points = [(datum[x], datum[y]) for datum, _, _ in line["points"]]
        assert pixels == sorted(pixels) and [step for step, _ in points] == sorted(step for step, _ in points), points
        for (step, value), (_, pixel_x, pixel_y) in zip(points, line["points"]):
            assert abs(_pixel_to_value(ticks["X"], pixel_x) - step) <= 0.01 * spans["X"], (chart_id, series, step)
            assert abs(_pixel_to_value(ticks["Y"], pixel_y) - value) <= 0.01 * spans["Y"], (chart_id, series, step, value)
        lines[series] = points
    assert len(strokes) == len(lines), f"#{chart_id}: {len(lines)} lines in {len(strokes)} colours"
    return lines


def _same_curve(drawn: list[tuple], stored: list[tuple], live: bool) -> None:
    """The drawn points are the stored ones (all of them; while training, the first ones, as the page polls)."""
    if live:
        stored = stored[: len(drawn)]
    assert [step for step, _ in drawn] == [step for step, _ in stored], (drawn, stored)
    # The app sends values with 10 decimals (pandas to_json).
    assert [value for _, value in drawn] == pytest.approx([value for _, value in stored], rel=1e-6, abs=1e-10)


def _stored(job_id: int):
    """The job's row and its MetricPoints, as the worker recorded them in the app's database."""
    return store.get_job(job_id), store.metric_points(job_id)


def _losses(points, field: str = "loss") -> list[tuple[int, float]]:
    return [(point.step, getattr(point, field)) for point in points if getattr(point, field) is not None]


def _check_finetune_charts(page, job_id: int, live: bool) -> None:
    """The Loss chart draws the job's stored losses (training and eval); the Learning-rate chart its stored rates,
    and, once finished, their schedule: a warm-up to the configured peak, then a decay."""

    def check():
        job, points = _stored(job_id)
        lines = _drawn_lines(page, "loss-chart", "step", "value", "series")
        assert "loss" in lines and len(lines["loss"]) >= 2, lines
        assert set(lines) <= {"loss", "eval loss"}
        if not live:
            assert set(lines) == {"loss", "eval loss"}, lines
        for series, field in (("loss", "loss"), ("eval loss", "eval_loss")):
            if series in lines:
                _same_curve(lines[series], _losses(points, field), live)
        (rates,) = _drawn_lines(page, "lr-chart", "step", "learning rate").values()
        _same_curve(rates, _losses(points, "learning_rate"), live)
        if not live:
            values = [rate for _, rate in rates]
            peak = values.index(max(values))
            peak_rate = JobConfig.from_json(job.config).training.learning_rate  # reached between two logged steps
            assert 0.9 * peak_rate <= max(values) <= peak_rate * (1 + 1e-6), values
            assert 0 < peak < len(values) - 1, values
            assert values[: peak + 1] == sorted(values[: peak + 1]), values  # warm-up
            assert values[peak:] == sorted(values[peak:], reverse=True) and values[-1] < 0.1 * values[peak], values

    _until(check)


def test_upload_train_reload_and_chat_in_a_real_browser(server, tmp_path, demo_qa_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    init_database(Settings(home=server.home, database_url=server.env.get("DATABASE_URL") or None))  # to read its jobs
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # Two pages opened before any job exists: one a user works in, one left open on the Finetune tab.
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(server.url)
        watcher = browser.new_page(viewport={"width": 1400, "height": 1100})
        watcher.goto(server.url)
        watcher.get_by_role("tab", name="Finetune").click()
        expect(watcher.locator("#job-status")).to_contain_text("No job yet")

        # A job started from the CLI while the pages are open.
        job_file = tmp_path / "from-cli.yaml"
        job_file.write_text(CLI_JOB.format(dataset=SAMPLE))
        cli = subprocess.Popen([sys.executable, "-m", "modelforge", "train", str(job_file)], cwd=ROOT, env=server.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        # Hardware: this machine's report and the models recommended for its profile.
        page.get_by_role("tab", name="Hardware").click()
        facts = detect(server.home).to_dict()
        expect(_visible(page.get_by_text(f"Profile: {facts['profile']}"))).to_be_visible(timeout=30_000)
        expect(_visible(page.get_by_text(re.compile(rf"CPU cores: {facts['cpu_cores']}\b")))).to_be_visible()
        expect(_visible(page.get_by_text(recommended_models(facts["profile"], "chat")[0]["id"], exact=True))).to_be_visible()
        page.screenshot(path=shots / "0-hardware.png", full_page=True)

        # Dataset: upload, validate, save.
        page.get_by_role("tab", name="Dataset").click()
        page.locator("input[type=file]").first.set_input_files(str(SAMPLE))
        # The file's columns are read first; a Validate pressed before that would be undone by it.
        expect(_visible(page.get_by_text(re.compile(r"Columns mapped automatically")))).to_be_visible(timeout=60_000)
        _visible(page.get_by_role("button", name="Validate")).click()
        expect(_visible(page.get_by_role("heading", name=re.compile("Valid")))).to_be_visible(timeout=60_000)
        preview = _visible(page.get_by_label("Preview: the first rows as the model sees them"))
        for text in ("lion mouse", "roar squeak", "horse snake duck", "neigh hiss quack"):  # the file's first rows
            expect(preview).to_have_value(re.compile(re.escape(text)))
        _visible(page.get_by_label("Dataset name")).fill("words")
        save = _visible(page.get_by_role("button", name="Save"))
        expect(save).to_be_enabled(timeout=30_000)
        save.click()
        expect(_visible(page.get_by_text(re.compile(r"Saved words: \d+ rows for text-generation")))).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "1-dataset.png", full_page=True)

        # The page left open draws the CLI job's curves as it trains and once it has finished.
        output, _ = cli.communicate(timeout=600)
        assert cli.returncode == 0, output.decode()
        expect(watcher.locator("#job-status")).to_contain_text("completed", timeout=30_000)
        _check_finetune_charts(watcher, 1, live=False)
        watcher.screenshot(path=shots / "2-cli-job-on-an-open-page.png", full_page=True)
        watcher.close()

        # Finetune: choose the saved dataset, a long enough run to reload during it, start.
        page.get_by_role("tab", name="Finetune").click()
        dataset = _visible(page.get_by_label("Dataset", exact=True))
        dataset.click()
        _visible(page.get_by_role("option", name=re.compile(r"^words"))).click()
        expect(dataset).to_have_value(re.compile(r"^words"))
        _visible(page.get_by_text("Advanced")).click()
        for label, value in (("max steps (-1: use epochs)", "500"), ("batch size", "16"), ("learning rate", "0.003")):
            _set_number(_visible(page.get_by_label(label, exact=True)), value)
        _visible(page.get_by_role("button", name="Start training")).click()
        expect(page.locator("#job-status")).to_contain_text("Job #2", timeout=30_000)
        expect(page.locator("#job-status")).to_contain_text("/500", timeout=180_000)  # after scoring the base model
        before_reload = _wait_for_step_above(page, 15)
        _check_finetune_charts(page, 2, live=True)
        page.screenshot(path=shots / "3-training.png", full_page=True)

        # Reload mid-training: the same job is shown, still progressing, its curves drawn alike.
        page.reload()
        page.get_by_role("tab", name="Finetune").click()
        expect(page.locator("#job-status")).to_contain_text("Job #2", timeout=30_000)
        expect(page.locator("#job-status")).to_contain_text("running")
        after_reload = _wait_for_step_above(page, before_reload)
        assert after_reload > before_reload
        _check_finetune_charts(page, 2, live=True)
        page.screenshot(path=shots / "4-after-reload.png", full_page=True)
        expect(page.locator("#job-status")).to_contain_text("completed", timeout=600_000)
        expect(page.locator("#evaluation-table")).to_contain_text("exact_match", timeout=30_000)
        _check_finetune_charts(page, 2, live=False)
        page.screenshot(path=shots / "5-finished.png", full_page=True)

        # History: both jobs listed; their training losses drawn one line each, a second job joining the first.
        page.get_by_role("tab", name="History").click()
        history = page.locator("#history-table")
        for job_id in (1, 2):
            job, _ = _stored(job_id)
            expect(history).to_contain_text(job.name, timeout=30_000)
        expect(history).to_contain_text("completed")
        picker = _visible(page.get_by_label("Jobs to inspect or compare"))
        expected = {}
        for job_id in (1, 2):
            job, points = _stored(job_id)
            option = page.get_by_role("option", name=re.compile(rf"^#{job_id} ")).filter(visible=True)
            if not option.count():
                picker.click()
            option.first.click()
            expected[f"#{job_id} {job.name}"] = _losses(points)

            def history_check():
                lines = _drawn_lines(page, "history-chart", "step", "loss", "job")
                assert set(lines) == set(expected), lines
                for label, stored in expected.items():
                    _same_curve(lines[label], stored, live=False)

            _until(history_check)
        page.screenshot(path=shots / "6-history.png", full_page=True)

        # Playground: the finished job and its base model answer the same message side by side.
        _choose_finished_job(page, "Playground", r"^#2 ")
        _visible(page.get_by_role("button", name="Load", exact=True)).click()
        expect(_visible(page.get_by_label("Model", exact=True))).to_have_value(re.compile("ready"), timeout=120_000)
        _visible(page.get_by_label("Message")).fill("lion mouse")
        _visible(page.get_by_label("Message")).press("Enter")
        expect(page.locator("#tuned-chat [data-testid='bot']").last).to_have_text("roar squeak", timeout=120_000)
        expect(page.locator("#base-chat [data-testid='bot']").last).to_have_text("lion mouse")  # the base repeats
        page.screenshot(path=shots / "7-playground.png", full_page=True)

        # Extractive QA: the demo QA model, typed in, marks its answer in the context.
        task = _visible(page.get_by_label("Task", exact=True))
        task.click()
        _visible(page.get_by_role("option", name="extractive-qa")).click()
        _visible(page.get_by_label("…or a model folder / hub id")).fill(str(demo_qa_path))
        _visible(page.get_by_label("Side by side with the base model")).uncheck()
        _visible(page.get_by_role("button", name="Load", exact=True)).click()
        expect(_visible(page.get_by_label("Model", exact=True))).to_have_value(re.compile("ready: .*demo-qa"), timeout=120_000)
        _visible(page.get_by_label("Context")).fill(QA_CONTEXT)
        _visible(page.get_by_label("Question")).fill("where does the bear live?")
        _visible(page.get_by_role("button", name="Find the answer")).click()
        answer = page.locator("#tuned-answer")
        expect(answer).to_contain_text("the tiger is pink", timeout=60_000)  # the context is shown...
        expect(answer).to_contain_text("answer")  # ...with the span the model picked labelled as the answer
        expect(page.locator("#base-answer")).to_be_hidden()
        page.screenshot(path=shots / "8-question-answering.png", full_page=True)

        # Hub: the finished jobs are offered; a push without a repo id says what to type.
        expect(_choose_finished_job(page, "Hub", r"^#1 from-cli")).to_have_value(re.compile(r"^#1 from-cli"))
        _visible(page.get_by_role("button", name="Push to Hub")).click()
        expect(_visible(page.get_by_text(re.compile(r"Push failed: type a repo id")))).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "9-hub.png", full_page=True)
        browser.close()
    assert len(list(shots.iterdir())) == 10
