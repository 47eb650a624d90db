"""The job store: jobs, their metric points, and the datasets and models they produced (Peewee)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect as connect_url

from modelforge.settings import Settings

database = DatabaseProxy()

ACTIVE_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
RESUMABLE_STATUSES = ("cancelled", "interrupted", "failed")


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

    class Meta:
        table_name = "datasets"


class Job(BaseModel):
    name = CharField()
    config = TextField()  # JobConfig as JSON: the one description of the run
    status = CharField(default="queued", index=True)
    stage = CharField(default="queued")
    output_dir = CharField()
    dataset = ForeignKeyField(DatasetRecord, null=True, backref="jobs", on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    error = TextField(null=True)
    resume = BooleanField(default=False)
    cancel_requested_at = DateTimeField(null=True)
    worker_pid = IntegerField(null=True)
    worker_host = CharField(null=True)
    step = IntegerField(default=0)
    total_steps = IntegerField(null=True)
    epoch = FloatField(null=True)
    loss = FloatField(null=True)
    eval_loss = FloatField(null=True)
    learning_rate = FloatField(null=True)
    tokens_per_second = FloatField(null=True)
    eta_seconds = FloatField(null=True)
    metrics = TextField(null=True)  # final metrics as JSON

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


class ModelArtifact(BaseModel):
    job = ForeignKeyField(Job, backref="artifacts", on_delete="CASCADE")
    kind = CharField()  # adapter | full-model | checkpoint | merged | reward-model
    path = CharField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "model_artifacts"


TABLES = (DatasetRecord, Job, MetricPoint, ModelArtifact)


def init_database(settings: Settings):
    """Bind the models to the configured database (SQLite under the home folder unless DATABASE_URL is set)."""
    if settings.database_url:
        db = connect_url(settings.database_url)
    else:
        settings.database_path.parent.mkdir(parents=True, exist_ok=True)
        db = SqliteDatabase(
            str(settings.database_path),
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10000, "synchronous": "normal"},
            check_same_thread=False,
        )
    database.initialize(db)
    db.connect(reuse_if_open=True)
    db.create_tables(TABLES, safe=True)
    return db
