"""Publishing a finished job's model to the Hugging Face Hub: the adapter or the merged model, with a model card.

The token is used for the requests of one push and never written anywhere: not to the database, the logs, a file or
the model card.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from modelforge import data, export, gguf_export, prompts, store
from modelforge.config import JobConfig
from modelforge.errors import ModelForgeError
from modelforge.loading import hub_token
from modelforge.settings import Settings
from modelforge.strategies import STRATEGIES
from modelforge.preflight import resolve_dataset_source
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
LOSS_CURVE = "loss_curve.png"

# The classes that load each model family: (peft's for an adapter, transformers' for a full model).
LOADERS = {
    "causal": ("AutoPeftModelForCausalLM", "AutoModelForCausalLM"),
    "seq2seq": ("AutoPeftModelForSeq2SeqLM", "AutoModelForSeq2SeqLM"),
    "qa": ("AutoPeftModelForQuestionAnswering", "AutoModelForQuestionAnswering"),
}
PIPELINE_TAGS = {"causal": "text-generation", "seq2seq": "summarization", "qa": "question-answering"}
PEFT_TASK_FAMILIES = {"SEQ_2_SEQ_LM": "seq2seq", "QUESTION_ANS": "qa"}

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
    published = _metrics(job)
    published.get("evaluation", {}).pop("examples", None)
    operations.append(CommitOperationAdd(METRICS_FILE, json.dumps(published, indent=2).encode("utf-8")))

    report(0.65, "writing the model card and the loss curve")
    curve = loss_curve_png(job)
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


# -- the model card -------------------------------------------------------------------------------------------------
def model_card(job, folder: Path, repo_id: str, has_loss_curve: bool, license: str | None = None):
    """README.md for the Hub (huggingface_hub's ModelCard): metadata, what was trained on what and how, the
    before/after evaluation, the loss curve, the hardware and duration, and code that loads the pushed files."""
    from huggingface_hub import ModelCard, ModelCardData

    config = JobConfig.from_json(job.config)
    metrics = _metrics(job)
    adapter = is_adapter(folder)
    family = model_family(folder)
    base_on_hub = bool(config.model) and data.is_hub_id(config.model)
    dataset = resolve_dataset_source(config.dataset)
    dataset_on_hub = data.is_hub_id(dataset)
    dataset_name = data.parse_hub_id(dataset)[0] if dataset_on_hub else Path(dataset).name
    form = "LoRA adapter" if adapter else "merged model (LoRA merged into the base)" if config.lora else "full fine-tune"
    card_data = ModelCardData(
        base_model=config.model if base_on_hub else None,
        datasets=[dataset_name] if dataset_on_hub else None,
        library_name="peft" if adapter else "transformers",
        license=license or None,
        pipeline_tag=PIPELINE_TAGS[family],
        tags=["modelforge", config.task, config.strategy, *(["lora", "peft"] if config.lora else [])],
    )
    base = config.model or "the ModelForge demo model (a tiny model built locally, not on the Hub)"
    lines = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {form} trained with ModelForge as job #{job.id} ({job.name}).",
        "",
        f"- **Base model:** {base}",
        f"- **Dataset:** {dataset_name}",
        f"- **Task:** {config.task}",
        f"- **Strategy:** {config.strategy}" + (f" ({config.quantization} base)" if config.quantization else ""),
        f"- **Training hardware:** {metrics.get('hardware') or 'not recorded'}",
        f"- **Training duration:** {_duration(job, metrics)}" + _throughput(metrics),
        "",
        "## Hyperparameters",
        "",
        "| name | value |",
        "| --- | --- |",
        *(f"| {key} | {_fmt(value)} |" for key, value in hyperparameters(config).items()),
        "",
        "## Evaluation",
        "",
        *_evaluation_lines(metrics, config),
        "",
        *gguf_export.card_lines(job),
        "## Training loss",
        "",
        f"![Training and evaluation loss by step]({LOSS_CURVE})" if has_loss_curve else "No loss was recorded.",
        "",
        "## Usage",
        "",
        "```python",
        usage_snippet(repo_id, family, adapter, has_chat_template=_has_chat_template(folder)),
        "```",
        "",
    ]
    if adapter and not base_on_hub:
        lines += [
            "This adapter's base model is not on the Hub, so the snippet runs only beside a folder of that base (the "
            f"name in `{ADAPTER_CONFIG}`): push the merged model to share a standalone model.",
            "",
        ]
    lines += [f"The full job configuration is in `{CONFIG_FILE}`, the final metrics in `{METRICS_FILE}`.", ""]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines))


def hyperparameters(config: JobConfig) -> dict:
    """Every setting that shaped the training, as dotted names."""
    values = {"provider": config.provider, "quantization": config.quantization or "none"}
    values |= {f"training.{key}": value for key, value in config.training.model_dump(mode="json").items()}
    if config.lora:
        values |= {f"lora.{key}": value for key, value in config.lora.model_dump(mode="json").items()}
    else:
        values["lora"] = "none (full fine-tuning)"
    if STRATEGIES[config.strategy].pairs:  # the strategies that read the preference section
        start = config.init_from
        # A job id, or only the adapter folder's name: the card does not publish the user's local paths.
        values["init_from"] = "the base model" if not start else f"job {start}" if start.isdigit() else Path(start).name
        values |= {f"preference.{key}": value for key, value in config.preference.model_dump(mode="json").items()}
    return values


def _evaluation_lines(metrics: dict, config: JobConfig) -> list[str]:
    losses = [f"{name}: {_fmt(metrics[name])}" for name in ("train_loss", "eval_loss") if name in metrics]
    loss_line = [f"Final {', '.join(losses)}.", ""] if losses else []
    evaluation = metrics.get("evaluation")
    if not evaluation:
        return loss_line + ["No before/after evaluation was recorded for this job."]
    rows = [
        f"| {name} | {_fmt(scores.get('base'))} | {_fmt(scores.get('tuned'))} | {_change(scores)} |"
        for name, scores in evaluation["metrics"].items()
    ]
    sample = f"{evaluation.get('rows', '?')} held-out rows"
    if evaluation.get("generated_rows"):
        sample += (
            f"; generation metrics on {evaluation['generated_rows']} of them "
            f"(greedy, up to {config.evaluation.max_new_tokens} new tokens)"
        )
    return [
        *loss_line,
        f"The base model and the tuned model scored on the same {sample}:",
        "",
        "| metric | base | tuned | change |",
        "| --- | --- | --- | --- |",
        *rows,
    ]


def usage_snippet(repo_id: str, family: str, adapter: bool, has_chat_template: bool) -> str:
    """Python that loads the pushed files and runs the model once."""
    peft_class, transformers_class = LOADERS[family]
    imports = (
        [f"from peft import {peft_class}", "from transformers import AutoTokenizer"]
        if adapter
        else [f"from transformers import {transformers_class}, AutoTokenizer"]
    )
    lines = [
        *imports,
        "",
        f'model = {peft_class if adapter else transformers_class}.from_pretrained("{repo_id}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
    ]
    if family == "qa":
        lines += [
            'question, context = "Who wrote the letter?", "The letter was written by Ada in 1843."',
            'inputs = tokenizer(question, context, return_tensors="pt")',
            "outputs = model(**inputs)",
            "start, end = outputs.start_logits.argmax(), outputs.end_logits.argmax()",
            'print(tokenizer.decode(inputs["input_ids"][0, start : end + 1]))',
        ]
    elif family == "seq2seq":
        lines += [
            'inputs = tokenizer("The text to summarize.", return_tensors="pt")',
            "output = model.generate(**inputs, max_new_tokens=64, do_sample=False)",
            "print(tokenizer.decode(output[0], skip_special_tokens=True))",
        ]
    else:
        prompt = (
            'messages = [{"role": "user", "content": "Hello"}]\n'
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
            'return_tensors="pt", return_dict=True)'
            if has_chat_template
            # without a chat template the model was trained on plain text: the prompt, then a newline
            else f'inputs = tokenizer({prompts.plain_prompt("Hello")!r}, return_tensors="pt")'
        )
        lines += [
            prompt,
            "output = model.generate(**inputs, max_new_tokens=64, do_sample=False)",
            'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))',
        ]
    return "\n".join(lines)


def model_family(folder: Path) -> str:
    """causal, seq2seq or qa: which Auto classes load the model in `folder`."""
    if is_adapter(folder):
        task_type = _read_json(folder / ADAPTER_CONFIG).get("task_type")
        return PEFT_TASK_FAMILIES.get(task_type, "causal")
    model_config = _read_json(folder / "config.json")
    if model_config.get("is_encoder_decoder"):
        return "seq2seq"
    if any(name.endswith("ForQuestionAnswering") for name in model_config.get("architectures") or []):
        return "qa"
    return "causal"


def loss_curve_png(job) -> bytes | None:
    """The training and evaluation loss by step as a PNG, drawn headless (matplotlib's Agg, no pyplot state)."""
    points = store.metric_points(job.id)
    series = {
        "training loss": [(p.step, p.loss) for p in points if p.loss is not None],
        "evaluation loss": [(p.step, p.eval_loss) for p in points if p.eval_loss is not None],
    }
    if not any(series.values()):
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    for label, values in series.items():
        if values:
            axes.plot(*zip(*values), label=label, marker="o" if len(values) < 20 else None)
    axes.set(xlabel="step", ylabel="loss", title=job.name)
    axes.grid(alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _has_chat_template(folder: Path) -> bool:
    return (folder / "chat_template.jinja").is_file() or "chat_template" in _read_json(folder / "tokenizer_config.json")


def _metrics(job) -> dict:
    path = Path(job.output_dir) / METRICS_FILE
    return _read_json(path) if path.is_file() else job.final_metrics


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _duration(job, metrics: dict) -> str:
    if job.started_at and job.finished_at:
        seconds = (job.finished_at - job.started_at).total_seconds()
    elif "train_runtime" in metrics:
        seconds = metrics["train_runtime"]
    else:
        return "not recorded"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _throughput(metrics: dict) -> str:
    parts = [f"{metrics['steps']} steps" if "steps" in metrics else "",
             f"{metrics['tokens_per_second']:.0f} tokens/s" if "tokens_per_second" in metrics else ""]
    return f" ({', '.join(filter(None, parts))})" if any(parts) else ""


def _change(scores: dict) -> str:
    base, tuned = scores.get("base"), scores.get("tuned")
    if base is None or tuned is None:
        return "-"
    return f"{tuned - base:+.4g}"


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
