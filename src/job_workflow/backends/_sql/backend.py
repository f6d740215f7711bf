"""``SqlBackend``: the queue port on SQLAlchemy Core, after Solid Queue.

It keeps the in-memory backend's semantics (the contract suite runs on
both) with the state in a database, so any number of worker threads,
processes and hosts can share it. Each port method is one transaction or
one statement; see ``queries`` for the statements and their locking,
``database`` for engines, retries and errors, ``schema`` for the tables.

The backend never reads the clock: every time comes in as ``now``. The one
exception is :meth:`SqlBackend.clear_queue`, whose port signature has no
``now``; it asks the clock given to the constructor (by default the
process clock), as the memory backend does.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.engine.interfaces import DBAPICursor

from job_workflow.backends._settle import settled
from job_workflow.backends._sql.database import Database, Family
from job_workflow.backends._sql.queries import HotPath, JobRow, Queries, Sequencer
from job_workflow.backends._sql.schema import Tables, build_tables
from job_workflow.core.ports import (
    Clock,
    JobError,
    JobRecord,
    JobState,
    NewJob,
    SemaphoreStatistics,
    SubJobProgress,
    TaskOutcome,
)

__all__ = ["CorruptPayloadError", "SqlBackend"]

_log = logging.getLogger("job_workflow")

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,29}")
# load_state of at most this many tasks runs a statement prepared for it.
MAX_PREPARED_TASKS = 16


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


CORRUPT_PAYLOAD = "CorruptPayload"


class CorruptPayloadError(ValueError):
    """A job's stored JSON (arguments or metadata) does not decode to an object.

    Nothing this library writes looks like that; a hand edit or a foreign
    writer does. A worker that claims such a job fails it with error class
    ``CorruptPayload`` and this message, and goes on with the others.
    """


def _payload(row: JobRow, column: str, *, strict: bool) -> dict[str, Any]:
    """Decode a JSON object column; a lenient read shows a corrupt one as {}."""
    text = row[column]
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        problem = f"is not valid JSON ({exc})"
    else:
        if isinstance(value, dict):
            return value
        problem = f"holds a JSON {type(value).__name__}, not an object"
    if not strict:
        return {}
    raise CorruptPayloadError(
        f"job {row['id']}: its {column} column {problem}: {str(text)[:80]!r}"
    )


def _record(row: JobRow, *, strict: bool = False) -> JobRecord:
    """The record of a row; ``strict`` raises CorruptPayloadError on bad JSON.

    Claims are strict (the job is about to run); lookups are lenient so that
    one damaged row never breaks a status query or a queue listing.
    """
    error_class = row["error_class"]
    return JobRecord(
        id=row["id"],
        workflow=row["workflow"],
        arguments=_payload(row, "arguments", strict=strict),
        queue=row["queue"],
        priority=row["priority"],
        status=row["status"],
        created_at=row["created_at"],
        run_at=row["run_at"],
        parent_id=row["parent_id"],
        task_name=row["task_name"],
        each_index=row["each_index"],
        concurrency_key=row["concurrency_key"],
        concurrency_limit=row["concurrency_limit"],
        claimed_by=row["claimed_by"],
        executions=row["executions"],
        finished_at=row["finished_at"],
        error=None
        if error_class is None
        else JobError(error_class, row["error_message"]),
        current_task=row["current_task"],
        metadata=_payload(row, "metadata", strict=strict),
    )


class SqlBackend:
    """The queue port on SQLite, PostgreSQL or MySQL/MariaDB.

    ``url`` is a SQLAlchemy URL (``sqlite:///jobs.db``,
    ``postgresql+psycopg://user@host/db``, ``mysql+pymysql://user@host/db``;
    without a driver, psycopg and PyMySQL are used). Every table is named
    ``<table_prefix><table>``, so several independent backends can share one
    database. Nothing is created or connected until it is used: call
    :meth:`create_schema` once (tests) or run the migrations.

    Raises ValueError for a URL that does not parse, names an unsupported
    database, or whose driver is not installed. Operations raise
    :class:`DatabaseUnavailableError` (a ``ConnectionError``) when the
    database cannot be reached.
    """

    name = "sql"

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str = "jw_",
        echo: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(table_prefix, str) or not _PREFIX.fullmatch(table_prefix):
            raise ValueError(
                f"table_prefix must be letters, digits and underscores "
                f"(at most 30, not starting with a digit), got {table_prefix!r}"
            )
        self._db = Database(url, echo=echo)
        self.table_prefix = table_prefix
        self.tables: Tables = build_tables(table_prefix)
        self._sequence = Sequencer()
        self._q = Queries(self.tables, self._db.family, self._sequence)
        self._hot = HotPath(self._q, self._db)
        self._clock = clock
        # Workflow jobs this backend started for the first time (claimed with
        # executions == 1, or started inline): they have no progress yet, so
        # their first load_state needs no query. Sub-jobs read their parent.
        self._fresh: set[str] = set()
        # Current tasks held for the next finish_and_claim (see
        # defer_current_tasks): job id -> task.
        self._current: dict[str, str | None] = {}
        self._current_lock = threading.Lock()
        # Held by a statement carrying current tasks, and by fail and
        # reschedule: a job's held task is written after any older one.
        self._current_flush = threading.Lock()
        self._wake: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return (
            f"SqlBackend({self._db.masked_url!r}, table_prefix={self.table_prefix!r})"
        )

    @property
    def dialect(self) -> Family:
        """The database family: "sqlite", "postgresql" or "mysql" (also MariaDB)."""
        return self._db.family

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._db.masked_url

    # -- schema and lifetime --

    def create_schema(self) -> None:
        """Create every table and index that does not exist yet (idempotent)."""
        self._db.transaction(lambda conn: self.tables.metadata.create_all(conn))

    def upgrade_schema(self) -> None:
        """Run the packaged Alembic migrations up to the newest (``db upgrade``)."""
        from pathlib import Path

        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option(
            "script_location", str(Path(__file__).resolve().parent / "migrations")
        )
        config.attributes["table_prefix"] = self.table_prefix

        def work(conn: Connection) -> None:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

        self._db.transaction(work)

    def drop_schema(self) -> None:
        """Drop this prefix's tables and everything in them (for tests)."""
        self._db.transaction(lambda conn: self.tables.metadata.drop_all(conn))

    def close(self) -> None:
        """Close every pooled connection; the backend reconnects if used again."""
        self._db.dispose()

    # -- enqueueing --

    def _row(self, spec: NewJob, job_id: str, seq: int, now: float) -> dict[str, Any]:
        run_at = now if spec.run_at is None else spec.run_at
        return {
            "id": job_id,
            "seq": seq,
            "workflow": spec.workflow,
            "queue": spec.queue,
            "priority": spec.priority,
            "arguments": _dumps(dict(spec.arguments)),
            "metadata": _dumps(dict(spec.metadata)),
            "parent_id": spec.parent_id,
            "task_name": spec.task_name,
            "each_index": spec.each_index,
            "concurrency_key": spec.concurrency_key,
            "concurrency_limit": spec.concurrency_limit,
            "status": "scheduled" if run_at > now else "ready",
            "created_at": now,
            "run_at": run_at,
            "finished_at": None,
            "executions": 0,
            "claimed_by": None,
            "current_task": None,
            "error_class": None,
            "error_message": None,
        }

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> list[str]:
        if not jobs:
            return []
        first = self._sequence.take(now, len(jobs))
        rows = [
            self._row(spec, str(uuid.uuid4()), first + n, now)
            for n, spec in enumerate(jobs)
        ]

        def work(conn: Connection) -> None:
            # A retried attempt must start from the statuses as built.
            attempt = [dict(row) for row in rows]
            self._q.insert_jobs(conn, attempt, now)

        self._db.transaction(work)
        return [row["id"] for row in rows]

    def start_inline(self, job: NewJob, worker_id: str, now: float) -> JobRecord:
        row = self._row(job, str(uuid.uuid4()), self._sequence.take(now), now)
        row.update(status="claimed", claimed_by=worker_id, executions=1)
        self._db.transaction(lambda conn: self._q.insert_jobs(conn, [row], now))
        if job.task_name is None:
            self._fresh.add(row["id"])
        return JobRecord(
            id=row["id"],
            workflow=job.workflow,
            arguments=json.loads(row["arguments"]),
            queue=job.queue,
            priority=job.priority,
            status="claimed",
            created_at=now,
            run_at=row["run_at"],
            parent_id=job.parent_id,
            task_name=job.task_name,
            each_index=job.each_index,
            concurrency_key=job.concurrency_key,
            concurrency_limit=job.concurrency_limit,
            claimed_by=worker_id,
            executions=1,
            metadata=json.loads(row["metadata"]),
        )

    # -- workers --

    def claim(
        self, queues: Sequence[str] | None, worker_id: str, now: float, limit: int = 1
    ) -> list[JobRecord]:
        if limit < 1 or (queues is not None and not queues):
            return []

        def work(conn: Connection) -> list[JobRow]:
            return self._q.claim(conn, queues, worker_id, now, limit)

        def hot(cursor: DBAPICursor) -> list[dict[str, Any]]:
            return self._hot.claim(cursor, worker_id, now, limit)

        rows: Sequence[JobRow]
        if queues is None and self._hot.claim_all is not None:
            postgresql = self._db.family == "postgresql"
            # One statement on PostgreSQL: not retried after a lost
            # connection, which may hide a claim that happened.
            rows = self._db.raw(hot, transaction=not postgresql, idempotent=False)
        elif self._db.family == "postgresql":
            # One statement (see Queries.claim); not retried after a lost
            # connection, which may hide a claim that happened.
            rows = self._db.statement(work, idempotent=False)
        else:
            rows = self._db.transaction(work)
        return self._records(rows, now, worker_id)

    def _records(
        self, rows: Sequence[JobRow], now: float, worker_id: str
    ) -> list[JobRecord]:
        """Claimed rows as records, in claim order; a corrupt one fails."""
        rows = sorted(rows, key=lambda row: (row["priority"], row["ready_seq"]))
        records: list[JobRecord] = []
        for row in rows:
            try:
                record = _record(row, strict=True)
            except CorruptPayloadError as exc:
                self._fail_corrupt(row["id"], exc, now, worker_id)
                continue
            if record.executions == 1 and record.task_name is None:
                self._fresh.add(record.id)
            else:
                self._fresh.discard(record.id)
            records.append(record)
        return records

    def _fail_corrupt(
        self, job_id: str, exc: CorruptPayloadError, now: float, worker_id: str
    ) -> None:
        """A claimed job whose payload does not decode fails; the claim goes on."""
        _log.error(
            "job payload is corrupt; failing the job",
            extra={
                "event": "job.corrupt_payload",
                "job_id": job_id,
                "error_class": CORRUPT_PAYLOAD,
                "error_message": str(exc),
            },
        )
        self.fail(job_id, JobError(CORRUPT_PAYLOAD, str(exc)), now, worker_id=worker_id)

    def finish(self, job_id: str, now: float, *, worker_id: str | None = None) -> bool:
        self._fresh.discard(job_id)
        self._held_current(job_id)  # a finished job runs no task
        postgresql = self._db.family == "postgresql"
        hot = self._hot
        if self._db.raw(
            lambda cursor: hot.finish_claimed_unkeyed(cursor, job_id, now, worker_id),
            transaction=not postgresql,
        ):
            return True
        # A keyed job, one not claimed, or one another worker holds.
        return self._settle_finished(job_id, now, worker_id)

    def finish_and_claim(
        self,
        job_ids: Sequence[str],
        now: float,
        queues: Sequence[str] | None,
        worker_id: str,
        limit: int = 1,
    ) -> list[JobRecord]:
        """``finish`` each of ``job_ids``, then ``claim(...)``: one round trip.

        A worker reports the jobs its threads completed with the claim that
        keeps them busy. On PostgreSQL that is one statement
        (``Queries.finish_and_claim_statement``), on SQLite one transaction;
        with a list of queues, or on MySQL, the separate calls. ``limit``
        0 only finishes. A job is finished only while ``worker_id`` holds
        it, as by ``finish(job_id, now, worker_id=worker_id)``.
        """
        with self._current_flush:
            return self._finish_and_claim(job_ids, now, queues, worker_id, limit)

    def _finish_and_claim(
        self,
        job_ids: Sequence[str],
        now: float,
        queues: Sequence[str] | None,
        worker_id: str,
        limit: int,
    ) -> list[JobRecord]:
        ids = list(job_ids)
        for job_id in ids:
            self._fresh.discard(job_id)
        current = self._take_current(ids)
        if queues is not None or self._hot.claim_all is None:
            for job_id, task_name in current.items():
                self._write_current(job_id, task_name)
            for job_id in ids:
                self.finish(job_id, now, worker_id=worker_id)
            return self.claim(queues, worker_id, now, limit) if limit else []
        hot, postgresql = self._hot, self._db.family == "postgresql"
        try:
            finished, rows = self._db.raw(
                lambda cursor: hot.finish_and_claim(
                    cursor, ids, worker_id, now, limit, current
                ),
                transaction=not postgresql,
                custom_plans=True,
                idempotent=False,
            )
        except Exception:
            with self._current_lock:  # for the next attempt; newer ones win
                self._current = {**current, **self._current}
            raise
        if finished is None:
            finished = self._finished_among(ids)
        for job_id in ids:
            # Keyed (its slot goes to the next), or no longer ours.
            if job_id not in finished:
                self._settle_finished(job_id, now, worker_id)
        return self._records(rows, now, worker_id)

    def _settle_finished(self, job_id: str, now: float, worker_id: str | None) -> bool:
        applied = self._db.transaction(
            lambda conn: self._q.settle(
                conn, job_id, "finished", now, worker_id=worker_id
            )
        )
        return settled(applied, job_id, worker_id, "finish")

    def _finished_among(self, job_ids: Sequence[str]) -> set[str]:
        jobs = self.tables.jobs
        query = select(jobs.c.id).where(
            jobs.c.id.in_(job_ids), jobs.c.status == "finished"
        )
        return set(self._db.statement(lambda conn: list(conn.scalars(query))))

    def fail(
        self, job_id: str, error: JobError, now: float, *, worker_id: str | None = None
    ) -> bool:
        self._fresh.discard(job_id)
        with self._current_flush:
            held, task_name = self._held_current(job_id)

            def work(conn: Connection) -> bool:
                applied = self._q.settle(
                    conn, job_id, "failed", now, error, worker_id=worker_id
                )
                # After the settle, which keeps a failed job's task: a late
                # worker's task must not land on a job another one runs.
                if applied and held:
                    self._q.set_current_task(conn, job_id, task_name)
                return applied

            applied = self._db.transaction(work)
        return settled(applied, job_id, worker_id, "fail")

    def reschedule(
        self, job_id: str, run_at: float, now: float, *, worker_id: str | None = None
    ) -> bool:
        self._fresh.discard(job_id)
        with self._current_flush:
            held, task_name = self._held_current(job_id)

            def work(conn: Connection) -> bool:
                applied = self._q.reschedule(
                    conn, job_id, run_at, now, worker_id=worker_id
                )
                if applied and held:  # after, as in fail
                    self._q.set_current_task(conn, job_id, task_name)
                return applied

            applied = self._db.transaction(work)
        return settled(applied, job_id, worker_id, "reschedule")

    def release_claimed(self, worker_id: str, now: float) -> list[str]:
        released = self._db.transaction(
            lambda conn: self._q.release_claimed(conn, worker_id, now)
        )
        self._fresh.difference_update(released)
        return released

    @property
    def waits_for_jobs(self) -> bool:
        """Whether :meth:`wait_for_jobs` can wait (not on MySQL, nor in memory)."""
        return self._db.family == "postgresql" or (
            self._db.family == "sqlite" and not self._db.is_memory
        )

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until a job may have become ready, or ``timeout`` seconds.

        True when woken early. PostgreSQL: a notification, which every
        transaction that makes a job ready sends (``Queries._insert_ready``).
        SQLite: any commit to the file (``Database.wait_for_change``).
        Where not :attr:`waits_for_jobs`, it returns False at once.
        """
        if self._db.family == "postgresql":
            return self._db.wait_for_notification(self._q.channel, timeout)
        if self.waits_for_jobs:
            return self._db.wait_for_change(timeout)
        return False

    def release_stale_claims(
        self, worker_id: str, running: Collection[str], now: float
    ) -> list[str]:
        """Return ``worker_id``'s claimed jobs that it is not running to ready.

        A worker calls this after the database failed it: a claim whose
        reply was lost, or a job it could not settle, is still claimed under
        its id, and nobody else would release it while the worker lives.
        Jobs in ``running`` are left alone.
        """
        keep = frozenset(running)
        released = self._db.transaction(
            lambda conn: self._q.release_claimed(conn, worker_id, now, keep=keep)
        )
        self._fresh.difference_update(released)
        return released

    def dispatch_due(self, now: float) -> int:
        return self._db.transaction(lambda conn: self._q.dispatch_due(conn, now))

    def next_due_time(self) -> float | None:
        scheduled = self.tables.scheduled
        due = self._db.statement(
            lambda conn: conn.execute(select(func.min(scheduled.c.run_at))).scalar()
        )
        return None if due is None else float(due)

    # -- lookup --

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._db.statement(lambda conn: self._q.get_job(conn, job_id))
        return None if row is None else _record(row)

    def sub_jobs(self, parent_id: str, task_name: str | None = None) -> list[JobRecord]:
        jobs = self.tables.jobs
        query = select(jobs).where(jobs.c.parent_id == parent_id)
        if task_name is not None:
            query = query.where(jobs.c.task_name == task_name)
        query = query.order_by(jobs.c.seq, jobs.c.id)
        rows = self._db.statement(lambda conn: conn.execute(query).all())
        return [_record(row._mapping) for row in rows]

    def sub_job_progress(self, parent_id: str, task_name: str) -> SubJobProgress:
        """One narrow read (status and id only) for a waiting parent's poll."""
        jobs = self.tables.jobs
        query = (
            select(jobs.c.id, jobs.c.status)
            .where(jobs.c.parent_id == parent_id, jobs.c.task_name == task_name)
            .order_by(jobs.c.each_index, jobs.c.seq)
        )
        rows = self._db.statement(lambda conn: conn.execute(query).all())
        failed = tuple(row.id for row in rows if row.status == "failed")
        pending = sum(1 for row in rows if row.status not in ("finished", "failed"))
        return SubJobProgress(len(rows), pending, failed)

    def jobs(self, queue: str | None = None) -> list[JobRecord]:
        jobs = self.tables.jobs
        query = select(jobs).order_by(jobs.c.seq, jobs.c.id)
        if queue is not None:
            query = query.where(jobs.c.queue == queue)
        rows = self._db.statement(lambda conn: conn.execute(query).all())
        return [_record(row._mapping) for row in rows]

    # -- progress --

    def load_state(self, job_id: str, tasks: Collection[str] | None = None) -> JobState:
        if tasks is None and job_id in self._fresh:
            self._fresh.discard(job_id)
            return JobState()
        rows: Sequence[Sequence[Any]]
        if tasks is None or len(tasks) <= MAX_PREPARED_TASKS:
            rows = self._db.raw(
                lambda cursor: self._hot.load_state(cursor, job_id, tasks)
            )
        else:
            rows = self._db.statement(
                lambda conn: self._q.load_state(conn, job_id, tasks)
            )
        state = JobState()
        wanted = None if tasks is None else set(tasks)
        for task, _, outcome, data in rows:
            if outcome is not None:
                state.tasks[task] = outcome
                if data is not None and (wanted is None or task in wanted):
                    state.sub_jobs[task] = json.loads(data)
        for task, index, outcome, data in rows:
            if outcome is not None:
                continue
            if task not in state.tasks:
                state.iterations.setdefault(task, set()).add(index)
            if data is not None:
                state.outputs.setdefault(task, {})[index] = json.loads(data)
        return state

    def record_iteration(
        self,
        job_id: str,
        task_name: str,
        each_index: int,
        output: dict[str, Any] | None,
        *,
        task_outcome: TaskOutcome | None = None,
    ) -> None:
        self._fresh.discard(job_id)
        data = None if output is None else _dumps(output)
        hot = self._hot
        if task_outcome is None:
            self._db.raw(
                lambda cursor: hot.iteration(
                    cursor, job_id, task_name, each_index, data
                ),
                progress=True,
            )
            return
        outcome: str = task_outcome

        def both(cursor: DBAPICursor) -> None:
            hot.last_iteration(cursor, job_id, task_name, each_index, data, outcome)

        if self._db.family == "postgresql":
            self._db.raw(both, progress=True)  # one statement there
        else:
            self._db.raw(both, transaction=True)

    def record_task(
        self,
        job_id: str,
        task_name: str,
        outcome: TaskOutcome,
        sub_job_ids: Sequence[str] = (),
    ) -> None:
        self._fresh.discard(job_id)
        data = _dumps(list(sub_job_ids)) if sub_job_ids else None
        self._db.raw(
            lambda cursor: self._hot.task(cursor, job_id, task_name, outcome, data),
            progress=True,
        )

    def set_current_task(self, job_id: str, task_name: str | None) -> None:
        if self._wake is not None:
            with self._current_lock:
                self._current[job_id] = task_name
            self._wake()
            return
        self._write_current(job_id, task_name)

    def _write_current(self, job_id: str, task_name: str | None) -> None:
        self._db.raw(
            lambda cursor: self._hot.set_current(cursor, job_id, task_name),
            progress=True,
        )

    def defer_current_tasks(self, wake: Callable[[], None]) -> None:
        """Hold ``set_current_task`` writes for the next ``finish_and_claim``.

        For worker processes: their loop sends every held current task with
        its next round trip (one statement for all instead of one per task
        run, which is a third of a small job's cost), and ``wake`` asks it
        for that round trip soon. A job's current task thus reaches the
        database a round trip later (milliseconds). Finishing a job drops
        its held task (a finished job has none); failing or rescheduling it
        writes the held task first, in the same transaction, and after any
        statement already on its way with an older one (``_current_flush``),
        so a failed job shows the task it failed in.
        """
        self._wake = wake

    def has_deferred_current_tasks(self) -> bool:
        with self._current_lock:
            return bool(self._current)

    def _take_current(self, finishing: Collection[str] = ()) -> dict[str, str | None]:
        """Every held current task, but those of jobs about to finish."""
        with self._current_lock:
            current, self._current = self._current, {}
        for job_id in finishing:
            current.pop(job_id, None)
        return current

    def _held_current(self, job_id: str) -> tuple[bool, str | None]:
        with self._current_lock:
            if job_id not in self._current:
                return False, None
            return True, self._current.pop(job_id)

    # -- semaphores --

    def semaphore_acquire(
        self, key: str, limit: int, ttl: float, holder: str, now: float
    ) -> bool:
        seq = self._sequence.take(now)
        return self._db.transaction(
            lambda conn: self._q.semaphore_acquire(
                conn, key, limit, now + ttl, holder, now, seq
            )
        )

    def semaphore_release(self, key: str, holder: str, now: float) -> bool:
        return self._db.statement(
            lambda conn: self._q.semaphore_release(conn, key, holder)
        )

    def semaphore_statistics(self, key: str, now: float) -> SemaphoreStatistics:
        found = self._db.transaction(
            lambda conn: self._q.semaphore_statistics(conn, key, now)
        )
        if found is None:
            return SemaphoreStatistics(key, 0, (), ())
        limit, leases = found
        return SemaphoreStatistics(
            key,
            limit,
            tuple(lease.holder for lease in leases),
            tuple(float(lease.expires_at) for lease in leases),
        )

    # -- queues --

    def pause(self, queue: str) -> None:
        self._db.statement(lambda conn: self._q.pause(conn, queue))

    def resume(self, queue: str) -> None:
        pauses = self.tables.pauses
        self._db.statement(
            lambda conn: conn.execute(delete(pauses).where(pauses.c.queue == queue))
        )

    def paused_queues(self) -> list[str]:
        pauses = self.tables.pauses
        names = self._db.statement(
            lambda conn: list(conn.scalars(select(pauses.c.queue)))
        )
        return sorted(names)

    def queue_size(self, queue: str) -> int:
        ready = self.tables.ready
        count = self._db.statement(
            lambda conn: conn.execute(
                select(func.count()).select_from(ready).where(ready.c.queue == queue)
            ).scalar_one()
        )
        return int(count)

    def queue_latency(self, queue: str, now: float) -> float:
        ready, jobs = self.tables.ready, self.tables.jobs
        oldest = self._db.statement(
            lambda conn: conn.execute(
                select(func.min(jobs.c.run_at))
                .select_from(ready.join(jobs, jobs.c.id == ready.c.job_id))
                .where(ready.c.queue == queue)
            ).scalar()
        )
        return 0.0 if oldest is None else max(0.0, now - float(oldest))

    def clear_queue(self, queue: str) -> int:
        """Fail every ready job of ``queue`` (a cleared job is never silently lost)."""
        now = self.clock.now()
        return self._db.transaction(lambda conn: self._q.clear_queue(conn, queue, now))

    # -- processes and recurring runs (what worker processes need) --

    def register_process(
        self, process_id: str, kind: str, hostname: str, pid: int, now: float
    ) -> None:
        """Record a live process (again, if it restarted under the same id)."""
        values = {
            "id": process_id,
            "kind": kind,
            "hostname": hostname,
            "pid": pid,
            "last_heartbeat_at": now,
            "metadata": "{}",
        }
        self._db.statement(lambda conn: self._q.register_process(conn, values))

    def heartbeat(self, process_id: str, now: float) -> None:
        """The process is alive at ``now``; an unknown id is ignored."""
        processes = self.tables.processes
        self._db.statement(
            lambda conn: conn.execute(
                update(processes)
                .where(processes.c.id == process_id)
                .values(last_heartbeat_at=now)
            )
        )

    def deregister_process(self, process_id: str, now: float) -> list[str]:
        """Forget a process and give its claimed jobs back to the queue.

        A process claims under its own id (``worker_id == process_id``).
        """
        processes = self.tables.processes

        def work(conn: Connection) -> list[str]:
            conn.execute(delete(processes).where(processes.c.id == process_id))
            return self._q.release_claimed(conn, process_id, now)

        return self._db.transaction(work)

    def prune_processes(self, alive_threshold: float, now: float) -> list[str]:
        """Deregister processes silent for ``alive_threshold``; their jobs return."""

        def work(conn: Connection) -> list[str]:
            released: list[str] = []
            for process_id in self._q.prune_processes(conn, alive_threshold, now):
                released += self._q.release_claimed(conn, process_id, now)
            return released

        return self._db.transaction(work)

    def processes(self) -> dict[str, dict[str, Any]]:
        """Every registered process: kind, hostname, pid, last heartbeat."""
        p = self.tables.processes
        rows = self._db.statement(
            lambda conn: conn.execute(
                select(p.c.id, p.c.kind, p.c.hostname, p.c.pid, p.c.last_heartbeat_at)
            ).all()
        )
        return {
            row.id: {
                "kind": row.kind,
                "hostname": row.hostname,
                "pid": row.pid,
                "last_heartbeat_at": row.last_heartbeat_at,
            }
            for row in rows
        }

    def enqueue_recurring(
        self, key: str, run_at: float, job: NewJob, now: float
    ) -> str | None:
        """Enqueue run (``key``, ``run_at``) once, however many schedulers ask.

        Returns the new job's id, or None when that run was already enqueued.
        """
        row = self._row(job, str(uuid.uuid4()), self._sequence.take(now), now)

        def work(conn: Connection) -> str | None:
            if not self._q.claim_recurring_run(conn, key, run_at, row["id"]):
                return None
            self._q.insert_jobs(conn, [dict(row)], now)
            return str(row["id"])

        return self._db.transaction(work)

    @property
    def clock(self) -> Clock:
        """The clock :meth:`clear_queue` stamps with (the port gives it no ``now``)."""
        if self._clock is not None:
            return self._clock
        from job_workflow._runtime import current_clock

        return current_clock()

    def execution_counts(self) -> Mapping[str, int]:
        """Rows per execution table: what the queue holds, for tests and tools."""
        t = self.tables
        tables = {
            "ready": t.ready,
            "claimed": t.claimed,
            "scheduled": t.scheduled,
            "blocked": t.blocked,
            "failed": t.failed,
        }

        def work(conn: Connection) -> dict[str, int]:
            return {
                name: int(
                    conn.execute(select(func.count()).select_from(table)).scalar_one()
                )
                for name, table in tables.items()
            }

        return self._db.transaction(work)
