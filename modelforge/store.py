"""Every query of the job store, as small functions: the rest of the package reads and writes the tables through
these (db.py holds the tables themselves and opens the database). Writes of more than one row run in one
transaction."""

from __future__ import annotations

import json
from typing import Any

from peewee import IntegrityError, fn

from modelforge.accounts import Account
from modelforge.db import DatasetRecord, Job, JobRank, MetricPoint, database, exclusive_transaction, utcnow
from modelforge.errors import DatasetError, JobError

# -- jobs ---------------------------------------------------------------------------------------------------------


def get_job(job_id: int | str) -> Job:
    try:
        return Job.get_by_id(int(job_id))
    except (Job.DoesNotExist, ValueError):
        raise JobError(f"No job with id {job_id}; `python -m modelforge jobs` lists them.") from None


def find_job(job_id: int) -> Job | None:
    return Job.get_or_none(Job.id == job_id)


def create_job(name: str, config: str, output_dir: str) -> Job:
    return Job.create(name=name, config=config, output_dir=output_dir)


def update(job_id: int, **fields: Any) -> None:
    Job.update(**fields).where(Job.id == job_id).execute()


def set_stage(job_id: int, stage: str) -> None:
    update(job_id, stage=stage)


def cancel_requested(job_id: int) -> bool:
    return Job.select(Job.cancel_requested_at).where(Job.id == job_id).scalar() is not None


def record_metrics(job_id: int, step: int, **values: float | None) -> None:
    with database.atomic():
        MetricPoint.create(job=job_id, step=step, **values)
        update(job_id, step=step, **{key: value for key, value in values.items() if value is not None})


def finish(job_id: int, status: str, error: str | None = None, metrics: dict | None = None) -> None:
    fields: dict[str, Any] = dict(status=status, stage=status, finished_at=utcnow(), error=error, eta_seconds=None)
    if metrics is not None:
        fields["metrics"] = json.dumps(metrics)
    update(job_id, **fields)


def finish_queued(job_id: int, status: str, error: str) -> bool:
    """Finish a job only while it is still queued; False when a runner claimed it first."""
    fields = dict(status=status, stage=status, finished_at=utcnow(), error=error)
    return bool(Job.update(**fields).where(Job.id == job_id, Job.status == "queued").execute())


def claim_next(supervisor: str, max_concurrent: int, up_to: int | None = None) -> Job | None:
    """Claim the first queued job (queued no later than job `up_to`, if given) for `supervisor` while fewer than
    `max_concurrent` run; one claim at a time across processes and machines. The claimed job, or None."""
    with exclusive_transaction():
        if Job.running().count() >= max_concurrent:
            return None
        candidates = Job.queued()
        if up_to is not None:
            limit = get_job(up_to)
            candidates = candidates.where(
                (Job.created_at < limit.created_at) | ((Job.created_at == limit.created_at) & (Job.id <= limit.id))
            )
        job = candidates.first()
        if job is None:
            return None
        claimed = (
            Job.update(
                status="running", stage="loading model", started_at=utcnow(), error=None,
                supervisor=supervisor, worker_pid=None, worker_host=None,
            )
            .where(Job.id == job.id, Job.status == "queued")
            .execute()
        )
    return job if claimed else None


def running_jobs() -> list[Job]:
    return list(Job.running())


def cancelling_jobs() -> list[Job]:
    """Running jobs whose cancel was asked for."""
    return list(Job.running().where(Job.cancel_requested_at.is_null(False)))


def metric_points(job_id: int) -> list[MetricPoint]:
    return list(MetricPoint.select().where(MetricPoint.job == job_id).order_by(MetricPoint.step, MetricPoint.id))


def _visible(query, model, account: Account):
    return query if account.admin else query.where(model.owner == account.name)


def list_jobs(account: Account, status: str | None = None) -> list[Job]:
    """The jobs `account` may see (of `status`, if given), newest first."""
    query = Job.select() if status is None else Job.select().where(Job.status == status)
    return list(_visible(query, Job, account).order_by(Job.id.desc()))


def current_job(account: Account) -> Job | None:
    """The running job `account` may see, else its next queued one, else its latest."""
    return (
        _visible(Job.running(), Job, account).order_by(Job.started_at).first()
        or _visible(Job.queued(), Job, account).first()
        or _visible(Job.select(), Job, account).order_by(Job.id.desc()).first()
    )


def transaction():
    """Writes that land together or not at all (a sweep's jobs)."""
    return database.atomic()


def sweep_jobs(sweep: int) -> list[Job]:
    """The jobs of a sweep, in the order they were queued."""
    return list(Job.select().where(Job.sweep == sweep).order_by(Job.id))


def sweeps(account: Account) -> list[tuple[int, str, int]]:
    """(sweep, name of its first job, number of its jobs) of the sweeps `account` may see, newest first."""
    query = (Job.select(Job.sweep, fn.MIN(Job.name).alias("first"), fn.COUNT(Job.id).alias("runs"))
             .where(Job.sweep.is_null(False)).group_by(Job.sweep).order_by(Job.sweep.desc()))
    return [(row.sweep, row.first, row.runs) for row in _visible(query, Job, account)]


def other_output_dirs(job_id: int) -> list[str]:
    """The output folders of every job but this one."""
    return [job.output_dir for job in Job.select(Job.output_dir).where(Job.id != job_id)]


def delete_job(job: Job) -> None:
    """The job's row, its metric points and its rank rows."""
    with database.atomic():
        job.delete_instance(recursive=True)


# -- the ranks of a distributed job -------------------------------------------------------------------------------


def job_ranks(job_id: int) -> list[JobRank]:
    return list(JobRank.select().where(JobRank.job == job_id).order_by(JobRank.rank))


def rank_row(job_id: int, rank: int) -> JobRank | None:
    return JobRank.get_or_none(JobRank.job == job_id, JobRank.rank == rank)


def record_rank(job_id: int, rank: int, pid: int, values: dict[str, Any], placement: dict[str, Any]) -> None:
    """Update this process's row of the rank; when it has none yet, replace an earlier attempt's row with a new one
    (`placement`: machine_rank, world_size, host, device default)."""
    updated = JobRank.update(**values).where(JobRank.job == job_id, JobRank.rank == rank, JobRank.pid == pid)
    if updated.execute():
        return
    with database.atomic():
        JobRank.delete().where(JobRank.job == job_id, JobRank.rank == rank).execute()
        JobRank.create(job=job_id, rank=rank, pid=pid, **{**placement, **values})


def clear_ranks(job_id: int) -> None:
    """Forget the rank rows of an earlier attempt."""
    JobRank.delete().where(JobRank.job == job_id).execute()


def set_rank_state(job_id: int, rank: int, state: str) -> None:
    JobRank.update(state=state).where(JobRank.job == job_id, JobRank.rank == rank).execute()


def stop_machine_ranks(job_id: int, machine_rank: int, final_states: tuple[str, ...]) -> None:
    """Mark a machine's ranks that did not reach one of `final_states` as stopped."""
    JobRank.update(state="stopped").where(
        JobRank.job == job_id, JobRank.machine_rank == machine_rank, JobRank.state.not_in(final_states)
    ).execute()


def first_rank_error(job_id: int, ranks: list[int]) -> JobRank | None:
    """Of these ranks, the first that recorded an error of its own."""
    return (
        JobRank.select()
        .where(JobRank.job == job_id, JobRank.rank.in_(ranks), JobRank.error.is_null(False))
        .order_by(JobRank.updated_at)
        .first()
    )


# -- saved datasets -----------------------------------------------------------------------------------------------


def dataset_record(name: str) -> DatasetRecord | None:
    return DatasetRecord.get_or_none(DatasetRecord.name == name)


def create_dataset(name: str, task: str, path: str, columns: dict[str, str], rows: int) -> DatasetRecord:
    """DatasetError when the name was taken meanwhile."""
    try:
        with database.atomic():
            return DatasetRecord.create(name=name, task=task, path=path, columns=json.dumps(columns), rows=rows)
    except IntegrityError:
        raise DatasetError(f"a dataset named {name!r} already exists; choose another name") from None


def datasets(account: Account | None = None, task: str | None = None) -> list[DatasetRecord]:
    """The saved datasets (those `account` may use, of `task`, when given), newest first."""
    query = DatasetRecord.select()
    if task is not None:
        query = query.where(DatasetRecord.task == task)
    if account is not None:
        query = _visible(query, DatasetRecord, account)
    return list(query.order_by(DatasetRecord.created_at.desc(), DatasetRecord.id.desc()))


def set_dataset_owner(name: str, owner: str) -> None:
    DatasetRecord.update(owner=owner).where(DatasetRecord.name == name).execute()


def delete_dataset(record: DatasetRecord) -> bool:
    """Forget a saved dataset; whether another record still uses its file."""
    shared = DatasetRecord.select().where(DatasetRecord.path == record.path, DatasetRecord.id != record.id).exists()
    with database.atomic():
        record.delete_instance()
    return shared
