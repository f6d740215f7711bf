"""The statements of the SQL backend, with their locking, in one place.

Every function here runs inside a transaction the caller opened (see
``database.Database``) and takes its connection. The rules that keep
concurrent workers correct are visible here:

- **Claim** selects ready executions of unpaused queues in (priority, seq)
  order ``FOR UPDATE SKIP LOCKED`` (PostgreSQL, MySQL 8, MariaDB 10.6+), so
  claimers never wait for each other nor take the same job; then it moves
  them to claimed executions and marks the jobs. On PostgreSQL all of that
  is one statement. SQLite ignores ``FOR UPDATE``: there the transaction
  holds the database's write lock (``BEGIN IMMEDIATE``).
- **Concurrency keys**: a job whose key is at its limit is parked in
  ``blocked_executions``. Whoever admits or releases a job of a key first
  locks the key's row in ``concurrency_keys`` (which counts its ready and
  running jobs), so the count and the blocked queue change together, and the
  next blocked job is released in the same transaction that finished or
  failed the previous one.
- **Semaphores** (throttles): an acquirer locks the key's row in
  ``semaphore_limits`` (the upsert that records the limit takes it), drops
  expired leases, counts the rest and adds its own.

Lock order, to keep deadlocks rare (they are retried when they happen):
execution rows, then job rows, then the concurrency key row.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Double,
    Insert,
    Integer,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.expression import BindParameter, Executable

from job_workflow.backends._sql.database import Family
from job_workflow.backends._sql.schema import Tables
from job_workflow.core.ports import TERMINAL_STATUSES, JobError

__all__ = ["AnyRow", "JobRow", "Queries", "Sequencer"]

AnyRow: TypeAlias = Row[*tuple[Any, ...]]
# A job's columns by name (a RowMapping, or a dict built from one).
JobRow: TypeAlias = Mapping[Any, Any]

Values = dict[str, Any]

# Bound the size of one IN (...) list: SQLite and psycopg cap parameters.
CHUNK = 500


class Sequencer:
    """Order without a database round trip: a hybrid logical clock.

    Each value is at least ``now`` in nanoseconds and larger than the last
    one this process gave out, so the jobs of one process keep their exact
    order and those of different processes interleave by time. It orders
    jobs (enqueue order) and executions (the order they became ready or
    blocked), never identifies anything, so equal values from two
    processes are harmless.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, now: float, count: int = 1) -> int:
        """Reserve ``count`` consecutive values; returns the first."""
        with self._lock:
            first = max(self._last + 1, int(max(now, 0.0) * 1_000_000) * 1000)
            self._last = first + count - 1
            return first


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def is_keyed(row: Mapping[str, Any] | AnyRow) -> bool:
    """A job is limited only when it has both a concurrency key and a limit."""
    values = row if isinstance(row, Mapping) else row._mapping
    return (
        values["concurrency_key"] is not None
        and values["concurrency_limit"] is not None
    )


class Queries:
    """The backend's statements for one set of tables on one database family."""

    def __init__(self, tables: Tables, family: Family, sequence: Sequencer) -> None:
        self.t = tables
        self.family = family
        self.sequence = sequence
        t = tables
        self._record_iteration = self._upsert(
            t.job_iterations,
            ["job_id", "task_name", "each_index"],
            coalesce=["output"],
        )
        self._record_task = self._upsert(
            t.job_tasks,
            ["job_id", "task_name"],
            replace=["outcome"],
            coalesce=["sub_job_ids"],
        )
        self._record_limit = self._upsert(
            t.semaphore_limits, ["key"], replace=["limit"]
        )
        self._touch_key = self._upsert(t.concurrency, ["key"], keep=["active"])
        self._pause = self._upsert(t.pauses, ["queue"], keep=["queue"])
        self._register_process = self._upsert(
            t.processes,
            ["id"],
            replace=["kind", "hostname", "pid", "last_heartbeat_at", "metadata"],
        )
        # SQLAlchemy keeps an INSERT's rowcount only when asked to.
        self._claim_recurring_run = self._insert_if_absent(
            t.recurring_executions, ["key", "run_at"]
        ).execution_options(preserve_rowcount=True)
        self._claim_all: Executable
        self._claim_some: Executable
        self._finish_fast: Executable
        self._claim_statements()
        self._finish_statements()
        jobs = t.jobs
        self._get_job = select(jobs).where(jobs.c.id == bindparam("job_id"))
        self._set_current_task = (
            update(jobs)
            .where(jobs.c.id == bindparam("job_id"))
            .values(current_task=bindparam("current"))
        )
        self._load_state = self._state_query(only_some_tasks=False)
        self._load_some_state = self._state_query(only_some_tasks=True)

    def _state_query(self, *, only_some_tasks: bool) -> CompoundSelect[Any]:
        """Finished tasks, then recorded iterations, of one job: one read.

        With ``only_some_tasks`` the iterations are limited to the expanding
        parameter ``tasks`` (a sub-job skips its thousands of siblings).
        """
        tasks, iterations = self.t.job_tasks, self.t.job_iterations
        iterations_query = select(
            iterations.c.task_name,
            iterations.c.each_index,
            cast(null(), String(16)).label("outcome"),
            iterations.c.output.label("data"),
        ).where(iterations.c.job_id == bindparam("job_id"))
        if only_some_tasks:
            iterations_query = iterations_query.where(
                iterations.c.task_name.in_(bindparam("tasks", expanding=True))
            )
        return union_all(
            select(
                tasks.c.task_name,
                cast(null(), Integer).label("each_index"),
                tasks.c.outcome,
                tasks.c.sub_job_ids.label("data"),
            ).where(tasks.c.job_id == bindparam("job_id")),
            iterations_query,
        )

    def _upsert(
        self,
        table: Table,
        keys: list[str],
        *,
        replace: Sequence[str] = (),
        coalesce: Sequence[str] = (),
        keep: Sequence[str] = (),
    ) -> Insert:
        """INSERT, or on a key conflict update the existing row in place.

        ``replace`` columns take the new value, ``coalesce`` columns take it
        unless it is NULL, ``keep`` columns are set to themselves (a no-op
        update that still locks the row, unlike DO NOTHING on PostgreSQL).
        """

        def assignments(new: Any) -> dict[str, ColumnElement[Any]]:
            values: dict[str, ColumnElement[Any]] = {}
            for name in replace:
                values[name] = new[name]
            for name in coalesce:
                values[name] = func.coalesce(new[name], table.c[name])
            for name in keep:
                values[name] = table.c[name]
            return values

        if self.family == "mysql":
            on_duplicate = mysql.insert(table)
            return on_duplicate.on_duplicate_key_update(
                assignments(on_duplicate.inserted)
            )
        on_conflict = (
            postgresql.insert(table)
            if self.family == "postgresql"
            else sqlite.insert(table)
        )
        return on_conflict.on_conflict_do_update(
            index_elements=keys, set_=assignments(on_conflict.excluded)
        )

    def _insert_if_absent(self, table: Table, keys: list[str]) -> Insert:
        """INSERT that silently inserts nothing on a unique-key conflict."""
        if self.family == "mysql":
            return mysql.insert(table).prefix_with("IGNORE")
        if self.family == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)

    # -- enqueueing --

    def insert_jobs(self, conn: Connection, rows: list[Values], now: float) -> None:
        """Insert new jobs with their executions; ``status`` says which.

        Rows marked ready that carry a concurrency key are admitted against
        the key's count first and become blocked when it is full.
        """
        self._admit(conn, [r for r in rows if r["status"] == "ready" and is_keyed(r)])
        conn.execute(insert(self.t.jobs), rows)
        self._add_executions(conn, rows, now)

    def _add_executions(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], now: float
    ) -> None:
        t = self.t
        by_status: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            by_status[row["status"]].append(row)
        if ready := by_status.get("ready"):
            conn.execute(insert(t.ready), self._ready_rows(ready, now))
        if scheduled := by_status.get("scheduled"):
            conn.execute(
                insert(t.scheduled),
                [
                    {
                        "job_id": r["id"],
                        "queue": r["queue"],
                        "priority": r["priority"],
                        "seq": r["seq"],
                        "run_at": r["run_at"],
                    }
                    for r in scheduled
                ],
            )
        if blocked := by_status.get("blocked"):
            # Released in the order they were blocked, like ready jobs.
            first = self.sequence.take(now, len(blocked))
            conn.execute(
                insert(t.blocked),
                [
                    {
                        "job_id": r["id"],
                        "concurrency_key": r["concurrency_key"],
                        "seq": first + n,
                        "created_at": now,
                    }
                    for n, r in enumerate(blocked)
                ],
            )
        if claimed := by_status.get("claimed"):
            conn.execute(
                insert(t.claimed),
                [
                    {"job_id": r["id"], "worker_id": r["claimed_by"], "created_at": now}
                    for r in claimed
                ],
            )

    def make_ready(self, conn: Connection, rows: Sequence[AnyRow], now: float) -> None:
        """Existing jobs (no execution row) become ready, or blocked if keyed."""
        values = [dict(row._mapping, status="ready") for row in rows]
        self._admit(conn, [v for v in values if is_keyed(v)])
        self._add_executions(conn, values, now)
        for status in ("ready", "blocked"):
            ids = [v["id"] for v in values if v["status"] == status]
            for part in chunks(ids):
                conn.execute(
                    update(self.t.jobs)
                    .where(self.t.jobs.c.id.in_(part))
                    .values(status=status)
                )

    def _ready_rows(
        self, jobs: Sequence[Mapping[Any, Any]], now: float
    ) -> list[Values]:
        """Ready executions for ``jobs``, queued behind every job already ready.

        ``seq`` is taken now, not copied from the job: the ready queue is in
        the order jobs became ready, so a parent that rescheduled itself
        queues behind the sub-jobs it waits for.
        """
        first = self.sequence.take(now, len(jobs))
        return [
            {
                "job_id": job["id"],
                "queue": job["queue"],
                "priority": job["priority"],
                "seq": first + n,
                "created_at": now,
            }
            for n, job in enumerate(jobs)
        ]

    # -- concurrency keys --

    def _lock_key(self, conn: Connection, key: str) -> int:
        """Lock the key's counter row (creating it) and return its count."""
        c = self.t.concurrency
        if self.family == "mysql":
            conn.execute(self._touch_key, {"key": key, "active": 0})
            return int(
                conn.execute(
                    select(c.c.active).where(c.c.key == key).with_for_update()
                ).scalar_one()
            )
        return int(
            conn.execute(
                self._touch_key.returning(c.c.active), {"key": key, "active": 0}
            ).scalar_one()
        )

    def _set_active(self, conn: Connection, key: str, active: int) -> None:
        c = self.t.concurrency
        conn.execute(update(c).where(c.c.key == key).values(active=active))

    def _admit(self, conn: Connection, rows: list[Values]) -> None:
        """Mark each keyed row ready while its key has room, else blocked."""
        by_key: dict[str, list[Values]] = defaultdict(list)
        for row in rows:
            by_key[row["concurrency_key"]].append(row)
        for key in sorted(by_key):
            active = self._lock_key(conn, key)
            for row in by_key[key]:
                if active < row["concurrency_limit"]:
                    row["status"] = "ready"
                    active += 1
                else:
                    row["status"] = "blocked"
            self._set_active(conn, key, active)

    def release_slot(self, conn: Connection, key: str, now: float) -> None:
        """A job of ``key`` stopped running: admit the oldest blocked one."""
        t = self.t
        active = max(0, self._lock_key(conn, key) - 1)
        candidate = conn.execute(
            select(
                t.jobs.c.id,
                t.jobs.c.queue,
                t.jobs.c.priority,
                t.jobs.c.seq,
                t.jobs.c.concurrency_limit,
            )
            .join(t.blocked, t.blocked.c.job_id == t.jobs.c.id)
            .where(t.blocked.c.concurrency_key == key)
            .order_by(t.blocked.c.seq)
            .limit(1)
            .with_for_update()
        ).first()
        if candidate is not None and active < candidate.concurrency_limit:
            conn.execute(delete(t.blocked).where(t.blocked.c.job_id == candidate.id))
            conn.execute(insert(t.ready), self._ready_rows([candidate._mapping], now))
            conn.execute(
                update(t.jobs).where(t.jobs.c.id == candidate.id).values(status="ready")
            )
            active += 1
        self._set_active(conn, key, active)

    # -- claiming --

    def _pick(self, *, some_queues: bool) -> Select[Any]:
        """SELECT the next ready executions, skipping rows others have locked.

        Parameters: ``limit``, ``queues`` (with ``some_queues``) and, on
        MySQL, ``paused``: a locking read there would also lock (and SKIP
        LOCKED skip) the rows of a pauses subquery, so they are read first.
        """
        ready = self.t.ready
        pick = (
            select(ready.c.job_id, ready.c.seq)
            .order_by(ready.c.priority, ready.c.seq)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
        if some_queues:
            pick = pick.where(ready.c.queue.in_(bindparam("queues", expanding=True)))
        if self.family == "mysql":
            return pick.where(ready.c.queue.not_in(bindparam("paused", expanding=True)))
        return pick.where(ready.c.queue.not_in(select(self.t.pauses.c.queue)))

    def _claim_in_one_statement(self, *, some_queues: bool) -> Update:
        """PostgreSQL: pick, move and mark in one statement (one round trip).

        WITH picked AS (SELECT job_id FROM ready ... FOR UPDATE SKIP LOCKED),
             taken AS (DELETE FROM ready WHERE job_id IN picked RETURNING job_id),
             noted AS (INSERT INTO claimed SELECT job_id, :worker_id, :now FROM taken)
        UPDATE jobs SET status = 'claimed', ... FROM taken RETURNING jobs.*
        """
        t = self.t
        picked = self._pick(some_queues=some_queues).cte("picked")
        taken = (
            delete(t.ready)
            .where(t.ready.c.job_id.in_(select(picked.c.job_id)))
            .returning(t.ready.c.job_id, t.ready.c.seq)
            .cte("taken")
        )
        noted = (
            insert(t.claimed)
            .from_select(
                ["job_id", "worker_id", "created_at"],
                select(
                    taken.c.job_id,
                    bindparam("worker_id", type_=String),
                    bindparam("now", type_=Double),
                ),
            )
            .returning(t.claimed.c.job_id)
            .cte("noted")
        )
        return (
            update(t.jobs)
            .where(t.jobs.c.id == taken.c.job_id)
            .values(
                status="claimed",
                claimed_by=bindparam("worker_id", type_=String),
                executions=t.jobs.c.executions + 1,
            )
            .returning(*t.jobs.c, taken.c.seq.label("ready_seq"))
            .add_cte(noted)
        )

    def _claim_statements(self) -> None:
        t = self.t
        if self.family == "postgresql":
            self._claim_all = self._claim_in_one_statement(some_queues=False)
            self._claim_some = self._claim_in_one_statement(some_queues=True)
            return
        # Elsewhere: lock the ready rows with their jobs (read in the same
        # round trip), then move and mark them.
        for some_queues in (False, True):
            picked = self._pick(some_queues=some_queues).subquery("picked")
            statement = select(t.jobs, picked.c.seq.label("ready_seq")).join(
                picked, picked.c.job_id == t.jobs.c.id
            )
            if some_queues:
                self._claim_some = statement
            else:
                self._claim_all = statement
        ids: BindParameter[Any] = bindparam("ids", expanding=True)
        self._unready = delete(t.ready).where(t.ready.c.job_id.in_(ids))
        self._mark_claimed = (
            update(t.jobs)
            .where(t.jobs.c.id.in_(ids))
            .values(
                status="claimed",
                claimed_by=bindparam("worker_id"),
                executions=t.jobs.c.executions + 1,
            )
        )

    def claim(
        self,
        conn: Connection,
        queues: Sequence[str] | None,
        worker_id: str,
        now: float,
        limit: int,
    ) -> list[JobRow]:
        """Claim up to ``limit`` ready jobs; returns the claimed jobs' rows.

        Each row also has ``ready_seq``, its place in the ready queue, to
        return them in claim order.
        """
        params: dict[str, Any] = {"limit": limit, "worker_id": worker_id, "now": now}
        statement = self._claim_all if queues is None else self._claim_some
        if queues is not None:
            params["queues"] = list(queues)
        if self.family == "postgresql":
            return [row._mapping for row in conn.execute(statement, params)]
        if self.family == "mysql":
            params["paused"] = list(conn.scalars(select(self.t.pauses.c.queue)))
        rows = conn.execute(statement, params).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        conn.execute(self._unready, {"ids": ids})
        conn.execute(
            insert(self.t.claimed),
            [{"job_id": i, "worker_id": worker_id, "created_at": now} for i in ids],
        )
        conn.execute(self._mark_claimed, {"ids": ids, "worker_id": worker_id})
        return [
            dict(
                row._mapping,
                status="claimed",
                claimed_by=worker_id,
                executions=row.executions + 1,
            )
            for row in rows
        ]

    # -- settling --

    def _finish_statements(self) -> None:
        t = self.t
        jobs, claimed = t.jobs, t.claimed
        job_id = bindparam("job_id", type_=String)
        unkeyed = or_(
            jobs.c.concurrency_key.is_(None), jobs.c.concurrency_limit.is_(None)
        )
        finished = {
            "status": "finished",
            "claimed_by": None,
            "finished_at": bindparam("now", type_=Double),
        }
        if self.family == "postgresql":
            # WITH gone AS (DELETE FROM claimed WHERE job_id = :job_id AND
            #               the job has no concurrency key RETURNING job_id)
            # UPDATE jobs SET status = 'finished', ... FROM gone
            gone = (
                delete(claimed)
                .where(claimed.c.job_id == job_id)
                .where(select(jobs.c.id).where(jobs.c.id == job_id, unkeyed).exists())
                .returning(claimed.c.job_id)
                .cte("gone")
            )
            self._finish_fast = (
                update(jobs)
                .where(jobs.c.id == gone.c.job_id)
                .values(finished)
                .returning(jobs.c.id)
            )
            return
        self._finish_fast = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == "claimed", unkeyed)
            .values(finished)
        )
        self._unclaim = delete(claimed).where(claimed.c.job_id == job_id)

    def finish_claimed_unkeyed(self, conn: Connection, job_id: str, now: float) -> bool:
        """Finish the common case: a claimed job without a concurrency key.

        One statement on PostgreSQL (run it in autocommit), two elsewhere.
        False means the job is in some other state: use :meth:`settle`.
        """
        params = {"job_id": job_id, "now": now}
        if self.family == "postgresql":
            return conn.execute(self._finish_fast, params).first() is not None
        if conn.execute(self._finish_fast, params).rowcount != 1:
            return False
        conn.execute(self._unclaim, params)
        return True

    def settle(
        self,
        conn: Connection,
        job_id: str,
        status: str,
        now: float,
        error: JobError | None = None,
    ) -> None:
        """Finish or fail a job that is not finished yet; release its slot."""
        t = self.t
        row = conn.execute(
            select(
                t.jobs.c.status, t.jobs.c.concurrency_key, t.jobs.c.concurrency_limit
            )
            .where(t.jobs.c.id == job_id)
            .with_for_update()
        ).first()
        if row is None or row.status in TERMINAL_STATUSES:
            return
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(
                status=status,
                claimed_by=None,
                finished_at=now,
                error_class=None if error is None else error.error_class,
                error_message=None if error is None else error.message,
            )
        )
        self._drop_execution(conn, job_id, row.status)
        if error is not None:
            conn.execute(
                insert(t.failed),
                [{"job_id": job_id, "error": _error_json(error), "created_at": now}],
            )
        if row.status in ("claimed", "ready") and is_keyed(row):
            self.release_slot(conn, row.concurrency_key, now)

    def _drop_execution(self, conn: Connection, job_id: str, status: str) -> None:
        table = {
            "ready": self.t.ready,
            "claimed": self.t.claimed,
            "scheduled": self.t.scheduled,
            "blocked": self.t.blocked,
        }.get(status)
        if table is not None:
            conn.execute(delete(table).where(table.c.job_id == job_id))

    def reschedule(
        self, conn: Connection, job_id: str, run_at: float, now: float
    ) -> None:
        """Claimed execution out, scheduled execution in: one transaction."""
        t = self.t
        row = conn.execute(
            select(t.jobs).where(t.jobs.c.id == job_id).with_for_update()
        ).first()
        if row is None or row.status != "claimed":
            return
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(status="scheduled", claimed_by=None, run_at=run_at)
        )
        conn.execute(delete(t.claimed).where(t.claimed.c.job_id == job_id))
        conn.execute(
            insert(t.scheduled),
            [
                {
                    "job_id": job_id,
                    "queue": row.queue,
                    "priority": row.priority,
                    "seq": row.seq,
                    "run_at": run_at,
                }
            ],
        )
        if is_keyed(row):
            # It waits elsewhere meanwhile; it takes a slot again when due.
            self.release_slot(conn, row.concurrency_key, now)

    def release_claimed(
        self, conn: Connection, worker_id: str, now: float
    ) -> list[str]:
        """Return a worker's claimed jobs to ready (they keep their slots)."""
        t = self.t
        rows = conn.execute(
            select(t.jobs.c.id, t.jobs.c.queue, t.jobs.c.priority, t.jobs.c.seq)
            .join(t.claimed, t.claimed.c.job_id == t.jobs.c.id)
            .where(t.claimed.c.worker_id == worker_id)
            .order_by(t.jobs.c.seq, t.jobs.c.id)
            .with_for_update()
        ).all()
        ids = [row.id for row in rows]
        for part in chunks(ids):
            conn.execute(delete(t.claimed).where(t.claimed.c.job_id.in_(part)))
            conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id.in_(part))
                .values(status="ready", claimed_by=None)
            )
        if rows:
            conn.execute(
                insert(t.ready), self._ready_rows([r._mapping for r in rows], now)
            )
        return ids

    def dispatch_due(self, conn: Connection, now: float) -> int:
        """Due scheduled jobs become ready (or blocked); expired leases go."""
        t = self.t
        due = conn.execute(
            select(
                t.jobs.c.id,
                t.jobs.c.queue,
                t.jobs.c.priority,
                t.jobs.c.seq,
                t.jobs.c.concurrency_key,
                t.jobs.c.concurrency_limit,
            )
            .join(t.scheduled, t.scheduled.c.job_id == t.jobs.c.id)
            .where(t.scheduled.c.run_at <= now)
            .order_by(t.scheduled.c.run_at, t.scheduled.c.seq)
            .with_for_update(skip_locked=True)
        ).all()
        for part in chunks([row.id for row in due]):
            conn.execute(delete(t.scheduled).where(t.scheduled.c.job_id.in_(part)))
        if due:
            self.make_ready(conn, due, now)
        conn.execute(delete(t.semaphores).where(t.semaphores.c.expires_at <= now))
        return len(due)

    def clear_queue(self, conn: Connection, queue: str, now: float) -> int:
        """Fail every waiting (ready or blocked) job of ``queue``: QueueCleared.

        Blocked jobs go too, or they would become ready as the cleared jobs
        free their concurrency slots; the freed slots may admit blocked jobs
        of other queues.
        """
        t = self.t
        columns = (t.jobs.c.id, t.jobs.c.concurrency_key, t.jobs.c.concurrency_limit)
        ready = conn.execute(
            select(*columns)
            .join(t.ready, t.ready.c.job_id == t.jobs.c.id)
            .where(t.ready.c.queue == queue)
            .with_for_update()
        ).all()
        blocked = conn.execute(
            select(*columns)
            .join(t.blocked, t.blocked.c.job_id == t.jobs.c.id)
            .where(t.jobs.c.queue == queue)
            .with_for_update()
        ).all()
        error = JobError("QueueCleared", f"queue {queue!r} was cleared")
        for table, rows in ((t.ready, ready), (t.blocked, blocked)):
            for part in chunks([row.id for row in rows]):
                conn.execute(delete(table).where(table.c.job_id.in_(part)))
                self._mark_failed(conn, part, error, now)
        for row in ready:
            if is_keyed(row):
                self.release_slot(conn, row.concurrency_key, now)
        return len(ready) + len(blocked)

    def _mark_failed(
        self, conn: Connection, ids: Sequence[str], error: JobError, now: float
    ) -> None:
        t = self.t
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id.in_(ids))
            .values(
                status="failed",
                claimed_by=None,
                finished_at=now,
                error_class=error.error_class,
                error_message=error.message,
            )
        )
        payload = _error_json(error)
        conn.execute(
            insert(t.failed),
            [{"job_id": i, "error": payload, "created_at": now} for i in ids],
        )

    # -- progress --

    def get_job(self, conn: Connection, job_id: str) -> JobRow | None:
        row = conn.execute(self._get_job, {"job_id": job_id}).first()
        return None if row is None else row._mapping

    def set_current_task(
        self, conn: Connection, job_id: str, task_name: str | None
    ) -> None:
        conn.execute(self._set_current_task, {"job_id": job_id, "current": task_name})

    def load_state(
        self, conn: Connection, job_id: str, tasks: Collection[str] | None
    ) -> list[AnyRow]:
        """Finished tasks (outcome set) and recorded iterations, in one read."""
        if tasks is None:
            return list(conn.execute(self._load_state, {"job_id": job_id}))
        return list(
            conn.execute(
                self._load_some_state, {"job_id": job_id, "tasks": list(tasks)}
            )
        )

    def record_iteration(
        self,
        conn: Connection,
        job_id: str,
        task_name: str,
        each_index: int,
        output: str | None,
    ) -> None:
        conn.execute(
            self._record_iteration,
            {
                "job_id": job_id,
                "task_name": task_name,
                "each_index": each_index,
                "output": output,
            },
        )

    def record_task(
        self,
        conn: Connection,
        job_id: str,
        task_name: str,
        outcome: str,
        sub_job_ids: str | None,
    ) -> None:
        conn.execute(
            self._record_task,
            {
                "job_id": job_id,
                "task_name": task_name,
                "outcome": outcome,
                "sub_job_ids": sub_job_ids,
            },
        )

    # -- semaphores --

    def semaphore_acquire(
        self,
        conn: Connection,
        key: str,
        limit: int,
        expires_at: float,
        holder: str,
        now: float,
        seq: int,
    ) -> bool:
        """Take or renew ``holder``'s lease when the key has room."""
        s = self.t.semaphores
        conn.execute(self._record_limit, {"key": key, "limit": limit})
        self._expire(conn, key, now)
        holders = set(conn.scalars(select(s.c.holder).where(s.c.key == key)))
        if holder in holders:
            conn.execute(
                update(s)
                .where(s.c.key == key, s.c.holder == holder)
                .values(expires_at=expires_at)
            )
            return True
        if len(holders) >= limit:
            return False
        conn.execute(
            insert(s),
            [{"key": key, "holder": holder, "expires_at": expires_at, "seq": seq}],
        )
        return True

    def _expire(self, conn: Connection, key: str, now: float) -> None:
        s = self.t.semaphores
        conn.execute(delete(s).where(s.c.key == key, s.c.expires_at <= now))

    def semaphore_release(self, conn: Connection, key: str, holder: str) -> bool:
        s = self.t.semaphores
        result = conn.execute(
            delete(s).where(and_(s.c.key == key, s.c.holder == holder))
        )
        return result.rowcount > 0

    def semaphore_statistics(
        self, conn: Connection, key: str, now: float
    ) -> tuple[int, list[AnyRow]] | None:
        """The key's limit and live leases (oldest first); None if unknown."""
        s, limits = self.t.semaphores, self.t.semaphore_limits
        limit = conn.execute(
            select(limits.c.limit).where(limits.c.key == key)
        ).scalar_one_or_none()
        if limit is None:
            return None
        self._expire(conn, key, now)
        leases = conn.execute(
            select(s.c.holder, s.c.expires_at)
            .where(s.c.key == key)
            .order_by(s.c.seq, s.c.holder)
        ).all()
        return int(limit), list(leases)

    # -- queues --

    def pause(self, conn: Connection, queue: str) -> None:
        conn.execute(self._pause, {"queue": queue})

    # -- processes and recurring runs --

    def register_process(self, conn: Connection, values: Values) -> None:
        conn.execute(self._register_process, values)

    def prune_processes(
        self, conn: Connection, alive_threshold: float, now: float
    ) -> list[str]:
        """Delete processes silent for longer than the threshold; their ids.

        SKIP LOCKED: when two supervisors prune at once, each dead process is
        handled (and its jobs released) by one of them.
        """
        p = self.t.processes
        silent = conn.scalars(
            select(p.c.id)
            .where(now - p.c.last_heartbeat_at > alive_threshold)
            .order_by(p.c.last_heartbeat_at, p.c.id)
            .with_for_update(skip_locked=True)
        ).all()
        if silent:
            conn.execute(delete(p).where(p.c.id.in_(silent)))
        return list(silent)

    def claim_recurring_run(
        self, conn: Connection, key: str, run_at: float, job_id: str
    ) -> bool:
        """Record run (key, run_at) as enqueued; False if someone already did.

        The unique (key, run_at) index decides: a concurrent second insert
        waits for the first to commit and then inserts nothing.
        """
        result = conn.execute(
            self._claim_recurring_run, {"job_id": job_id, "key": key, "run_at": run_at}
        )
        return result.rowcount == 1


def _error_json(error: JobError) -> str:
    return json.dumps({"error_class": error.error_class, "message": error.message})
