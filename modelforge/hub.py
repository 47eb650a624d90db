"""Publishing a finished job's model to the Hugging Face Hub, with a generated model card.

The token is used for the requests of one push and never written anywhere: not to the database, the logs or a file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

import yaml

from modelforge import data
from modelforge.config import JobConfig
from modelforge.errors import ModelForgeError
from modelforge.providers.huggingface import hub_token
from modelforge.training import METRICS_FILE

log = logging.getLogger(__name__)

TOKENS_URL = "https://huggingface.co/settings/tokens"
SKIPPED_DIRS = ("checkpoint-*", "runs", "logs")  # intermediate checkpoints and training logs stay local

Progress = Callable[[float, str], None]


class HubError(ModelForgeError):
    """A push to the Hugging Face Hub failed; the message says what to do."""


def push_job(
    job, repo_id: str, token: str | None = None, private: bool = True, progress: Progress | None = None
) -> str:
    """Upload a completed job's model (adapter or full model, tokenizer, config, metrics) and a model card to
    `repo_id` (`owner/name`, or `name` for the token's own account); returns the repo's URL.

    The token comes from the argument, else HF_TOKEN / HUGGINGFACE_TOKEN, else the cached `hf auth login`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    report = progress or (lambda fraction, message: None)
    if job.status != "completed":
        raise HubError(f"Job #{job.id} is {job.status}: only a completed job can be pushed.")
    folder = Path(job.output_dir)
    files = upload_files(folder)
    if not files:
        raise HubError(f"Job #{job.id}'s output folder {folder} holds no model files: it was moved or deleted.")
    repo_id = repo_id.strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(
            f"'{repo_id}' is not a valid repo id: use owner/name (or just name) made of letters, digits, '-', '_', '.'."
        ) from None
    token = token or hub_token() or get_token()
    if not token:
        raise HubError(
            f"No Hugging Face token: paste a token with write access (create one at {TOKENS_URL}), "
            "or set HF_TOKEN, or run `hf auth login` on the server."
        )

    api = HfApi(token=token)
    report(0.0, "checking the token")
    with _hub_errors(repo_id, token):
        account = api.whoami()
    check_can_write(account, repo_id)
    report(0.2, f"creating {repo_id}")
    with _hub_errors(repo_id, token):
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
    config = JobConfig.from_json(job.config)
    card = model_card(job, config, adapter=(folder / "adapter_config.json").is_file())
    operations = [CommitOperationAdd(path.relative_to(folder).as_posix(), str(path)) for path in files]
    operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    report(0.4, f"uploading {len(operations)} files ({size_mb:.1f} MB)")
    with _hub_errors(repo.repo_id, token):
        api.create_commit(repo.repo_id, operations=operations, commit_message=f"ModelForge job #{job.id}: {job.name}")
    report(1.0, "done")
    log.info("pushed job %d to %s", job.id, repo.url)
    return repo.url


def upload_files(folder: Path) -> list[Path]:
    """The files of a job's output folder that belong on the Hub: no checkpoints, logs or hidden files."""
    if not folder.is_dir():
        return []
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and _belongs_on_hub(path.relative_to(folder))]


def _belongs_on_hub(relative: Path) -> bool:
    if any(part.startswith(".") for part in relative.parts) or relative.suffix == ".log":
        return False
    if len(relative.parts) > 1:
        return not any(fnmatch(relative.parts[0], pattern) for pattern in SKIPPED_DIRS)
    return relative.name != "README.md"  # replaced by the generated model card


def check_can_write(account: dict, repo_id: str) -> None:
    """Fail before creating anything when the token is read-only or the repo's owner is not the token's account."""
    user = account["name"]
    role = account.get("auth", {}).get("accessToken", {}).get("role")  # absent for some token kinds
    if role == "read":
        raise HubError(f"The token of {user} is read-only: create one with write access at {TOKENS_URL}.")
    owner = repo_id.split("/")[0] if "/" in repo_id else user
    writable = {user, *(org["name"] for org in account.get("orgs", []))}
    if owner not in writable:
        raise HubError(
            f"{repo_id} belongs to '{owner}', and the token's account {user} can write only to "
            f"{', '.join(sorted(writable))}: use a repo id such as {user}/{repo_id.split('/')[-1]}."
        )


@contextmanager
def _hub_errors(repo_id: str, token: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into HubError messages a user can act on, without the token."""
    from huggingface_hub.errors import HfHubHTTPError, HTTPError, OfflineModeIsEnabled

    try:
        yield
    except OfflineModeIsEnabled:
        raise HubError(
            "The Hugging Face Hub is unreachable: offline mode is on (HF_HUB_OFFLINE=1). "
            "Unset it on the server and retry."
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            message = f"The Hugging Face token was rejected (invalid or expired): create a new one at {TOKENS_URL}."
        elif status == 403:
            message = (
                f"The token may not write to {repo_id}: the repo belongs to someone else, or the token lacks write "
                f"access. Use a repo under your own account or organisation, with a write token ({TOKENS_URL})."
            )
        else:
            detail = (exc.server_message or str(exc)).splitlines()[0]
            message = f"The Hub refused the push to {repo_id} (HTTP {status}): {detail}"
        raise HubError(message.replace(token, "<token>")) from None
    except HTTPError as exc:  # no response at all: DNS, connection refused, timeout, proxy
        raise HubError(
            f"The Hugging Face Hub is unreachable ({type(exc).__name__}: {str(exc).replace(token, '<token>')}): "
            "check the server's network connection or proxy and retry."
        ) from None


def model_card(job, config: JobConfig, adapter: bool) -> str:
    """README.md for the Hub: metadata, what was trained on what, the hyperparameters and the final metrics."""
    metrics = job.final_metrics or _metrics_file(Path(job.output_dir))
    base = config.model or "the ModelForge demo model (a tiny model built locally, not on the Hub)"
    dataset = config.dataset if data.is_hub_id(config.dataset) else Path(config.dataset).name
    metadata = {
        "library_name": "peft" if adapter else "transformers",
        "tags": ["modelforge", config.task, config.strategy, *(["lora"] if adapter else [])],
    }
    if config.model and data.is_hub_id(config.model):
        metadata["base_model"] = config.model
    if data.is_hub_id(config.dataset):
        metadata["datasets"] = [config.dataset.split(":")[0]]
    hyperparameters = {f"training.{key}": value for key, value in config.training.model_dump(mode="json").items()}
    if config.lora:
        hyperparameters |= {f"lora.{key}": value for key, value in config.lora.model_dump(mode="json").items()}
    if config.quantization:
        hyperparameters["quantization"] = config.quantization
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {job.name}",
        "",
        f"A {'LoRA adapter' if adapter else 'fine-tuned model'} trained with ModelForge.",
        "",
        f"- **Base model:** {base}",
        f"- **Dataset:** {dataset}",
        f"- **Task:** {config.task}",
        f"- **Strategy:** {config.strategy}",
        "",
        "## Hyperparameters",
        "",
        "| name | value |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in hyperparameters.items()),
        "",
        "## Final metrics",
        "",
        *(["| name | value |", "| --- | --- |", *(f"| {key} | {_fmt(value)} |" for key, value in metrics.items())]
          if metrics else ["No metrics were recorded."]),
        "",
        "The full job configuration is in `modelforge.yaml`.",
        "",
    ]
    return "\n".join(lines)


def _metrics_file(folder: Path) -> dict:
    path = folder / METRICS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
