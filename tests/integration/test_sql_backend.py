"""The SQL backend beyond the port contract: bad input, races, processes.

- a URL that does not parse, names an unsupported database or a driver that
  is not installed is a ValueError; a database that does not answer is a
  ``DatabaseUnavailableError`` (a ConnectionError) naming host and port; both
  are one line and never show the password;
- concurrent claimers never get the same job (threads on every SQL backend,
  and two processes sharing one SQLite file);
- the schema can be created twice, and a missing one says how to create it;
- a semaphore holds under racing threads;
- deadlocks, serialisation failures and busy SQLite files are retried, other
  errors are not; a connection the server dropped is replaced.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from job_workflow.backends._sql.database import MAX_ATTEMPTS, Database
from job_workflow.backends.sql import (
    DatabaseUnavailableError,
    SchemaMissingError,
    SqlBackend,
)
from job_workflow.core.ports import NewJob

SQL_PARAMS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
MakeBackend = Callable[[str], SqlBackend]


T0 = 1_000_000.0
JOBS = 1000
THREADS = 4


def job(queue: str = "default") -> NewJob:
    return NewJob(workflow="integration.W", arguments={}, queue=queue)


# -- bad input --


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "cannot parse database URL"),
        ("oracle://scott:tiger@db/orcl", "unsupported database"),
        ("mysql+mysqldb://root:tiger@127.0.0.1/test", "is the driver installed"),
        ("nosuchdb://u:tiger@h/x", "unsupported database"),
        ("postgresql+nosuchdriver://u:tiger@h/x", "cannot use database URL"),
        ("", "non-empty"),
    ],
)
def test_a_url_that_cannot_be_used_is_a_value_error(url: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as caught:
        SqlBackend(url)
    message = str(caught.value)
    assert "\n" not in message
    assert "tiger" not in message


def test_a_broken_url_keeps_its_password_masked() -> None:
    with pytest.raises(ValueError, match="cannot parse") as caught:
        SqlBackend("postgresql+psycopg://user:tiger@host:notaport/db")
    assert "tiger" not in str(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres:tiger@127.0.0.1:1/test",
        "mysql+pymysql://root:tiger@127.0.0.1:1/test",
    ],
)
def test_an_unreachable_server_is_a_connection_error(url: str) -> None:
    backend = SqlBackend(url)  # connects lazily: nothing raised yet
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            backend.create_schema()
        with pytest.raises(ConnectionError):
            backend.claim(None, "w", T0)
    finally:
        backend.close()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "\n" not in message
    assert "tiger" not in message
    assert caught.value.url.endswith("@127.0.0.1:1/test")


def test_a_sqlite_file_that_cannot_be_opened_is_a_connection_error(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-dir" / "jobs.db"
    backend = SqlBackend(f"sqlite:///{missing}")
    with pytest.raises(DatabaseUnavailableError, match="no-such-dir"):
        backend.get_job("x")
    backend.close()


@pytest.mark.parametrize("prefix", ["", "1jw_", "jw-", "jw_; drop table x", "x" * 31])
def test_a_table_prefix_must_be_a_plain_identifier(prefix: str) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        SqlBackend("sqlite://", table_prefix=prefix)


def test_urls_without_a_driver_get_the_projects_drivers() -> None:
    assert SqlBackend("postgresql://u@h/db").dialect == "postgresql"
    assert SqlBackend("mysql://u@h/db").url.startswith("mysql+pymysql://")
    assert SqlBackend("mariadb://u@h/db").dialect == "mysql"
    assert SqlBackend("sqlite://").dialect == "sqlite"


# -- schema --


@pytest.mark.parametrize("kind", SQL_PARAMS)
def test_a_missing_schema_says_how_to_create_it(
    make_sql_backend: MakeBackend, kind: str
) -> None:
    url = make_sql_backend(kind).url
    if kind != "sqlite" and "***" in url:
        pytest.skip("the server URL has a password; the masked one cannot connect")
    backend = SqlBackend(url, table_prefix="jw_never_created_")
    try:
        with pytest.raises(SchemaMissingError, match="create_schema") as caught:
            backend.get_job("x")
    finally:
        backend.close()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", SQL_PARAMS)
def test_create_schema_is_idempotent(make_sql_backend: MakeBackend, kind: str) -> None:
    backend = make_sql_backend(kind)
    [job_id] = backend.enqueue([job()], T0)
    backend.create_schema()
    assert backend.get_job(job_id) is not None
    assert backend.dialect == kind


def test_an_in_memory_sqlite_database_is_shared_by_threads() -> None:
    backend = SqlBackend("sqlite://")
    backend.create_schema()
    ids = backend.enqueue([job() for _ in range(50)], T0)
    claimed = claim_concurrently(backend, threads=4)
    assert sorted(claimed) == sorted(ids)
    backend.close()


# -- races --


def claim_concurrently(backend: SqlBackend, threads: int) -> list[str]:
    """Every thread claims (1 to 3 at a time) until nothing is left."""
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def claimer(n: int) -> None:
        try:
            start.wait()
            while True:
                got = backend.claim(None, f"w{n}", T0, limit=1 + n % 3)
                if not got:
                    return
                with lock:
                    claimed.extend(record.id for record in got)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=claimer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    return claimed


@pytest.mark.parametrize("kind", SQL_PARAMS)
def test_concurrent_claimers_never_share_a_job(
    make_sql_backend: MakeBackend, kind: str
) -> None:
    backend = make_sql_backend(kind)
    ids = backend.enqueue([job() for _ in range(JOBS)], T0)
    claimed = claim_concurrently(backend, THREADS)
    assert len(claimed) == len(set(claimed)) == JOBS
    assert set(claimed) == set(ids)
    assert backend.execution_counts()["claimed"] == JOBS
    assert backend.execution_counts()["ready"] == 0


# -- finish_and_claim: only the worker's own jobs --


def limited(key: str) -> NewJob:
    return NewJob(
        workflow="integration.W",
        arguments={},
        concurrency_key=key,
        concurrency_limit=1,
    )


@pytest.mark.parametrize("kind", SQL_PARAMS)
@pytest.mark.parametrize("queues", [None, ["default"]], ids=["all", "named"])
@pytest.mark.parametrize(
    ("limit", "waiting"),
    [(0, 1), (1, 1), (1, 0)],
    ids=["finish-only", "claims-one", "claims-none"],
)
def test_finish_and_claim_leaves_the_jobs_another_worker_claimed_again(
    make_sql_backend: MakeBackend,
    kind: str,
    queues: list[str] | None,
    limit: int,
    waiting: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A's finished ids include two jobs B took over after A was presumed
    dead (one plain, one with a concurrency key, which finishes another
    way); only A's own two jobs are finished. The cases cover every path:
    one statement (PostgreSQL; with or without claimed rows to report the
    finished ids), one transaction (SQLite), and the separate calls."""
    backend = make_sql_backend(kind)
    lost = backend.enqueue([job(), limited("lost")], T0)
    assert len(backend.claim(None, "A", T0, limit=2)) == 2
    assert sorted(backend.release_claimed("A", T0 + 1)) == sorted(lost)
    assert len(backend.claim(None, "B", T0 + 1, limit=2)) == 2
    own = backend.enqueue([job(), limited("own")], T0 + 1)
    assert len(backend.claim(None, "A", T0 + 1, limit=2)) == 2
    backend.enqueue([job() for _ in range(waiting)], T0 + 2)
    with caplog.at_level(logging.INFO, logger="job_workflow"):
        claimed = backend.finish_and_claim(lost + own, T0 + 3, queues, "A", limit)
    assert len(claimed) == min(limit, waiting)
    for job_id in lost:
        record = backend.get_job(job_id)
        assert record is not None
        assert (record.status, record.claimed_by) == ("claimed", "B")
    for job_id in own:
        record = backend.get_job(job_id)
        assert record is not None
        assert (record.status, record.finished_at) == ("finished", T0 + 3)
    counts = backend.execution_counts()
    assert counts["claimed"] == len(lost) + len(claimed)
    stale = [
        getattr(r, "job_id", None)
        for r in caplog.records
        if getattr(r, "event", None) == "job.stale_settle"
    ]
    assert sorted(stale) == sorted(lost)


def _claim_in_a_process(url: str, prefix: str, worker: str, out: Any) -> None:
    backend = SqlBackend(url, table_prefix=prefix)
    ids: list[str] = []
    while True:
        got = backend.claim(None, worker, T0, limit=2)
        if not got:
            break
        ids.extend(record.id for record in got)
    backend.close()
    out.put(ids)


def test_two_processes_share_one_sqlite_file(make_sql_backend: MakeBackend) -> None:
    backend = make_sql_backend("sqlite")
    ids = backend.enqueue([job() for _ in range(400)], T0)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(
            target=_claim_in_a_process,
            args=(backend.url, backend.table_prefix, f"p{n}", results),
        )
        for n in range(2)
    ]
    for process in processes:
        process.start()
    claimed = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    together = claimed[0] + claimed[1]
    assert len(together) == len(set(together)) == len(ids)
    assert set(together) == set(ids)


@pytest.mark.parametrize("kind", SQL_PARAMS)
def test_a_semaphore_is_never_held_over_its_limit_by_racing_threads(
    make_sql_backend: MakeBackend, kind: str
) -> None:
    backend = make_sql_backend(kind)
    limit, threads, rounds = 2, 6, 15
    holding: set[str] = set()
    peak = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def contender(n: int) -> None:
        nonlocal peak
        holder = f"h{n}"
        try:
            for _ in range(rounds):
                while not backend.semaphore_acquire("api", limit, 60, holder, T0):
                    pass
                with lock:
                    holding.add(holder)
                    peak = max(peak, len(holding))
                    assert len(holding) <= limit
                with lock:
                    holding.discard(holder)
                assert backend.semaphore_release("api", holder, T0)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=contender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    assert peak <= limit
    assert backend.semaphore_statistics("api", T0).holders == ()


# -- retries --


class _Orig(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _db_error(message: str, sqlstate: str | None = None) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, _Orig(message, sqlstate))


@pytest.mark.parametrize(
    ("family", "orig", "transient"),
    [
        ("postgresql", _Orig("deadlock detected", "40P01"), True),
        ("postgresql", _Orig("could not serialize access", "40001"), True),
        ("postgresql", _Orig("duplicate key", "23505"), False),
        ("mysql", Exception(1213, "Deadlock found when trying to get lock"), True),
        ("mysql", Exception(1205, "Lock wait timeout exceeded"), True),
        ("mysql", Exception(1062, "Duplicate entry"), False),
        ("sqlite", Exception("database is locked"), True),
        ("sqlite", Exception("no such table: x"), False),
    ],
)
def test_which_database_errors_are_retried(
    family: str, orig: Exception, transient: bool
) -> None:
    url = {
        "postgresql": "postgresql+psycopg://u@h/db",
        "mysql": "mysql+pymysql://u@h/db",
        "sqlite": "sqlite://",
    }[family]
    database = Database(url)
    assert database.is_transient(DBAPIError("SELECT 1", {}, orig)) is transient


def test_a_transaction_is_retried_after_a_deadlock_and_not_after_other_errors() -> None:
    database = Database("sqlite://")
    calls: list[int] = []

    def deadlocks_once(conn: Connection) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise _db_error("database is locked")
        return int(conn.exec_driver_sql("SELECT 42").scalar_one())

    assert database.transaction(deadlocks_once) == 42
    assert len(calls) == 2

    def always_locked(conn: Connection) -> None:
        calls.append(1)
        raise _db_error("database is locked")

    calls.clear()
    with pytest.raises(DBAPIError):
        database.transaction(always_locked)
    assert len(calls) == MAX_ATTEMPTS

    def broken(conn: Connection) -> None:
        calls.append(1)
        raise _db_error("syntax error")

    calls.clear()
    with pytest.raises(DBAPIError, match="syntax error"):
        database.transaction(broken)
    assert len(calls) == 1
    database.dispose()


# -- lost connections --


def _server_side_id(backend: SqlBackend) -> int:
    query = (
        "SELECT pg_backend_pid()"
        if backend.dialect == "postgresql"
        else ("SELECT CONNECTION_ID()")
    )
    with backend._db.engine.connect() as conn:
        return int(conn.exec_driver_sql(query).scalar_one())


@pytest.mark.parametrize("kind", SQL_PARAMS[1:])
def test_a_connection_the_server_dropped_is_replaced(
    make_sql_backend: MakeBackend, kind: str
) -> None:
    backend = make_sql_backend(kind)
    [job_id] = backend.enqueue([job()], T0)
    if "***" in backend.url:
        pytest.skip("the server URL has a password; the masked one cannot connect")
    victim = _server_side_id(backend)  # the one pooled connection
    killer = SqlBackend(backend.url)
    kill = (
        f"SELECT pg_terminate_backend({victim})"
        if kind == "postgresql"
        else f"KILL {victim}"
    )
    with killer._db.engine.connect() as conn:
        conn.exec_driver_sql(kill)
    killer.close()
    record = backend.get_job(job_id)  # fails on the dead one, retries anew
    assert record is not None
    assert record.status == "ready"
    assert _server_side_id(backend) != victim


@pytest.mark.parametrize("kind", SQL_PARAMS)
def test_racing_schedulers_enqueue_a_recurring_run_once(
    make_sql_backend: MakeBackend, kind: str
) -> None:
    backend = make_sql_backend(kind)
    results: list[str | None] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS * 2)

    def scheduler() -> None:
        try:
            start.wait()
            results.append(backend.enqueue_recurring("daily", T0 + 60, job(), T0))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=scheduler) for _ in range(THREADS * 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    enqueued = [job_id for job_id in results if job_id is not None]
    assert len(results) == THREADS * 2
    assert len(enqueued) == 1
    assert [record.id for record in backend.jobs()] == enqueued
