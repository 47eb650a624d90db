"""The assembled app: what every tab shows before anyone touches it."""

from modelforge.tasks import DEFAULT_TASK
from modelforge.ui import build_app


def test_every_tab_starts_with_the_same_task(engine):
    app = build_app(engine)
    tasks = [component["props"]["value"] for component in app.config["components"]
             if component["props"].get("label") == "Task"]
    assert len(tasks) == 4 and set(tasks) == {DEFAULT_TASK}, tasks  # dataset, hardware, finetune, playground
