"""The engine behind the SQL backend: URL checks, connections, retries.

Three databases, three sets of habits, one place that knows them:

- **SQLite** has no row locks. Every write transaction starts with
  ``BEGIN IMMEDIATE`` (it takes the database's write lock up front, so two
  writers never deadlock upgrading a read lock), the journal is WAL (readers
  never wait for the writer) and a busy timeout makes a second process wait
  for the lock instead of failing. pysqlite's own transaction handling is
  switched off (``isolation_level = None``) so that SQLAlchemy's ``begin``
  event decides what ``BEGIN`` says; this is the pattern SQLAlchemy documents
  for pysqlite.
- **PostgreSQL** runs psycopg in autocommit and opens transactions with an
  explicit ``BEGIN`` the same way, so a statement that stands alone costs
  one round trip instead of three (``BEGIN``, statement, ``COMMIT``).
- **MySQL/MariaDB** runs at READ COMMITTED: REPEATABLE READ's gap locks turn
  concurrent claims into deadlocks.

:meth:`Database.transaction` runs a function in one transaction and retries
it (a bounded number of times) when the database reports a deadlock, a
serialisation failure, a lock timeout, a busy SQLite file or a dropped
connection, which is safe because the failed attempt was rolled back. A
failure at ``COMMIT`` is never retried: the commit may have happened.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from job_workflow.core.ports import BackendUnavailableError

__all__ = [
    "Database",
    "DatabaseUnavailableError",
    "Family",
    "Prepared",
    "SchemaMissingError",
]

T = TypeVar("T")
Family = Literal["sqlite", "postgresql", "mysql"]

MAX_ATTEMPTS = 6
SQLITE_BUSY_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10
# How often a waiting worker looks whether a SQLite file changed (seconds).
SQLITE_CHANGE_POLL = 0.01

# Drivers this project installs (the extras); a URL without a driver gets one.
_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "sqlite": "sqlite+pysqlite",
}
_FAMILIES: dict[str, Family] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
# SQLSTATEs (PostgreSQL) and error numbers (MySQL) worth another attempt.
_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_RETRY_MYSQL_CODES = frozenset({1205, 1213})
_CREDENTIALS = re.compile(r"(://[^:/@]*):[^@/]*@")

# Execution option read by the ``begin`` listener: the statement that opens
# a transaction ("" for none: a single statement commits on its own).
_BEGIN = "job_workflow_begin"


class DatabaseUnavailableError(BackendUnavailableError):
    """The database cannot be reached (down, refused, unknown host, bad file).

    ``url`` is the database URL with its password masked. A worker can catch
    this (it is a ``ConnectionError``, and the port's
    ``BackendUnavailableError``) and try again later.
    """

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class SchemaMissingError(RuntimeError):
    """The database answers but has no job-workflow tables (for this prefix)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also for broken URLs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _CREDENTIALS.sub(r"\1:***@", url)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement compiled once, sent to the driver as text (the hot path).

    ``Connection.execute`` builds a cache key and an execution context on
    every call: a few hundred microseconds of CPU on a small machine, more
    than the database spends on a primary-key update. The few statements a
    worker runs for every job are compiled here once, from the same Core
    statements as everything else, and :meth:`Database.raw` runs them on the
    DBAPI cursor. ``order`` is the parameters' order for positional drivers
    (SQLite's ``?``), None for named ones; ``constants`` are the values the
    statement carries itself (``status='finished'``).
    """

    sql: str
    order: tuple[str, ...] | None
    constants: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    def bind(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        """The driver's parameters for ``values`` (the statement's own added)."""
        merged = {**self.constants, **values}
        for name, process in self.processors.items():
            merged[name] = process(merged[name])
        if self.order is None:
            return merged
        return tuple(merged[name] for name in self.order)

    def run(self, cursor: DBAPICursor, values: Mapping[str, Any]) -> DBAPICursor:
        cursor.execute(self.sql, self.bind(values))
        return cursor


class Database:
    """One engine, its dialect family, and transactions with retries."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = self._parse(url)
        self.masked_url = self.url.render_as_string(hide_password=True)
        self.family = self._family(self.url)
        self.is_memory = self.family == "sqlite" and self.url.database in (
            None,
            "",
            ":memory:",
        )
        self.engine = self._create_engine(echo)
        _forget_pool_after_fork(self.engine)
        self._single = self._single_statement_engine()
        self._progress = self._progress_engine(echo)
        self._custom_plans = self._custom_plans_engine(echo)
        self._listener: Any = None  # the LISTEN connection (PostgreSQL)
        self._data_version: int | None = None  # last seen (SQLite)
        # An in-memory SQLite database lives in one connection that every
        # thread shares; a lock keeps their transactions apart.
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if self.is_memory else nullcontext()
        )

    # -- setting up --

    @staticmethod
    def _parse(text: str) -> URL:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"database URL must be a non-empty string, got {text!r}")
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):
            raise ValueError(
                f"cannot parse database URL {mask(text)!r}; expected something like "
                "sqlite:///jobs.db or postgresql+psycopg://user@host/db"
            ) from None
        default = _DEFAULT_DRIVERS.get(url.drivername)
        return url.set(drivername=default) if default else url

    def _family(self, url: URL) -> Family:
        family = _FAMILIES.get(url.get_backend_name())
        if family is None:
            raise ValueError(
                f"unsupported database in URL {self.masked_url!r}: the SQL backend "
                "runs on sqlite, postgresql and mysql/mariadb"
            )
        return family

    def _create_engine(self, echo: bool) -> Engine:
        # Every use of a connection ends its transaction itself (see
        # _attempt), so the pool need not roll back again on return: with
        # PyMySQL that ROLLBACK would be one more round trip per operation.
        options: dict[str, Any] = {"echo": echo, "pool_reset_on_return": None}
        if self.family == "sqlite":
            options["connect_args"] = {
                "timeout": SQLITE_BUSY_TIMEOUT,
                "check_same_thread": False,
            }
            if self.is_memory:
                options["poolclass"] = StaticPool
        elif self.family == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
            if "connect_timeout" not in self.url.query:
                options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
        else:
            options["isolation_level"] = "READ COMMITTED"
            options["pool_recycle"] = 3600
        try:
            engine = create_engine(self.url, **options)
        except (ArgumentError, ImportError) as exc:
            raise ValueError(
                f"cannot use database URL {self.masked_url!r}: {_first_line(exc)} "
                "(is the driver installed? pip install 'job-workflow[postgres]' "
                "or 'job-workflow[mysql]')"
            ) from None
        if self.family == "sqlite":
            self._prepare_sqlite(engine)
            self._begin_explicitly(engine, "BEGIN IMMEDIATE")
        elif self.family == "postgresql":
            self._begin_explicitly(engine, "BEGIN")
        return engine

    def _custom_plans_engine(self, echo: bool) -> Engine:
        """PostgreSQL: single statements planned for their parameters each time.

        psycopg prepares a statement run five times; PostgreSQL then may
        switch to one generic plan, chosen from the statistics of the
        moment. For a statement over an array of ids (``= ANY(:ids)``) on
        the queue's young, fast-changing tables that plan can be a
        sequential scan (seen: 10 ms instead of 0.6 ms for a finish). Such
        statements run here; the others keep PostgreSQL's choice, which
        spares them planning. Elsewhere the single-statement engine.
        """
        if self.family != "postgresql":
            return self._single
        engine = self._create_engine(echo)
        _forget_pool_after_fork(engine)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET plan_cache_mode = force_custom_plan")

        return engine.execution_options(**{_BEGIN: ""})

    def _prepare_sqlite(self, engine: Engine) -> None:
        memory = self.is_memory

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                if not memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
            finally:
                cursor.close()

    @staticmethod
    def _begin_explicitly(engine: Engine, begin: str) -> None:
        """Open transactions with ``begin`` on a driver left in autocommit.

        The driver then never starts a transaction by itself; SQLAlchemy's
        ``begin`` event sends ``begin`` unless the connection's options ask
        for none (single statements), and COMMIT/ROLLBACK end it as usual.
        """

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            statement = connection.get_execution_options().get(_BEGIN, begin)
            if statement:
                connection.exec_driver_sql(statement)

    def _single_statement_engine(self) -> Engine:
        """The engine for work that is one statement (atomic on its own)."""
        if self.family in ("postgresql", "sqlite"):
            return self.engine.execution_options(**{_BEGIN: ""})
        return self.engine

    def _progress_engine(self, echo: bool) -> Engine:
        """The engine for progress writes: no flush to disk at each commit.

        On PostgreSQL its sessions run with ``synchronous_commit = off``: a
        commit returns before its WAL record reaches the disk (the WAL
        writer flushes it within a few hundred milliseconds). The trade:
        if the *database server* crashes (not a worker), the last moments of
        progress may be lost, and a job resumed afterwards runs those
        iterations again, which at-least-once delivery allows anyway.
        Nothing becomes inconsistent: WAL is replayed in order, so a durable
        finish or claim implies every progress write before it is durable
        too. Claims, finishes, failures and reschedules stay synchronous.
        Elsewhere progress uses the ordinary single-statement engine.
        """
        if self.family != "postgresql":
            return self._single
        engine = self._create_engine(echo)
        _forget_pool_after_fork(engine)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit = off")

        return engine.execution_options(**{_BEGIN: ""})

    # -- running --

    def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, retrying transient failures."""
        return self._run(self.engine, work, retry_lost_connection=True)

    def statement(
        self, work: Callable[[Connection], T], *, idempotent: bool = True
    ) -> T:
        """Run ``work``, which issues a single statement, as cheaply as possible.

        On PostgreSQL and SQLite the statement commits on its own, so a
        connection lost while it runs hides whether it happened: it is
        retried then only when ``idempotent`` (a read, an upsert, setting a
        column). Deadlocks and busy errors are always retried, as nothing
        was committed.
        """
        return self._run(self._single, work, retry_lost_connection=idempotent)

    # -- the hot path: prepared text on the driver's cursor --

    def prepare(
        self,
        statement: ClauseElement | Executable,
        columns: Sequence[str] | None = None,
    ) -> Prepared:
        """Compile ``statement`` once for :meth:`raw` (``columns``: of an INSERT).

        Statements with expanding parameters (``IN`` lists) cannot be
        prepared: their text depends on the values.
        """
        assert isinstance(statement, ClauseElement)
        compiled = statement.compile(
            dialect=self.engine.dialect,
            column_keys=None if columns is None else list(columns),
        )
        assert isinstance(compiled, SQLCompiler)
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError(f"cannot prepare a statement with an IN list: {compiled}")
        order = getattr(compiled, "positiontup", None)
        return Prepared(
            sql=str(compiled),
            order=None if order is None else tuple(order),
            constants=dict(compiled.construct_params(_check=False)),
            # Type conversions SQLAlchemy would apply (float() on SQLite).
            processors=dict(getattr(compiled, "_bind_processors", {})),
        )

    def raw(
        self,
        work: Callable[[DBAPICursor], T],
        *,
        transaction: bool = False,
        progress: bool = False,
        custom_plans: bool = False,
        idempotent: bool = True,
    ) -> T:
        """Run ``work`` on a DBAPI cursor of a pooled connection.

        The same rules as :meth:`transaction` (``transaction=True``) and
        :meth:`statement`: a transaction is opened as those open it (``BEGIN
        IMMEDIATE`` on SQLite) and retried on transient failures; a single
        statement commits on its own and is retried after a lost connection
        only when ``idempotent``. ``progress`` runs a single statement on
        the progress engine (see :meth:`_progress_engine`), ``custom_plans``
        one on :meth:`_custom_plans_engine`.
        """
        if progress:
            engine = self._progress
        elif custom_plans and not transaction:
            engine = self._custom_plans
        else:
            engine = self.engine if transaction else self._single
        retry_lost = transaction or idempotent
        attempt = 0
        while True:
            attempt += 1
            with self._serial:
                outcome = self._raw_attempt(engine, work, transaction, retry_lost)
            if not isinstance(outcome, _Retry):
                return outcome.value
            if attempt >= MAX_ATTEMPTS:
                raise self.translate(outcome.error) from outcome.error

    def _raw_attempt(
        self,
        engine: Engine,
        work: Callable[[DBAPICursor], T],
        transaction: bool,
        retry_lost: bool,
    ) -> _Done[T] | _Retry:
        try:
            connection = engine.raw_connection()
        except (DBAPIError, self._driver_error) as exc:
            # The pool hands a failed connect up unwrapped, unlike connect().
            raise self.unavailable(exc) from exc
        cursor: DBAPICursor | None = None
        try:
            cursor = connection.cursor()
            if transaction and self._begin_statement:
                cursor.execute(self._begin_statement)
            value = work(cursor)
            if transaction or self.family == "mysql":
                connection.commit()
            return _Done(value)
        except self._driver_error as exc:
            error = self._wrap(exc, connection, cursor)
            if error.connection_invalidated:
                connection.invalidate(exc)
            else:
                with suppress(self._driver_error):
                    connection.rollback()
            lost = error.connection_invalidated
            if self.is_transient(error) and (retry_lost or not lost):
                return _Retry(error)
            raise self.translate(error) from exc
        except BaseException:
            with suppress(self._driver_error):
                connection.rollback()
            raise
        finally:
            if cursor is not None:
                with suppress(self._driver_error):
                    cursor.close()
            connection.close()

    @property
    def _begin_statement(self) -> str:
        return {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN"}.get(self.family, "")

    @property
    def _driver_error(self) -> type[Exception]:
        error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
        return error

    def _wrap(
        self,
        exc: Exception,
        connection: PoolProxiedConnection,
        cursor: DBAPICursor | None,
    ) -> DBAPIError:
        """The driver's error as SQLAlchemy's, as :meth:`_attempt` sees them."""
        dialect = self.engine.dialect
        driver_error: Any = exc
        lost = dialect.is_disconnect(driver_error, connection.dbapi_connection, cursor)
        wrapped = DBAPIError.instance(
            None,
            None,
            exc,
            self._driver_error,
            connection_invalidated=lost,
            dialect=dialect,
        )
        assert isinstance(wrapped, DBAPIError)
        return wrapped

    def _run(
        self,
        engine: Engine,
        work: Callable[[Connection], T],
        *,
        retry_lost_connection: bool,
    ) -> T:
        attempt = 0
        while True:
            attempt += 1
            with self._serial:
                outcome = self._attempt(engine, work, retry_lost_connection)
            if not isinstance(outcome, _Retry):
                return outcome.value
            if attempt >= MAX_ATTEMPTS:
                raise self.translate(outcome.error) from outcome.error

    def _attempt(
        self,
        engine: Engine,
        work: Callable[[Connection], T],
        retry_lost_connection: bool,
    ) -> _Done[T] | _Retry:
        try:
            connection = engine.connect()
        except DBAPIError as exc:
            raise self.unavailable(exc) from exc
        with connection:
            try:
                transaction = connection.begin()
                value = work(connection)
            except DBAPIError as exc:
                _rollback_quietly(connection)
                lost = exc.connection_invalidated
                if self.is_transient(exc) and (retry_lost_connection or not lost):
                    return _Retry(exc)
                raise self.translate(exc) from exc
            except BaseException:
                _rollback_quietly(connection)
                raise
            try:
                transaction.commit()
            except DBAPIError as exc:
                _rollback_quietly(connection)
                raise self.translate(exc) from exc
            return _Done(value)

    # -- errors --

    def is_transient(self, exc: DBAPIError) -> bool:
        """A failure that another attempt of the same transaction may not meet."""
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
            return True
        args = getattr(orig, "args", ())
        if args and args[0] in _RETRY_MYSQL_CODES:
            return True
        if self.family == "sqlite":
            message = str(orig).lower()
            return "database is locked" in message or "database is busy" in message
        return False

    def translate(self, exc: DBAPIError) -> Exception:
        """The error to raise for ``exc``: unavailable, no schema, or ``exc``."""
        if exc.connection_invalidated:
            return self.unavailable(exc)
        if self._is_missing_table(exc):
            return SchemaMissingError(
                f"the job-workflow tables are missing in {self.masked_url} "
                f"({_first_line(exc)}); create them with `job-workflow db upgrade` "
                "or SqlBackend.create_schema()",
                self.masked_url,
            )
        return exc

    def _is_missing_table(self, exc: DBAPIError) -> bool:
        orig = exc.orig
        if getattr(orig, "sqlstate", None) == "42P01":
            return True
        args = getattr(orig, "args", ())
        if args and args[0] == 1146:
            return True
        return self.family == "sqlite" and "no such table" in str(orig)

    def unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        if self.family == "sqlite":
            where = f"the sqlite database {self.url.database or ':memory:'}"
        else:
            port = self.url.port or {"postgresql": 5432, "mysql": 3306}[self.family]
            where = f"the {self.family} server at {self.url.host or 'localhost'}:{port}"
        return DatabaseUnavailableError(
            f"cannot reach {where} ({self.masked_url}): {_first_line(exc)}",
            self.masked_url,
        )

    # -- notifications (PostgreSQL) --

    def wait_for_notification(self, channel: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a NOTIFY on ``channel``; True if one came.

        PostgreSQL only. One connection of its own, outside the pool, stays
        in LISTEN, so a notification sent while nobody waits is kept for the
        next wait: none is missed. Waiting wakes at the first one and drains
        the rest (a burst of enqueues is one wake-up). Call it from one
        thread. A lost connection raises DatabaseUnavailableError and is
        replaced at the next call.
        """
        try:
            listener = self._listening(channel)
            woken = any(True for _ in listener.notifies(timeout=timeout, stop_after=1))
            if woken:
                for _ in listener.notifies(timeout=0):
                    pass
            return woken
        except (DBAPIError, self._driver_error) as exc:
            self._stop_listening()
            raise self.unavailable(exc) from exc

    def wait_for_change(self, timeout: float) -> bool:
        """SQLite: wait up to ``timeout`` s for another connection's commit.

        SQLite cannot notify, but ``PRAGMA data_version`` (one cheap read,
        no lock) changes whenever another connection commits, so a waiting
        worker looks every SQLITE_CHANGE_POLL seconds and claims as soon as
        anything happened, instead of at its next poll.
        """
        deadline = time.monotonic() + timeout
        try:
            watcher = self._listening("")
            while True:
                version = int(watcher.execute("PRAGMA data_version").fetchone()[0])
                changed = (
                    self._data_version is not None and version != self._data_version
                )
                self._data_version = version
                remaining = deadline - time.monotonic()
                if changed or remaining <= 0:
                    return changed
                time.sleep(min(SQLITE_CHANGE_POLL, remaining))
        except (DBAPIError, self._driver_error) as exc:
            self._stop_listening()
            raise self.unavailable(exc) from exc

    def _listening(self, channel: str) -> Any:
        if self._listener is None:
            connection = self.engine.raw_connection()
            connection.detach()  # its own, never back in the pool
            listener = connection.dbapi_connection
            assert listener is not None
            if self.family == "postgresql":
                listener.execute(f'LISTEN "{channel}"')
            self._listener = listener
        return self._listener

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(Exception):
                listener.close()

    def dispose(self) -> None:
        self._stop_listening()
        self.engine.dispose()
        self._progress.engine.dispose()
        self._custom_plans.engine.dispose()


class _Done(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


class _Retry:
    __slots__ = ("error",)

    def __init__(self, error: DBAPIError) -> None:
        self.error = error


def _forget_pool_after_fork(engine: Engine) -> None:
    """A forked child must not reuse its parent's connections: drop them.

    ``dispose(close=False)`` leaves the parent's sockets alone and makes the
    child open its own (the recipe SQLAlchemy documents for pools and
    multiprocessing). The engine is held weakly, so closed backends go.
    """
    reference = weakref.ref(engine)

    def _after_fork_in_child() -> None:
        forked = reference()
        if forked is not None:
            forked.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork_in_child)


def _rollback_quietly(connection: Connection) -> None:
    """Roll back after a failure; a connection that is gone needs nothing."""
    with suppress(DBAPIError):
        connection.rollback()
