"""The assembled app: what every tab shows before anyone touches it."""

import re

from modelforge.tasks import DEFAULT_TASK
from modelforge.ui import build_app


def test_every_tab_starts_with_the_same_task(engine):
    app = build_app(engine)
    tasks = [component["props"]["value"] for component in app.config["components"]
             if component["props"].get("label") == "Task"]
    assert len(tasks) == 4 and set(tasks) == {DEFAULT_TASK}, tasks  # dataset, hardware, finetune, playground


def test_every_api_parameter_has_a_name(engine):
    """Clients call the app by parameter name (start_training(dataset=..., learning_rate=...)): none is a param_N."""
    endpoints = build_app(engine).get_api_info()["named_endpoints"]
    assert {"/start_training", "/fit_per_gpu", "/dataset_validate", "/dataset_save", "/playground_chat"} <= set(endpoints)
    unnamed = [f"{route}: {parameter['parameter_name']}" for route, endpoint in endpoints.items()
               for parameter in endpoint["parameters"] if re.fullmatch(r"param_\d+", parameter["parameter_name"])]
    assert unnamed == []
