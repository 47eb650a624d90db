"""Publishing a finished job's model to the Hugging Face Hub: the adapter or the merged model, with its model card
(modelforge.model_card) and loss curve.

The token is used for the requests of one push and never written anywhere: not to the database, the logs, a file or
the model card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from modelforge import export, gguf_export, plots, store
from modelforge.config import JobConfig
from modelforge.errors import ModelForgeError
from modelforge.loading import hub_token
from modelforge.model_card import LOSS_CURVE, job_metrics, model_card
from modelforge.settings import Settings
from modelforge.run_folder import ADAPTER_CONFIG, CONFIG_FILE, MERGED_DIR, METRICS_FILE, is_adapter

log = logging.getLogger(__name__)

TOKENS_URL = "https://huggingface.co/settings/tokens"
# Intermediate checkpoints, training logs, the merged copy and TRL's copy of a DPO job's starting adapter (ref/) stay
# out of an adapter push, and so do the evaluation files, which hold the model's answers to the user's held-out rows,
# and the trainer's pickled arguments (training_args.bin), which hold the server's absolute paths.
SKIPPED_DIRS = ("checkpoint-*", "runs", "logs", "ref", MERGED_DIR, gguf_export.GGUF_DIR)
SKIPPED_FILES = (
    "*.log", "optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json", "training_args.bin", "README.md",
    "evaluation-*.json",
)
JOB_RECORDS = (CONFIG_FILE, METRICS_FILE)  # the run's record, uploaded beside a merged model too

Progress = Callable[[float, str], None]


class HubError(ModelForgeError):
    """A push to the Hugging Face Hub failed or needs the user's decision; the message says what to do."""


@dataclass(frozen=True)
class PushResult:
    url: str  # the repo's page
    commit_url: str
    private: bool
    updated: bool  # an existing repo received a new commit
    files: tuple[str, ...]


def push_job(
    job,
    repo_id: str,
    settings: Settings,
    *,
    token: str | None = None,
    private: bool = True,
    merged: bool = False,
    confirm_existing: bool = False,
    license: str | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Upload a completed job's adapter (or, with `merged`, its merged model, exported first if need be) and a model
    card to `repo_id` (`owner/name`, or `name` for the token's own account).

    The token comes from the argument, else HF_TOKEN / HUGGINGFACE_TOKEN, else the cached `hf auth login`. It is
    checked (valid, allowed to write to the repo's owner) before anything is created or uploaded. A repo that exists
    already gets a new commit only with `confirm_existing`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    report = progress or (lambda fraction, message: None)
    folder = export.model_folder(job)
    repo_id = _checked_repo_id(repo_id)
    token = token or hub_token() or _cached_token()
    if not token:
        raise HubError(
            f"No Hugging Face token: paste a token with write access (create one at {TOKENS_URL}), "
            "or set HF_TOKEN, or run `hf auth login` on the server."
        )

    api = HfApi(token=token, library_name="modelforge")
    report(0.0, "checking the token")
    with _hub_errors(repo_id, token):
        account = api.whoami()
    if "/" not in repo_id:
        repo_id = f"{account['name']}/{repo_id}"
    check_can_write(account, repo_id)
    report(0.05, f"looking for {repo_id}")
    existing = _existing_repo(api, repo_id, token)
    if existing is not None and not confirm_existing:
        raise HubError(
            f"{repo_id} already exists on the Hub ({'private' if existing.private else 'public'}). Pushing adds a new "
            "commit to it that replaces files of the same name: confirm the update (tick 'Update an existing repo' "
            "in the Hub tab, or pass --yes to `push`) and push again, or choose another repo id."
        )

    if merged and is_adapter(folder):
        folder = export.merged_dir(job)
        if not folder.is_dir():
            export.merge_job_in_subprocess(
                job, settings, lambda fraction, message: report(0.1 + 0.5 * fraction, f"merging: {message}")
            )
    files = [path for path in upload_files(folder) if path.relative_to(folder).as_posix() not in JOB_RECORDS]
    operations = [CommitOperationAdd(path.relative_to(folder).as_posix(), _without_server_paths(path)) for path in files]
    # The run's record lies in the job's folder (beside a merged model too). Its held-out examples are the user's
    # rows and the models' answers to them: they stay out of the Hub, as they stay out of the card; so do the server's
    # folders (the output folder, local dataset and model paths).
    config_file = Path(job.output_dir) / CONFIG_FILE
    if config_file.is_file():
        portable = public_config(JobConfig.from_yaml(config_file.read_text(encoding="utf-8")))
        operations.append(CommitOperationAdd(CONFIG_FILE, portable.to_yaml().encode("utf-8")))
    published = job_metrics(job)
    published.get("evaluation", {}).pop("examples", None)
    operations.append(CommitOperationAdd(METRICS_FILE, json.dumps(published, indent=2).encode("utf-8")))

    report(0.65, "writing the model card and the loss curve")
    curve = plots.loss_curve_png(store.metric_points(job.id), job.name)
    if curve is not None:
        operations.append(CommitOperationAdd(LOSS_CURVE, curve))
    card = model_card(job, folder, repo_id, has_loss_curve=curve is not None, license=license)
    operations.append(CommitOperationAdd("README.md", str(card).encode("utf-8")))

    if existing is None:
        report(0.7, f"creating the {'private' if private else 'public'} repo {repo_id}")
        with _hub_errors(repo_id, token):
            api.create_repo(repo_id, private=private)
    size_mb = sum(operation.upload_info.size for operation in operations) / 1e6
    report(0.75, f"uploading {len(operations)} files ({size_mb:.1f} MB)")
    try:
        with _hub_errors(repo_id, token):
            commit = api.create_commit(
                repo_id, operations=operations, commit_message=f"ModelForge job #{job.id}: {job.name}"
            )
    except Exception as exc:
        if existing is not None:
            raise
        # The repo exists only for this push (the Hub needs it before any file goes up): an upload that failed
        # would leave it empty, so it goes again.
        removed = _delete_created_repo(api, repo_id)
        after = (" The repo this push created was deleted again: nothing was left on the Hub." if removed else
                 f" The repo this push created could not be deleted: delete the empty {repo_id} on the Hub.")
        if isinstance(exc, HubError):
            raise HubError(str(exc) + after) from None
        raise
    report(1.0, "done")
    log.info("pushed job %d to %s (%s)", job.id, repo_id, commit.commit_url)
    return PushResult(
        url=str(commit.repo_url),
        commit_url=commit.commit_url,
        private=existing.private if existing is not None else private,
        updated=existing is not None,
        files=tuple(operation.path_in_repo for operation in operations),
    )


def public_config(config: JobConfig) -> JobConfig:
    """The config without the server's folders: no output folder; a local dataset, model or starting adapter named by
    its file or folder name (a Hub id, a saved dataset's name or a job id stays as it is)."""

    def name(value: str | None) -> str | None:
        return Path(value).name if value and Path(value).is_absolute() else value

    return config.model_copy(update={
        "output_dir": None, "dataset": name(config.dataset), "eval_dataset": name(config.eval_dataset),
        "model": name(config.model), "init_from": name(config.init_from),
    })


def _without_server_paths(path: Path) -> str | bytes:
    """An adapter's config names its base model by the server's folder when the base is local: the Hub copy names
    it by the folder's name, as the card does."""
    if path.name != ADAPTER_CONFIG:
        return str(path)
    config = json.loads(path.read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base or not Path(base).is_absolute():
        return str(path)
    config["base_model_name_or_path"] = Path(base).name
    return json.dumps(config, indent=2).encode("utf-8")


def upload_files(folder: Path) -> list[Path]:
    """The files of a model folder that belong on the Hub: no checkpoints, optimizer states, logs or hidden files."""
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and _belongs_on_hub(path.relative_to(folder))]


def _belongs_on_hub(relative: Path) -> bool:
    if any(part.startswith(".") for part in relative.parts):
        return False
    if len(relative.parts) > 1:
        return not any(fnmatch(relative.parts[0], pattern) for pattern in SKIPPED_DIRS)
    return not any(fnmatch(relative.name, pattern) for pattern in SKIPPED_FILES)


def check_can_write(account: dict, repo_id: str) -> None:
    """Fail before creating anything when the token may not write to the repo's owner: the repo belongs to someone
    else, the account only reads in that organisation, or the token is read-only (or fine-grained without write)."""
    user = account["name"]
    owner = repo_id.split("/")[0]
    org_roles = {org["name"]: org.get("roleInOrg") for org in account.get("orgs", [])}
    if owner != user and owner not in org_roles:
        writable = ", ".join([user, *sorted(org_roles)])
        raise HubError(
            f"{repo_id} belongs to '{owner}', and the token's account {user} can write only to {writable}: "
            f"use a repo id such as {user}/{repo_id.split('/')[-1]}."
        )
    if org_roles.get(owner) == "read":
        raise HubError(f"{user} has the read role in the organisation {owner}: ask one of its admins for write access.")
    access = account.get("auth", {}).get("accessToken", {})  # absent for OAuth sessions, which may write
    role = access.get("role")
    if role == "read":
        raise HubError(f"The token of {user} is read-only: create one with write access at {TOKENS_URL}.")
    if role == "fineGrained":
        scopes = access.get("fineGrained", {}).get("scoped", [])
        if not any(
            scope["entity"]["name"] in (owner, repo_id) and "repo.write" in scope.get("permissions", [])
            for scope in scopes
        ):
            raise HubError(
                f"The fine-grained token of {user} may not write to repos of {owner}: give it the 'Write access to "
                f"contents/settings of all repos' permission for {owner} at {TOKENS_URL}, or use a write token."
            )


def _checked_repo_id(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = repo_id.strip()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise HubError(
            f"'{repo_id}' is not a valid repo id: use owner/name (or just name) made of letters, digits, '-', '_', '.'."
        ) from None
    return repo_id


def _cached_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _existing_repo(api, repo_id: str, token: str):
    """The repo's info, or None when it does not exist yet."""
    from huggingface_hub.errors import RepositoryNotFoundError

    with _hub_errors(repo_id, token):
        try:
            return api.model_info(repo_id)
        except RepositoryNotFoundError:
            return None


def _delete_created_repo(api, repo_id: str) -> bool:
    try:
        api.delete_repo(repo_id, missing_ok=True)
    except Exception:  # the push's own error is the one to report; this one is logged
        log.exception("deleting the empty repo %s after a failed upload failed", repo_id)
        return False
    log.info("deleted %s: the upload into the repo this push created failed", repo_id)
    return True


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
    except ConnectionError as exc:  # hf-xet's upload: its storage endpoints unreachable or refusing
        detail = str(exc).replace(token, "<token>").splitlines()[0]
        raise HubError(
            f"The upload of the files to {repo_id} failed ({detail}). Retry; if the network between this server and "
            "the Hub blocks Xet storage, set HF_HUB_DISABLE_XET=1 on the server to upload through LFS instead."
        ) from None
    except HTTPError as exc:  # no response at all: DNS, connection refused, timeout, proxy
        raise HubError(
            f"The Hugging Face Hub is unreachable ({type(exc).__name__}: {str(exc).replace(token, '<token>')}): "
            "check the server's network connection or proxy and retry."
        ) from None
