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
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

__all__ = ["Database", "DatabaseUnavailableError", "Family", "SchemaMissingError"]

T = TypeVar("T")
Family = Literal["sqlite", "postgresql", "mysql"]

MAX_ATTEMPTS = 6
SQLITE_BUSY_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10

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


class DatabaseUnavailableError(ConnectionError):
    """The database cannot be reached (down, refused, unknown host, bad file).

    ``url`` is the database URL with its password masked. A worker can catch
    this (it is a ``ConnectionError``) and try again later.
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

    def dispose(self) -> None:
        self.engine.dispose()


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
