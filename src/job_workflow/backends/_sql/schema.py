"""The SQL backend's tables, after Rails' Solid Queue, for one table prefix.

A job is one row of ``jobs``; where it stands is one row in exactly one
execution table (ready, claimed, scheduled, blocked, failed) or none once it
finished. ``jobs.status`` repeats that answer so a lookup is one read; every
transition changes both in one transaction. Workers poll ``ready_executions``
only, a small table that stays small however many jobs have finished.

Times are float seconds since the epoch (``DOUBLE``), exactly as the port
passes them. Payloads (arguments, metadata, outputs) are JSON in text
columns: portable, readable with any SQL client, never pickled.

``seq`` orders rows: jobs by enqueue, ready and blocked executions by when
they became ready or blocked. The backend assigns it (``queries.Sequencer``)
so rows need no database-generated key.

Every string column on MySQL/MariaDB uses a binary collation, so queue
names, keys and ids compare exactly as in Python (the default collations
there are case-insensitive).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import SchemaItem
from sqlalchemy.types import TypeEngine

__all__ = ["Tables", "build_tables"]

# MySQL's TEXT stops at 64 KiB; outputs and arguments may be larger.
JSON_TEXT: TypeEngine[str] = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _id(name: str, *, primary_key: bool = False, nullable: bool = False) -> Column[str]:
    return Column(name, String(36), primary_key=primary_key, nullable=nullable)


def _name(name: str, *, nullable: bool = False) -> Column[str]:
    return Column(name, String(255), nullable=nullable)


def _time(name: str, *, nullable: bool = False) -> Column[float]:
    return Column(name, Double(), nullable=nullable)


@dataclass(frozen=True, slots=True)
class Tables:
    """Every table of one prefix, and the MetaData that creates them."""

    metadata: MetaData
    jobs: Table
    ready: Table
    claimed: Table
    scheduled: Table
    failed: Table
    blocked: Table
    concurrency: Table
    semaphores: Table
    semaphore_limits: Table
    pauses: Table
    processes: Table
    recurring_tasks: Table
    recurring_executions: Table
    job_tasks: Table
    job_iterations: Table


def build_tables(prefix: str) -> Tables:
    """Declare the tables named ``<prefix><table>`` on a fresh MetaData."""
    metadata = MetaData()

    def table(name: str, *items: SchemaItem) -> Table:
        return Table(
            f"{prefix}{name}",
            metadata,
            *items,
            mysql_engine="InnoDB",
            mysql_charset="utf8mb4",
            mysql_collate="utf8mb4_bin",
            # A mariadb:// URL selects SQLAlchemy's MariaDB dialect, which
            # reads its own prefix.
            mariadb_engine="InnoDB",
            mariadb_charset="utf8mb4",
            mariadb_collate="utf8mb4_bin",
        )

    def index(name: str, *columns: str, unique: bool = False) -> Index:
        return Index(f"{prefix}ix_{name}", *columns, unique=unique)

    return Tables(
        metadata=metadata,
        jobs=table(
            "jobs",
            _id("id", primary_key=True),
            Column("seq", BigInteger, nullable=False),
            _name("workflow"),
            _name("queue"),
            Column("priority", Integer, nullable=False),
            Column("arguments", JSON_TEXT, nullable=False),
            Column("metadata", JSON_TEXT, nullable=False),
            _id("parent_id", nullable=True),
            _name("task_name", nullable=True),
            Column("each_index", Integer, nullable=True),
            _name("concurrency_key", nullable=True),
            Column("concurrency_limit", Integer, nullable=True),
            Column("status", String(16), nullable=False),
            _time("created_at"),
            _time("run_at"),
            _time("finished_at", nullable=True),
            Column("executions", Integer, nullable=False),
            _name("claimed_by", nullable=True),
            _name("current_task", nullable=True),
            _name("error_class", nullable=True),
            Column("error_message", Text, nullable=True),
            # sub_jobs(parent, task) in enqueue order; jobs(queue) likewise.
            index("jobs_parent", "parent_id", "task_name", "seq"),
            index("jobs_queue", "queue", "seq"),
        ),
        ready=table(
            "ready_executions",
            _id("job_id", primary_key=True),
            _name("queue"),
            Column("priority", Integer, nullable=False),
            Column("seq", BigInteger, nullable=False),
            _time("created_at"),
            # The claim: every queue, or some queues, by (priority, seq).
            index("ready_poll_all", "priority", "seq"),
            index("ready_poll_by_queue", "queue", "priority", "seq"),
        ),
        claimed=table(
            "claimed_executions",
            _id("job_id", primary_key=True),
            _name("worker_id"),
            _time("created_at"),
            index("claimed_worker", "worker_id"),
        ),
        scheduled=table(
            "scheduled_executions",
            _id("job_id", primary_key=True),
            _name("queue"),
            Column("priority", Integer, nullable=False),
            Column("seq", BigInteger, nullable=False),
            _time("run_at"),
            index("scheduled_due", "run_at", "seq"),
        ),
        failed=table(
            "failed_executions",
            _id("job_id", primary_key=True),
            Column("error", Text, nullable=False),
            _time("created_at"),
        ),
        blocked=table(
            "blocked_executions",
            _id("job_id", primary_key=True),
            _name("concurrency_key"),
            Column("seq", BigInteger, nullable=False),
            _time("created_at"),
            # The release: the oldest blocked job of one key.
            index("blocked_release", "concurrency_key", "seq"),
        ),
        # One row per concurrency key: how many of its jobs are ready or
        # running. Locking this row serialises everything that admits or
        # releases a job of the key, so the limit holds across workers.
        concurrency=table(
            "concurrency_keys",
            _name("key", nullable=False),
            Column("active", Integer, nullable=False),
            PrimaryKeyConstraint("key"),
        ),
        semaphores=table(
            "semaphores",
            _name("key"),
            _name("holder"),
            _time("expires_at"),
            Column("seq", BigInteger, nullable=False),
            PrimaryKeyConstraint("key", "holder"),
            index("semaphores_expiry", "expires_at"),
        ),
        # One row per semaphore key: its limit, and the row an acquirer locks.
        semaphore_limits=table(
            "semaphore_limits",
            _name("key"),
            Column("limit", Integer, nullable=False),
            PrimaryKeyConstraint("key"),
        ),
        pauses=table("pauses", _name("queue"), PrimaryKeyConstraint("queue")),
        processes=table(
            "processes",
            Column("id", String(64), primary_key=True),
            _name("kind"),
            _name("hostname"),
            Column("pid", Integer, nullable=False),
            _time("last_heartbeat_at"),
            Column("metadata", JSON_TEXT, nullable=False),
            index("processes_heartbeat", "last_heartbeat_at"),
        ),
        recurring_tasks=table(
            "recurring_tasks",
            _name("key"),
            _name("schedule"),
            _name("workflow"),
            Column("arguments", JSON_TEXT, nullable=False),
            _name("queue", nullable=True),
            Column("priority", Integer, nullable=True),
            Column("description", Text, nullable=True),
            PrimaryKeyConstraint("key"),
        ),
        # (key, run_at) is unique: however many schedulers race to enqueue a
        # run, one insert wins and the others see the conflict.
        recurring_executions=table(
            "recurring_executions",
            _id("job_id", primary_key=True),
            _name("key"),
            _time("run_at"),
            UniqueConstraint("key", "run_at", name=f"{prefix}uq_recurring_run"),
        ),
        job_tasks=table(
            "job_tasks",
            _id("job_id"),
            _name("task_name"),
            Column("outcome", String(16), nullable=False),
            Column("sub_job_ids", JSON_TEXT, nullable=True),
            PrimaryKeyConstraint("job_id", "task_name"),
        ),
        job_iterations=table(
            "job_iterations",
            _id("job_id"),
            _name("task_name"),
            Column("each_index", Integer, nullable=False),
            Column("output", JSON_TEXT, nullable=True),
            PrimaryKeyConstraint("job_id", "task_name", "each_index"),
        ),
    )
