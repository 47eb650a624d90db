"""The job store's tables: jobs, their metric points and ranks, and the saved datasets (Peewee), and opening it."""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    ImproperlyConfigured,
    IntegerField,
    InterfaceError,
    Model,
    OperationalError,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect as connect_url
from playhouse.migrate import SchemaMigrator, migrate

from modelforge.errors import DatabaseError
from modelforge.settings import Settings

database = DatabaseProxy()

ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
RESUMABLE_STATUSES = ("cancelled", "interrupted", "failed")
# What a lost connection raises (a stopped server, a network cut, a file that cannot be opened).
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# Any fixed numbers: keys of PostgreSQL advisory locks that make job claims, and schema changes, one at a time.
CLAIM_LOCK_KEY = 0x6D66636C
SCHEMA_LOCK_KEY = 0x6D667363


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class DatasetRecord(BaseModel):
    name = CharField(unique=True)
    task = CharField()
    path = CharField()
    columns = TextField(default="{}")
    rows = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    owner = CharField(null=True, index=True)  # the user who saved it; None: saved before accounts, admins only

    class Meta:
        table_name = "datasets"


class Job(BaseModel):
    name = CharField()
    config = TextField()  # JobConfig as JSON: the one description of the run
    status = CharField(default="queued", index=True)
    stage = CharField(default="queued")
    output_dir = CharField()
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    error = TextField(null=True)
    resume = BooleanField(default=False)
    cancel_requested_at = DateTimeField(null=True)
    worker_pid = IntegerField(null=True)
    worker_host = CharField(null=True)
    # host:pid:start-time of the runner that claimed the job and started its worker: written by the claim itself,
    # so no other runner judges the job while that runner lives (see runner.JobRunner._orphaned).
    supervisor = CharField(null=True)
    step = IntegerField(default=0)
    total_steps = IntegerField(null=True)
    epoch = FloatField(null=True)
    loss = FloatField(null=True)
    eval_loss = FloatField(null=True)
    learning_rate = FloatField(null=True)
    tokens_per_second = FloatField(null=True)
    eta_seconds = FloatField(null=True)
    metrics = TextField(null=True)  # final metrics as JSON
    owner = CharField(null=True, index=True)  # the user who started it; None: started before accounts, admins only
    sweep = IntegerField(null=True, index=True)  # the id of the first job of the sweep it ran in; None: not in a sweep

    class Meta:
        table_name = "jobs"

    @classmethod
    def queued(cls):
        return cls.select().where(cls.status == "queued").order_by(cls.created_at, cls.id)

    @classmethod
    def running(cls):
        return cls.select().where(cls.status == "running")

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def final_metrics(self) -> dict[str, Any]:
        return json.loads(self.metrics) if self.metrics else {}


class MetricPoint(BaseModel):
    job = ForeignKeyField(Job, backref="metric_points", on_delete="CASCADE")
    step = IntegerField()
    epoch = FloatField(null=True)
    loss = FloatField(null=True)
    eval_loss = FloatField(null=True)
    learning_rate = FloatField(null=True)
    tokens_per_second = FloatField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "metric_points"


class JobRank(BaseModel):
    """One process of a distributed job, written by that process: where it runs and how far it got."""

    job = ForeignKeyField(Job, backref="ranks", on_delete="CASCADE")
    rank = IntegerField()  # torchrun's global RANK
    machine_rank = IntegerField()
    world_size = IntegerField()
    host = CharField()
    pid = IntegerField()
    device = CharField()
    state = CharField()  # starting | training | completed | cancelled | failed
    step = IntegerField(default=0)
    weights_digest = CharField(null=True)  # sha256 of the trained weights at the end: equal on every rank
    error = TextField(null=True)  # what this rank raised, if it failed
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "job_ranks"
        indexes = ((("job", "rank"), True),)


TABLES = (DatasetRecord, Job, MetricPoint, JobRank)
# What older versions wrote and nothing read (a job's dataset row, a table of produced models): dropped on opening.
RETIRED_TABLES = ("model_artifacts",)
RETIRED_COLUMNS = (("jobs", "dataset_id"),)


def init_database(settings: Settings):
    """Bind the models to the configured database (SQLite under the home folder unless DATABASE_URL is set).

    DatabaseError, with what to check, when DATABASE_URL is malformed, its driver is missing or the server is not
    reachable.
    """
    url = settings.database_url
    try:
        if url:
            db = connect_url(url)
        else:
            settings.database_path.parent.mkdir(parents=True, exist_ok=True)
            db = SqliteDatabase(
                str(settings.database_path),
                pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10000, "synchronous": "normal"},
                check_same_thread=False,
            )
        database.initialize(db)
        db.connect(reuse_if_open=True)
        with exclusive_transaction(SCHEMA_LOCK_KEY):  # processes starting together must not create a table twice
            # Tables, then the columns an older version lacks, then the indexes, which may be on those columns.
            for model in TABLES:
                model._schema.create_table(safe=True)
            _add_missing_columns(db)
            for model in TABLES:
                model._schema.create_indexes(safe=True)
            for table in RETIRED_TABLES:
                db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
        _drop_retired_columns(db)
    except (RuntimeError, ValueError) as exc:  # db_url: an unknown scheme, no database name
        raise DatabaseError(
            f"DATABASE_URL {redact(url)} is not a database address ({exc}); it looks like "
            "postgresql://USER:PASSWORD@HOST:5432/NAME or sqlite:////absolute/path.db."
        ) from None
    except ImproperlyConfigured as exc:
        raise DatabaseError(
            f"DATABASE_URL {redact(url)} needs a driver that is not installed ({exc}); "
            "`pip install -r requirements.txt` installs psycopg2-binary for PostgreSQL."
        ) from None
    except (*CONNECTION_ERRORS, OSError) as exc:
        raise DatabaseError(f"Cannot open the database {describe(settings)}: {first_line(exc)}. {_CHECK}") from None
    return db


_CHECK = "Check DATABASE_URL (or MODELFORGE_HOME) and that the database server is running and reachable from here."


def redact(url: str | None) -> str:
    """The URL without its password, fit for messages and logs."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def describe(settings: Settings) -> str:
    return redact(settings.database_url) if settings.database_url else str(settings.database_path)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def unreachable(exc: BaseException) -> DatabaseError:
    """A lost connection as the user's error; the broken connection is dropped so the next query opens a new one."""
    try:
        database.close()
    except CONNECTION_ERRORS:
        pass
    return DatabaseError(f"The database became unreachable: {first_line(exc)}. {_CHECK}")


@contextmanager
def exclusive_transaction(lock_key: int = CLAIM_LOCK_KEY):
    """A transaction that only one process at a time holds, e.g. so two runners never both see a free slot and fill it.

    SQLite takes its write lock up front (BEGIN IMMEDIATE); PostgreSQL serialises on an advisory lock that the
    transaction's end releases (row locks would not stop two runners from claiming two different jobs).
    """
    if isinstance(database.obj, SqliteDatabase):
        with database.atomic("IMMEDIATE"):
            yield
        return
    with database.atomic():
        if isinstance(database.obj, PostgresqlDatabase):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        yield


def _add_missing_columns(db) -> None:
    """Add the columns a newer ModelForge defines to a database created by an older one (all nullable or defaulted)."""
    migrator = SchemaMigrator.from_database(db)
    for model in TABLES:
        present = {column.name for column in db.get_columns(model._meta.table_name)}
        missing = [field for field in model._meta.sorted_fields if field.column_name not in present]
        if missing:
            migrate(*(migrator.add_column(model._meta.table_name, field.column_name, _unindexed(field))
                      for field in missing))


def _unindexed(field):
    """The field without its index, which create_indexes makes under the model's own name (the migrator's differs)."""
    plain = copy.copy(field)
    plain.index = plain.unique = False
    return plain


def _drop_retired_columns(db) -> None:
    """Drop the columns older versions wrote and nothing reads. SQLite cannot drop a foreign-key column in place:
    the table is rebuilt, with foreign keys off meanwhile (else dropping the old table would cascade into the rows
    that refer to it), as SQLite's documentation prescribes."""
    retired = [(table, column) for table, column in RETIRED_COLUMNS
               if column in {present.name for present in db.get_columns(table)}]
    if not retired:
        return
    migrator = SchemaMigrator.from_database(db)
    if not isinstance(db, SqliteDatabase):
        with exclusive_transaction(SCHEMA_LOCK_KEY):
            migrate(*(migrator.drop_column(table, column) for table, column in retired
                      if column in {present.name for present in db.get_columns(table)}))
        return
    db.execute_sql("PRAGMA foreign_keys = OFF")  # outside any transaction: SQLite ignores it inside one
    try:
        with db.atomic("IMMEDIATE"):
            for table, column in retired:
                if column in {present.name for present in db.get_columns(table)}:  # another process was first
                    migrate(migrator.drop_column(table, column, legacy=True))
            if db.execute_sql("PRAGMA foreign_key_check").fetchall():
                raise OperationalError("the rebuilt tables break a foreign key")
    finally:
        db.execute_sql("PRAGMA foreign_keys = ON")
