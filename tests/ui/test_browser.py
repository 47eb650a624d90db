"""End to end in real headless Chromium: upload, validate, train, reload mid-training, compare the result with its base."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "samples" / "text-generation.jsonl"
CHROMIUM = "/usr/bin/chromium"
QA_CONTEXT = "the tiger is pink. the bear lives in the hill. the dog lives in the island. the frog is yellow."
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


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
    yield url
    process.terminate()
    process.wait(timeout=30)
    subprocess.run([sys.executable, "-m", "modelforge", "cancel", "1"], cwd=ROOT, env=env, capture_output=True, timeout=120)


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


def test_upload_train_reload_and_chat_in_a_real_browser(server, tmp_path, demo_qa_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(server)

        # Dataset: upload, validate, save.
        page.get_by_role("tab", name="Dataset").click()
        page.locator("input[type=file]").first.set_input_files(str(SAMPLE))
        # The file's columns are read first; a Validate pressed before that would be undone by it.
        expect(_visible(page.get_by_text(re.compile(r"Columns mapped automatically")))).to_be_visible(timeout=60_000)
        _visible(page.get_by_role("button", name="Validate")).click()
        expect(_visible(page.get_by_role("heading", name=re.compile("Valid")))).to_be_visible(timeout=60_000)
        _visible(page.get_by_label("Dataset name")).fill("words")
        save = _visible(page.get_by_role("button", name="Save"))
        expect(save).to_be_enabled(timeout=30_000)
        save.click()
        expect(_visible(page.get_by_text(re.compile(r"Saved")))).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "1-dataset.png", full_page=True)

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
        expect(page.locator("#job-status")).to_contain_text("Job #1", timeout=30_000)
        expect(page.locator("#job-status")).to_contain_text("/500", timeout=60_000)
        before_reload = _wait_for_step_above(page, 5)
        expect(page.locator("#loss-chart canvas, #loss-chart svg").first).to_be_visible(timeout=60_000)
        page.screenshot(path=shots / "2-training.png", full_page=True)

        # Reload mid-training: the same job is shown, still progressing.
        page.reload()
        page.get_by_role("tab", name="Finetune").click()
        expect(page.locator("#job-status")).to_contain_text("Job #1", timeout=30_000)
        expect(page.locator("#job-status")).to_contain_text("running")
        after_reload = _wait_for_step_above(page, before_reload)
        assert after_reload > before_reload
        page.screenshot(path=shots / "3-after-reload.png", full_page=True)
        expect(page.locator("#job-status")).to_contain_text("completed", timeout=600_000)
        expect(page.locator("#evaluation-table")).to_contain_text("exact_match", timeout=30_000)

        # Playground: the finished job and its base model answer the same message side by side.
        page.get_by_role("tab", name="Playground").click()
        _visible(page.get_by_role("button", name=re.compile("Refresh jobs"))).click()
        job = _visible(page.get_by_label("Finished job"))
        job.click()
        _visible(page.get_by_role("option", name=re.compile(r"#1"))).click()
        _visible(page.get_by_role("button", name="Load", exact=True)).click()
        expect(_visible(page.get_by_label("Model", exact=True))).to_have_value(re.compile("ready"), timeout=120_000)
        _visible(page.get_by_label("Message")).fill("lion mouse")
        _visible(page.get_by_label("Message")).press("Enter")
        expect(page.locator("#tuned-chat [data-testid='bot']").last).to_have_text("roar squeak", timeout=120_000)
        expect(page.locator("#base-chat [data-testid='bot']").last).to_have_text("lion mouse")  # the base repeats
        page.screenshot(path=shots / "4-playground.png", full_page=True)

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
        page.screenshot(path=shots / "5-question-answering.png", full_page=True)
        browser.close()
    assert len(list(shots.iterdir())) == 5
