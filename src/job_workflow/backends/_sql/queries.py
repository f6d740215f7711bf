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
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.expression import BindParameter, Executable

from job_workflow.backends._sql.database import Database, Family, Prepared
from job_workflow.backends._sql.schema import Tables
from job_workflow.core.ports import TERMINAL_STATUSES, JobError

__all__ = ["AnyRow", "HotPath", "JobRow", "Queries", "Sequencer"]

AnyRow: TypeAlias = Row[*tuple[Any, ...]]
# A job's columns by name (a RowMapping, or a dict built from one).
JobRow: TypeAlias = Mapping[Any, Any]

Values = dict[str, Any]

# Bound the size of one IN (...) list: SQLite and psycopg cap parameters.
CHUNK = 500
# Claims of at most this many jobs get a statement of their own (Queries._pick).
MAX_PREPARED_LIMIT = 32


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
        self._record_done = self._record_done_statement()
        # The channel workers LISTEN on: the ready table's name.
        self.channel = t.ready.name
        self._notify = (
            select(func.pg_notify(self.channel, "")) if family == "postgresql" else None
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

    def state_of_tasks(self, count: int) -> CompoundSelect[Any]:
        """:meth:`_state_query` for ``count`` tasks, named ``task_0``...: preparable.

        One equality per task, not ``task_name IN (...)``: PostgreSQL, with
        the statistics of a young table, may match only ``job_id`` in the
        index and filter the task names, reading every sibling iteration
        of a big map for each sub-job (0.5 ms at 1,500 siblings, growing).
        """
        tasks, iterations = self.t.job_tasks, self.t.job_iterations
        job_id = bindparam("job_id", type_=String)
        names = [bindparam(f"task_{n}", type_=String) for n in range(count)]
        # Sub-job ids of the wanted tasks only: a map's list is long.
        sub_job_ids: ColumnElement[Any] = null()
        if names:
            wanted = or_(*(tasks.c.task_name == name for name in names))
            sub_job_ids = case((wanted, tasks.c.sub_job_ids))
        parts = [
            select(
                tasks.c.task_name,
                cast(null(), Integer).label("each_index"),
                tasks.c.outcome,
                sub_job_ids.label("data"),
            ).where(tasks.c.job_id == job_id)
        ]
        for name in names:
            parts.append(
                select(
                    iterations.c.task_name,
                    iterations.c.each_index,
                    cast(null(), String(16)).label("outcome"),
                    iterations.c.output.label("data"),
                ).where(iterations.c.job_id == job_id, iterations.c.task_name == name)
            )
        return union_all(*parts)

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
            self._insert_ready(conn, self._ready_rows(ready, now))
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

    def _insert_ready(self, conn: Connection, rows: list[Values]) -> None:
        """Add ready executions; on PostgreSQL wake the listening workers.

        ``pg_notify`` is delivered when the transaction commits, so a worker
        waiting in :meth:`Database.wait_for_notification` claims at once
        instead of at its next poll.
        """
        conn.execute(insert(self.t.ready), rows)
        if self._notify is not None:
            conn.execute(self._notify)

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
            self._insert_ready(conn, self._ready_rows([candidate._mapping], now))
            conn.execute(
                update(t.jobs).where(t.jobs.c.id == candidate.id).values(status="ready")
            )
            active += 1
        self._set_active(conn, key, active)

    # -- claiming --

    def _pick(self, *, some_queues: bool, limit: int | None = None) -> Select[Any]:
        """SELECT the next ready executions, skipping rows others have locked.

        Parameters: ``limit`` (unless given here), ``queues`` (with
        ``some_queues``) and, on MySQL, ``paused``: a locking read there
        would also lock (and SKIP LOCKED skip) the rows of a pauses
        subquery, so they are read first.

        A ``limit`` written into the text matters on PostgreSQL: with
        ``LIMIT $1`` the planner cannot trust a generic plan and plans the
        whole claim again at every execution (about half of its cost); with
        ``LIMIT 1`` a prepared claim is planned once.
        """
        ready = self.t.ready
        count: ColumnElement[Any] = (
            bindparam("limit") if limit is None else literal_column(str(int(limit)))
        )
        pick = (
            select(ready.c.job_id, ready.c.seq)
            .order_by(ready.c.priority, ready.c.seq)
            .limit(count)
            .with_for_update(skip_locked=True)
        )
        if some_queues:
            pick = pick.where(ready.c.queue.in_(bindparam("queues", expanding=True)))
        if self.family == "mysql":
            return pick.where(ready.c.queue.not_in(bindparam("paused", expanding=True)))
        return pick.where(ready.c.queue.not_in(select(self.t.pauses.c.queue)))

    def _claim_in_one_statement(
        self, *, some_queues: bool, limit: int | None = None
    ) -> Update:
        """PostgreSQL: pick, move and mark in one statement (one round trip).

        WITH picked AS (SELECT job_id FROM ready ... FOR UPDATE SKIP LOCKED),
             taken AS (DELETE FROM ready WHERE job_id IN picked RETURNING job_id),
             noted AS (INSERT INTO claimed SELECT job_id, :worker_id, :now FROM taken)
        UPDATE jobs SET status = 'claimed', ... FROM taken RETURNING jobs.*
        """
        t = self.t
        picked = self._pick(some_queues=some_queues, limit=limit).cte("picked")
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

    def claim_statement(self, limit: int) -> Executable:
        """The claim of ``limit`` jobs of every queue, ``limit`` in its text."""
        if self.family == "postgresql":
            return self._claim_in_one_statement(some_queues=False, limit=limit)
        return self._claim_all

    def _finish_many(self) -> Update:
        """PostgreSQL: the fast finish of :meth:`_finish_statements` for many.

        WITH gone AS (DELETE FROM claimed WHERE job_id IN (SELECT id FROM jobs
                        WHERE id = ANY(:job_ids) AND no concurrency key)
                        AND worker_id = :worker_id
                      RETURNING job_id)
        UPDATE jobs SET status = 'finished', ... FROM gone RETURNING id

        Only the claims of ``worker_id``: a job released from a worker
        presumed dead and claimed by another is not this worker's to finish.

        Both tables are reached through the ids (primary keys), so even the
        generic plan PostgreSQL settles on for a prepared statement (with
        the statistics of a young table) stays a handful of index probes.
        """
        jobs, claimed = self.t.jobs, self.t.claimed
        job_ids = bindparam("job_ids", type_=postgresql.ARRAY(String))
        unkeyed = select(jobs.c.id).where(jobs.c.id == any_(job_ids), _unkeyed(jobs))
        gone = (
            delete(claimed)
            .where(
                claimed.c.job_id.in_(unkeyed),
                claimed.c.worker_id == bindparam("worker_id", type_=String),
            )
            .returning(claimed.c.job_id)
            .cte("gone")
        )
        return (
            update(jobs)
            .where(jobs.c.id == gone.c.job_id)
            .values(_FINISHED)
            .returning(jobs.c.id)
        )

    def _set_current_tasks(self) -> Update:
        """PostgreSQL: the current task of many claimed jobs, from two arrays.

        UPDATE jobs SET current_task = v.task
        FROM unnest(:current_ids, :current_tasks) AS v(id, task)
        WHERE jobs.id = v.id AND jobs.status = 'claimed'
          AND jobs.claimed_by = :worker_id

        Only the sender's own claims: a process presumed dead must not
        label the run of a job claimed again elsewhere.
        """
        jobs = self.t.jobs
        pairs = (
            func.unnest(
                bindparam("current_ids", type_=postgresql.ARRAY(String)),
                bindparam("current_tasks", type_=postgresql.ARRAY(String)),
            )
            .table_valued("id", "task")
            .render_derived(name="v")
        )
        return (
            update(jobs)
            .where(
                jobs.c.id == pairs.c.id,
                jobs.c.status == "claimed",
                jobs.c.claimed_by == bindparam("worker_id"),
            )
            .values(current_task=pairs.c.task)
            .returning(jobs.c.id)
        )

    def finish_many_statement(self) -> Update | None:
        """PostgreSQL: finish the claimed, unkeyed jobs among ``job_ids``.

        With the current tasks of :meth:`_set_current_tasks` (jobs not
        among them) as a CTE.
        """
        if self.family != "postgresql":
            return None
        return self._finish_many().add_cte(self._set_current_tasks().cte("current"))

    def finish_and_claim_statement(self, limit: int) -> Update | None:
        """PostgreSQL: finish jobs and claim the next ones, in one statement.

        The finish of :meth:`_finish_many` becomes one more CTE of the claim
        of :meth:`_claim_in_one_statement` (they touch different job rows: a
        claimed job is in no ready execution), and every claimed row also
        lists the jobs the finish settled (``finished``; the others need
        :meth:`settle`). A worker reports the jobs its threads completed
        with the claim that keeps them busy: one round trip, one commit.
        """
        if self.family != "postgresql":
            return None
        finished = self._finish_many().cte("finished")
        current = self._set_current_tasks().cte("current")
        settled = select(func.array_agg(finished.c.id)).scalar_subquery()
        claim = self._claim_in_one_statement(some_queues=False, limit=limit)
        return claim.add_cte(finished, current).returning(settled.label("finished"))

    def _finish_statements(self) -> None:
        t = self.t
        jobs, claimed = t.jobs, t.claimed
        job_id = bindparam("job_id", type_=String)
        unkeyed = _unkeyed(jobs)
        finished = _FINISHED
        if self.family == "postgresql":
            # WITH gone AS (DELETE FROM claimed WHERE job_id = :job_id AND
            #               worker_id = coalesce(:worker_id, worker_id) AND
            #               the job has no concurrency key RETURNING job_id)
            # UPDATE jobs SET status = 'finished', ... FROM gone
            gone = (
                delete(claimed)
                .where(claimed.c.job_id == job_id, _held_by(claimed.c.worker_id))
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
            .where(
                jobs.c.id == job_id,
                jobs.c.status == "claimed",
                _held_by(jobs.c.claimed_by),
                unkeyed,
            )
            .values(finished)
        )
        self._unclaim = delete(claimed).where(claimed.c.job_id == job_id)

    def settle(
        self,
        conn: Connection,
        job_id: str,
        status: str,
        now: float,
        error: JobError | None = None,
        worker_id: str | None = None,
    ) -> bool:
        """Finish or fail a job that is not finished yet; release its slot.

        With ``worker_id``, only a job that worker holds the claim of.
        Returns whether the job was settled.
        """
        t = self.t
        row = conn.execute(
            select(
                t.jobs.c.status,
                t.jobs.c.claimed_by,
                t.jobs.c.concurrency_key,
                t.jobs.c.concurrency_limit,
            )
            .where(t.jobs.c.id == job_id)
            .with_for_update()
        ).first()
        if row is None or row.status in TERMINAL_STATUSES:
            return False
        if worker_id is not None and not _holds(row, worker_id):
            return False
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(
                status=status,
                claimed_by=None,
                finished_at=now,
                error_class=None if error is None else error.error_class,
                error_message=None if error is None else error.message,
                # A finished job runs no task; a failed one keeps the task
                # it failed in.
                **({"current_task": None} if status == "finished" else {}),
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
        return True

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
        self,
        conn: Connection,
        job_id: str,
        run_at: float,
        now: float,
        worker_id: str | None = None,
    ) -> bool:
        """Claimed execution out, scheduled execution in: one transaction.

        With ``worker_id``, only a job that worker holds the claim of.
        Returns whether the job was rescheduled.
        """
        t = self.t
        row = conn.execute(
            select(t.jobs).where(t.jobs.c.id == job_id).with_for_update()
        ).first()
        if row is None or row.status != "claimed":
            return False
        if worker_id is not None and not _holds(row, worker_id):
            return False
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
        return True

    def release_claimed(
        self,
        conn: Connection,
        worker_id: str,
        now: float,
        *,
        keep: Collection[str] = (),
    ) -> list[str]:
        """Return a worker's claimed jobs, but those in ``keep``, to ready.

        They keep their concurrency slots.
        """
        t = self.t
        rows = conn.execute(
            select(t.jobs.c.id, t.jobs.c.queue, t.jobs.c.priority, t.jobs.c.seq)
            .join(t.claimed, t.claimed.c.job_id == t.jobs.c.id)
            .where(t.claimed.c.worker_id == worker_id)
            .order_by(t.jobs.c.seq, t.jobs.c.id)
            .with_for_update()
        ).all()
        rows = [row for row in rows if row.id not in keep]
        ids = [row.id for row in rows]
        for part in chunks(ids):
            conn.execute(delete(t.claimed).where(t.claimed.c.job_id.in_(part)))
            conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id.in_(part))
                .values(status="ready", claimed_by=None)
            )
        if rows:
            self._insert_ready(conn, self._ready_rows([r._mapping for r in rows], now))
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

    def _record_done_statement(self) -> Insert | None:
        """PostgreSQL: a task's last iteration and the task, in one statement.

        WITH recorded AS (INSERT INTO job_iterations ... ON CONFLICT DO UPDATE
                          SET output = coalesce(new, old) RETURNING job_id)
        INSERT INTO job_tasks ... ON CONFLICT DO UPDATE SET outcome = new
        """
        if self.family != "postgresql":
            return None
        iterations, tasks = self.t.job_iterations, self.t.job_tasks
        job_id = bindparam("p_job_id", type_=String)
        task_name = bindparam("p_task_name", type_=String)
        iteration = postgresql.insert(iterations).values(
            job_id=job_id,
            task_name=task_name,
            each_index=bindparam("p_each_index", type_=Integer),
            output=bindparam("p_output", type_=String),
        )
        recorded = (
            iteration.on_conflict_do_update(
                index_elements=["job_id", "task_name", "each_index"],
                set_={
                    "output": func.coalesce(
                        iteration.excluded.output, iterations.c.output
                    )
                },
            )
            .returning(iterations.c.job_id)
            .cte("recorded")
        )
        task = postgresql.insert(tasks).values(
            job_id=job_id,
            task_name=task_name,
            outcome=bindparam("p_outcome", type_=String),
            sub_job_ids=null(),
        )
        return task.on_conflict_do_update(
            index_elements=["job_id", "task_name"],
            set_={"outcome": task.excluded.outcome},
        ).add_cte(recorded)

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


class HotPath:
    """The statements a worker runs for every job, prepared once.

    The same Core statements as above (their locking explained there),
    compiled once and run on a DBAPI cursor (:meth:`Database.raw`), which
    costs a fraction of the CPU of ``Connection.execute``. Every method takes
    the cursor of a transaction or single statement the caller opened.
    ``claim_all`` is None on MySQL, whose claim reads the paused queues
    first (an ``IN`` list, which cannot be prepared).
    """

    def __init__(self, queries: Queries, db: Database) -> None:
        t, q = queries.t, queries
        self.family = q.family
        self.set_current_task = db.prepare(q._set_current_task)
        self.record_iteration = db.prepare(
            q._record_iteration, ["job_id", "task_name", "each_index", "output"]
        )
        self.record_task = db.prepare(
            q._record_task, ["job_id", "task_name", "outcome", "sub_job_ids"]
        )
        self.record_done = (
            None if q._record_done is None else db.prepare(q._record_done)
        )
        self.finish = db.prepare(q._finish_fast)
        self.unclaim = db.prepare(
            delete(t.claimed).where(t.claimed.c.job_id == bindparam("job_id"))
        )
        self._queries, self._db = q, db
        self.claim_all: Prepared | None = None
        if self.family != "mysql":
            self.claim_all = db.prepare(q._claim_all)
        # Claims with their limit in the text (see Queries._pick), per limit.
        self._claims: dict[int, Prepared] = {}
        self._finish_and_claims: dict[int, Prepared] = {}
        many = q.finish_many_statement()
        self.finish_many = None if many is None else db.prepare(many)
        self.state = db.prepare(q._load_state)
        self._states_of: dict[int, Prepared] = {}  # per number of tasks
        job_id = bindparam("job_id", type_=String)
        self.unready = db.prepare(delete(t.ready).where(t.ready.c.job_id == job_id))
        self.add_claimed = db.prepare(
            insert(t.claimed), ["job_id", "worker_id", "created_at"]
        )
        self.mark_claimed = db.prepare(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(
                status="claimed",
                claimed_by=bindparam("worker_id"),
                executions=t.jobs.c.executions + 1,
            )
        )

    def set_current(
        self, cursor: DBAPICursor, job_id: str, task_name: str | None
    ) -> None:
        self.set_current_task.run(cursor, {"job_id": job_id, "current": task_name})

    def iteration(
        self,
        cursor: DBAPICursor,
        job_id: str,
        task_name: str,
        each_index: int,
        output: str | None,
    ) -> None:
        values = {
            "job_id": job_id,
            "task_name": task_name,
            "each_index": each_index,
            "output": output,
        }
        self.record_iteration.run(cursor, values)

    def task(
        self,
        cursor: DBAPICursor,
        job_id: str,
        task_name: str,
        outcome: str,
        sub_job_ids: str | None,
    ) -> None:
        values = {
            "job_id": job_id,
            "task_name": task_name,
            "outcome": outcome,
            "sub_job_ids": sub_job_ids,
        }
        self.record_task.run(cursor, values)

    def last_iteration(
        self,
        cursor: DBAPICursor,
        job_id: str,
        task_name: str,
        each_index: int,
        output: str | None,
        outcome: str,
    ) -> None:
        """The iteration and its task: one statement on PostgreSQL, else two."""
        if self.record_done is None:
            self.iteration(cursor, job_id, task_name, each_index, output)
            self.task(cursor, job_id, task_name, outcome, None)
            return
        values = {
            "p_job_id": job_id,
            "p_task_name": task_name,
            "p_each_index": each_index,
            "p_output": output,
            "p_outcome": outcome,
        }
        self.record_done.run(cursor, values)

    def finish_claimed_unkeyed(
        self, cursor: DBAPICursor, job_id: str, now: float, worker_id: str | None
    ) -> bool:
        """Finish a claimed job without a concurrency key, held by ``worker_id``.

        ``worker_id`` None: whoever holds it. False when the job is not such
        a job: it needs :meth:`Queries.settle`, or nothing. One statement on
        PostgreSQL, two in the caller's transaction elsewhere.
        """
        values = {"job_id": job_id, "now": now, "worker_id": worker_id}
        if self.family == "postgresql":
            return self.finish.run(cursor, values).fetchone() is not None
        if self.finish.run(cursor, values).rowcount != 1:
            return False
        self.unclaim.run(cursor, values)
        return True

    def claim(
        self, cursor: DBAPICursor, worker_id: str, now: float, limit: int
    ) -> list[dict[str, Any]]:
        """See :meth:`Queries.claim` (every queue); a transaction but on PostgreSQL."""
        values = {"limit": limit, "worker_id": worker_id, "now": now}
        rows = _dicts(self._claim(limit).run(cursor, values))
        if self.family == "postgresql" or not rows:
            return rows
        for row in rows:
            self.unready.run(cursor, {"job_id": row["id"]})
            values = {"job_id": row["id"], "worker_id": worker_id, "created_at": now}
            self.add_claimed.run(cursor, values)
            self.mark_claimed.run(cursor, {"job_id": row["id"], "worker_id": worker_id})
            row.update(
                status="claimed", claimed_by=worker_id, executions=row["executions"] + 1
            )
        return rows

    def finish_and_claim(
        self,
        cursor: DBAPICursor,
        job_ids: Sequence[str],
        worker_id: str,
        now: float,
        limit: int,
        current: Mapping[str, str | None],
    ) -> tuple[set[str] | None, list[dict[str, Any]]]:
        """Finish ``job_ids`` the fast way and claim up to ``limit`` jobs.

        Only the jobs ``worker_id`` holds are finished (see
        :meth:`Queries._finish_many`).

        ``current`` sets the current task of other claimed jobs on the way.
        Returns the ids the fast finish settled (None: unknown, as nothing
        was claimed) and the claimed rows. One statement on PostgreSQL;
        elsewhere the steps, in the caller's transaction.
        """
        if self.family != "postgresql":
            for job_id, task_name in current.items():
                self.set_current(cursor, job_id, task_name)
            finished = {
                job_id
                for job_id in job_ids
                if self.finish_claimed_unkeyed(cursor, job_id, now, worker_id)
            }
            claimed = self.claim(cursor, worker_id, now, limit) if limit else []
            return finished, claimed
        values = {
            "job_ids": list(job_ids),
            "worker_id": worker_id,
            "now": now,
            "current_ids": list(current),
            "current_tasks": list(current.values()),
        }
        if not limit:
            assert self.finish_many is not None
            done = self.finish_many.run(cursor, values).fetchall()
            return {row[0] for row in done}, []
        rows = _dicts(self._finish_and_claim(limit).run(cursor, values))
        if not rows:
            return None, []
        return set(rows[0]["finished"] or ()), rows

    def load_state(
        self, cursor: DBAPICursor, job_id: str, tasks: Collection[str] | None
    ) -> list[tuple[Any, ...]]:
        """See :meth:`Queries.load_state`: (task, each_index, outcome, data)."""
        if tasks is None:
            return list(self.state.run(cursor, {"job_id": job_id}).fetchall())
        names = sorted(set(tasks))
        if len(names) not in self._states_of:
            statement = self._queries.state_of_tasks(len(names))
            self._states_of[len(names)] = self._db.prepare(statement)
        values: dict[str, Any] = {f"task_{n}": name for n, name in enumerate(names)}
        values["job_id"] = job_id
        return list(self._states_of[len(names)].run(cursor, values).fetchall())

    def _claim(self, limit: int) -> Prepared:
        assert self.claim_all is not None, "MySQL claims through Queries.claim"
        if self.family != "postgresql" or limit > MAX_PREPARED_LIMIT:
            return self.claim_all
        if limit not in self._claims:
            statement = self._queries.claim_statement(limit)
            self._claims[limit] = self._db.prepare(statement)
        return self._claims[limit]

    def _finish_and_claim(self, limit: int) -> Prepared:
        if limit not in self._finish_and_claims:
            statement = self._queries.finish_and_claim_statement(limit)
            assert statement is not None
            self._finish_and_claims[limit] = self._db.prepare(statement)
        return self._finish_and_claims[limit]


def _dicts(cursor: DBAPICursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _held_by(claimer: ColumnElement[Any]) -> ColumnElement[bool]:
    """The job's ``claimer`` column equals parameter ``worker_id``, if given.

    A NULL parameter matches any claimer: one statement serves the checked
    settle and the unchecked one, at the cost of a comparison on a row
    already found by its primary key.
    """
    worker_id = bindparam("worker_id", type_=String)
    return claimer == func.coalesce(worker_id, claimer)


def _holds(row: AnyRow, worker_id: str) -> bool:
    """Whether ``worker_id`` holds the claim of the job in ``row``."""
    return bool(row.status == "claimed" and row.claimed_by == worker_id)


def _unkeyed(jobs: Table) -> ColumnElement[bool]:
    """A job is limited only when it has both a concurrency key and a limit."""
    return or_(jobs.c.concurrency_key.is_(None), jobs.c.concurrency_limit.is_(None))


# What finishing sets on a job row (``now`` is a parameter).
_FINISHED: dict[str, Any] = {
    "status": "finished",
    "claimed_by": None,
    "current_task": None,
    "finished_at": bindparam("now", type_=Double),
}


def _error_json(error: JobError) -> str:
    return json.dumps({"error_class": error.error_class, "message": error.message})
