"""Command line: `python -m modelforge COMMAND`. Every command works on the same job store as the web app."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from modelforge.demo_model import DEMO_MODELS
from modelforge.errors import ModelForgeError
from modelforge.strategies import STRATEGIES
from modelforge.tasks import TASKS

EXIT_FAILED = 1
EXIT_USAGE = 2


def _engine(judge_jobs: bool = True):
    """The engine; `judge_jobs`: also mark the jobs a vanished runner left running as interrupted (commands that
    queue or follow jobs do; export and join, which may run beside the web app's runner, do not)."""
    from modelforge.engine import Engine

    return Engine.from_env() if judge_jobs else Engine.open()


def _follow(engine, job) -> int:
    """Show a progress bar until the job ends; Ctrl-C cancels it gracefully."""
    from tqdm import tqdm

    print(f"job {job.id}: {job.name}\noutput: {job.output_dir}", flush=True)
    bar = tqdm(total=None, unit="step", dynamic_ncols=True, file=sys.stderr)

    last_seen = None

    def show(current) -> None:
        nonlocal last_seen
        seen = (current.stage, current.step, current.total_steps, current.loss)
        if seen == last_seen:
            return
        last_seen = seen
        bar.total = current.total_steps or None
        bar.n = current.step
        bar.set_description(current.stage, refresh=False)
        postfix = {}
        if current.loss is not None:
            postfix["loss"] = f"{current.loss:.4f}"
        if current.tokens_per_second:
            postfix["tok/s"] = f"{current.tokens_per_second:.0f}"
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    try:
        job = engine.wait(job.id, on_update=show)
    except KeyboardInterrupt:
        print("\ncancelling: the job stops at its next step and saves a checkpoint (Ctrl-C again to leave it)")
        engine.cancel(job.id)
        job = engine.wait(job.id, on_update=show)
    finally:
        bar.close()
    print(f"job {job.id} {job.status}: {job.output_dir}")
    if job.error:
        print(job.error, file=sys.stderr)
    return 0 if job.status == "completed" else EXIT_FAILED


def cmd_train(args) -> int:
    from modelforge.config import JobConfig
    from modelforge.sweep import format_comparison

    engine = _engine()
    config = JobConfig.load(args.config).with_overrides(args.set or [])
    if config.sweep is None:
        return _follow(engine, engine.submit(config))
    jobs = engine.submit_sweep(config)
    print(f"sweep {jobs[0].sweep}: {len(jobs)} jobs queued, run one after another")
    failed = 0
    for index, job in enumerate(jobs):
        failed += _follow(engine, job) != 0
        if engine.get_job(job.id).status == "cancelled":  # Ctrl-C stops the sweep: the runs not started are cancelled
            for later in jobs[index + 1:]:
                engine.cancel(later.id)
            break
    print(format_comparison(engine.compare_sweep(jobs[0].id)))
    return EXIT_FAILED if failed else 0


def cmd_sweep(args) -> int:
    from modelforge.sweep import format_comparison

    print(format_comparison(_engine().compare_sweep(args.job)))
    return 0


def cmd_validate(args) -> int:
    """Check datasets for the task (and strategy) as Validate in the Dataset tab does: every problem with its line."""
    from modelforge.engine import Engine
    from modelforge.errors import ConfigError

    columns = dict(pair.partition("=")[::2] for pair in args.column or [])
    if "" in columns or "" in columns.values():
        raise ConfigError("--column: expected field=column, e.g. --column input=question")
    fields = Engine.dataset_fields(args.task, args.strategy)
    failed = 0
    for source in args.datasets:
        try:
            report = Engine.validate_dataset(source, args.task, columns or None, fields)
        except ModelForgeError as exc:
            print(f"error: {exc}")  # it names the source
            failed += 1
            continue
        print(report.summary(limit=args.limit))
        failed += not report.ok
    if failed:
        print(f"{failed} of {len(args.datasets)} datasets have errors", file=sys.stderr)
    return EXIT_USAGE if failed else 0


def cmd_resume(args) -> int:
    engine = _engine()
    return _follow(engine, engine.resume(args.job, args.num_processes))


def cmd_join(args) -> int:
    return _engine(judge_jobs=False).join(args.job, args.machine_rank)


def cmd_cancel(args) -> int:
    engine = _engine()
    job = engine.cancel(args.job, wait=True)
    print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    return 0


def cmd_jobs(args) -> int:
    engine = _engine()
    rows = engine.list_jobs()
    if not rows:
        print("no jobs yet: python -m modelforge train CONFIG.yaml")
        return 0
    print(f"{'id':>4}  {'status':<11} {'stage':<14} {'step':>11}  {'loss':>8}  name")
    for job in rows:
        step = f"{job.step}/{job.total_steps}" if job.total_steps else str(job.step)
        loss = f"{job.loss:.4f}" if job.loss is not None else "-"
        print(f"{job.id:>4}  {job.status:<11} {job.stage:<14} {step:>11}  {loss:>8}  {job.name}")
    return 0


def cmd_show(args) -> int:
    from modelforge.formatting import duration

    engine = _engine()
    view = engine.job_view(args.job)
    print(f"job {view['id']}: {view['name']}")
    for label, value in (
        ("status", view["status"]),
        ("stage", view["stage"]),
        ("progress", f"{view['step']}/{view['total_steps'] or '?'}"),
        ("eta", duration(view["eta_seconds"]) if view["status"] == "running" else "-"),
        ("output", view["output_dir"]),
        ("created", view["created_at"]),
        ("started", view["started_at"]),
        ("finished", view["finished_at"]),
    ):
        print(f"  {label:<9} {value}")
    print(f"  {'launch':<9} {view['launch']}")
    for rank in view["ranks"]:
        print(f"  rank {rank['rank']:<4} machine {rank['machine']} · {rank['host']} pid {rank['pid']} · {rank['device']} · "
              f"{rank['state']} at step {rank['step']}")
    if view["error"]:
        print("  error    " + view["error"].replace("\n", "\n           "))
    if view["metrics"]:
        print("  metrics  " + json.dumps(view["metrics"]))
    print("config:\n  " + view["config"].to_yaml().rstrip().replace("\n", "\n  "))
    return 0


def cmd_eval(args) -> int:
    from modelforge.formatting import BEFORE_AFTER_COLUMNS, before_after

    result, saved = _engine().evaluate(args.target, args.dataset, args.max_samples)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for row in [BEFORE_AFTER_COLUMNS, *before_after(result["metrics"])]:
            print(f"{row[0]:<20} " + " ".join(f"{value:>12}" for value in row[1:]))
        print(f"{result['generated_rows']} of {result['rows']} held-out rows scored")
        if saved:
            print(f"saved: {saved}")
    return 0


def cmd_demo_model(args) -> int:
    from modelforge.engine import Engine

    print(Engine.build_demo_model(args.kind))
    return 0


def _print_progress(fraction: float, message: str) -> None:
    from modelforge.export import progress_line

    print(progress_line(fraction, message), file=sys.stderr, flush=True)


def cmd_export(args) -> int:
    engine = _engine(judge_jobs=False)
    if args.merged:
        print(engine.export_merged(args.job, progress=_print_progress, in_process=True))
    else:
        folder, adapter = engine.trained_model(args.job)
        print(folder)
        kind = "a LoRA adapter: add --merged for a standalone model" if adapter else "the full model"
        print(f"({kind})", file=sys.stderr)
    return 0


def cmd_export_gguf(args) -> int:
    from modelforge.export import ExportError
    from modelforge.parity import summary

    result = _engine(judge_jobs=False).export_gguf(args.job, args.quant, progress=_print_progress, in_process=True)
    print(result.gguf)
    print(result.modelfile)
    if not result.parity["passed"]:
        raise ExportError(f"{summary(result.parity)}. The files are in {result.gguf.parent}: do not ship them "
                          "before that is fixed.")
    print(summary(result.parity), file=sys.stderr)
    return 0


def cmd_push(args) -> int:
    result = _engine().push_to_hub(
        args.job,
        args.repo_id,
        private=not args.public,
        merged=args.merged,
        confirm_existing=args.yes,
        license=args.license,
        progress=_print_progress,
    )
    print(f"{'updated' if result.updated else 'created'} {result.url} ({'private' if result.private else 'public'})")
    print(f"commit: {result.commit_url}")
    return 0


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    from getpass import getpass

    password = getpass(f"password for {args.name}: ")
    if getpass("again: ") != password:
        from modelforge.accounts import AccountError

        raise AccountError("The two passwords differ: nothing was changed.")
    return password


def cmd_user(args) -> int:
    from modelforge import accounts
    from modelforge.settings import Settings

    home = Settings.from_env().home
    if args.action == "list":
        users = accounts.list_users(home)
        for user in users:
            print(f"{user.name}{'  (admin)' if user.admin else ''}")
        if not users:
            print("no users yet: python -m modelforge user add NAME [--admin]")
    elif args.action == "add":
        user = accounts.add_user(home, args.name, _read_password(args), admin=args.admin)
        print(f"added {user.name}{' (admin)' if user.admin else ''} to {accounts.users_path(home)}")
    else:
        accounts.remove_user(home, args.name)
        print(f"removed {args.name}; the jobs and datasets they own stay, visible to admins")
    return 0


COMMANDS: dict[str, Callable] = {
    "train": cmd_train,
    "sweep": cmd_sweep,
    "validate": cmd_validate,
    "jobs": cmd_jobs,
    "show": cmd_show,
    "cancel": cmd_cancel,
    "resume": cmd_resume,
    "join": cmd_join,
    "eval": cmd_eval,
    "demo-model": cmd_demo_model,
    "export": cmd_export,
    "export-gguf": cmd_export_gguf,
    "push": cmd_push,
    "user": cmd_user,
}


def build_parser() -> argparse.ArgumentParser:
    from modelforge.gguf_export import QUANTS

    parser = argparse.ArgumentParser(prog="modelforge", description="Fine-tune language models, from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="queue a job from a YAML config and follow it to the end")
    train.add_argument("config", help="path to the job's YAML config")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key, e.g. training.epochs=1; "
                       "sweep.learning_rate=[1e-3,3e-3] queues one job per value (a sweep)")
    sweep = commands.add_parser("sweep", help="compare the runs of a sweep: values, status, before/after, the best")
    sweep.add_argument("job", type=int, help="the id of any job of the sweep (see `jobs`)")
    check = commands.add_parser("validate", help="check datasets for a task: every problem with its line, exit 2 if any")
    check.add_argument("datasets", nargs="+", help="local files (jsonl/json/csv/parquet) or Hub dataset ids")
    check.add_argument("--task", choices=list(TASKS), default="text-generation", help="the task the rows are for")
    check.add_argument("--strategy", choices=list(STRATEGIES), help="a strategy whose fields differ (preference pairs; kto: labelled answers)")
    check.add_argument("--column", action="append", metavar="FIELD=COLUMN", help="map a field to a column of the file")
    check.add_argument("--limit", type=int, default=10, help="errors and warnings listed per dataset (default 10)")
    commands.add_parser("jobs", help="list jobs")
    for name, text in (
        ("show", "show a job's state, metrics and config"),
        ("cancel", "cancel a job; a running one saves a checkpoint"),
        ("resume", "continue a cancelled or interrupted job from its last checkpoint"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("job", type=int, help="job id (see `jobs`)")
    commands.choices["resume"].add_argument(
        "--num-processes", type=int, metavar="N", help="continue with N processes per machine (DDP jobs)"
    )
    join = commands.add_parser("join", help="run this machine's ranks of a multi-machine job started on machine 0")
    join.add_argument("job", type=int, help="job id (see `jobs`, on the shared database)")
    join.add_argument("--machine-rank", type=int, required=True, help="this machine's rank: 1 to num_machines - 1")
    evaluate = commands.add_parser("eval", help="score a completed job's model against its base (or a config's model)")
    evaluate.add_argument("target", help="job id, or a YAML config whose model is scored alone")
    evaluate.add_argument("--dataset", help="rows to score (file, saved dataset or hub id); default: the job's held-out rows")
    evaluate.add_argument("--max-samples", type=int, help="score at most this many rows (default: the config's evaluation.max_samples)")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    demo = commands.add_parser("demo-model", help="build (once) a built-in demo model and print its folder")
    demo.add_argument(
        "--kind", choices=list(DEMO_MODELS), default="causal",
        help="causal (text generation, chat), seq2seq (summarization) or qa (extractive QA)",
    )
    export = commands.add_parser("export", help="print where a job's model is; --merged merges its adapter into the base")
    export.add_argument("job", type=int, help="job id (see `jobs`)")
    export.add_argument("--merged", action="store_true", help="save base + adapter as one model in <output>/merged")
    gguf = commands.add_parser(
        "export-gguf", help="a job's model as a GGUF file + Ollama Modelfile, checked against the tuned model"
    )
    gguf.add_argument("job", type=int, help="job id (see `jobs`)")
    gguf.add_argument("--quant", default="q8_0", choices=list(QUANTS), help="quantization (llama.cpp's types)")
    push = commands.add_parser("push", help="push a job's model and a model card to the Hugging Face Hub")
    push.add_argument("job", type=int, help="job id (see `jobs`)")
    push.add_argument("repo_id", help="owner/name, or name for your own account")
    push.add_argument("--merged", action="store_true", help="push the merged model (merging first if need be)")
    push.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    push.add_argument("--yes", action="store_true", help="confirm adding a commit to a repo that already exists")
    push.add_argument("--license", help="license id for the model card, e.g. apache-2.0")
    user = commands.add_parser("user", help="manage the accounts that sign in to the web app (the users file)")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an account; prompts for its password")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="sees and controls every user's jobs and datasets")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    actions.add_parser("list", help="list the accounts")
    remove = actions.add_parser("remove", help="remove an account")
    remove.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from modelforge.db import CONNECTION_ERRORS, unreachable

    try:
        return COMMANDS[args.command](args)
    except ModelForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CONNECTION_ERRORS as exc:  # the database went away after it was opened
        print(f"error: {unreachable(exc)}", file=sys.stderr)
        return EXIT_FAILED
