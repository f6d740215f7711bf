"""Fixtures shared by every test folder: SQL backends on real databases.

``make_sql_backend("sqlite" | "postgresql" | "mysql")`` gives a SqlBackend
with its schema created under a fresh random table prefix, and drops those
tables after the test, so tests never see each other's rows and the
server databases stay clean however often the suite runs.

SQLite is a file in the test's ``tmp_path``. The servers come from
JOB_WORKFLOW_TEST_POSTGRES_URL / JOB_WORKFLOW_TEST_MYSQL_URL (defaults: the
local servers of ``.ci/run``); a server that does not answer skips its tests,
saying which URL it tried, unless JOB_WORKFLOW_REQUIRE_SERVERS=1 (CI), where
it fails them.
"""

from __future__ import annotations

import os
import secrets
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from job_workflow.backends.sql import DatabaseUnavailableError, SqlBackend

SQL_BACKENDS = ("sqlite", "postgresql", "mysql")
SERVER_URLS = {
    "postgresql": (
        "JOB_WORKFLOW_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mysql": (
        "JOB_WORKFLOW_TEST_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/test",
    ),
}

# A server found down once is not tried again by every later test.
_unreachable: dict[str, str] = {}
# The URL each backend was made from (``SqlBackend.url`` masks a password).
_urls: weakref.WeakKeyDictionary[SqlBackend, str] = weakref.WeakKeyDictionary()


def require_servers() -> bool:
    return os.environ.get("JOB_WORKFLOW_REQUIRE_SERVERS") == "1"


def sql_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    variable, default = SERVER_URLS[kind]
    return os.environ.get(variable) or default


def _no_server(kind: str, reason: str) -> None:
    message = f"{kind} server not available: {reason}"
    if require_servers():
        pytest.fail(f"{message} (JOB_WORKFLOW_REQUIRE_SERVERS=1)")
    pytest.skip(message)


def sql_marks(kind: str) -> list[pytest.MarkDecorator]:
    return [getattr(pytest.mark, kind)] if kind in SERVER_URLS else []


SqlBackendFactory = Callable[[str], SqlBackend]


def _backends_in(directory: Path) -> Iterator[SqlBackendFactory]:
    made: list[SqlBackend] = []

    def make(kind: str) -> SqlBackend:
        url = sql_url(kind, directory)
        if url in _unreachable:
            _no_server(kind, _unreachable[url])
        backend = SqlBackend(url, table_prefix=f"jw_t{secrets.token_hex(4)}_")
        try:
            backend.create_schema()
        except DatabaseUnavailableError as exc:
            backend.close()
            _unreachable[url] = str(exc)
            _no_server(kind, str(exc))
        made.append(backend)
        _urls[backend] = url
        return backend

    yield make
    for backend in made:
        try:
            backend.drop_schema()
        finally:
            backend.close()


@pytest.fixture
def make_sql_backend(tmp_path: Path) -> Iterator[SqlBackendFactory]:
    """Make SQL backends with fresh tables; dropped and closed after the test."""
    yield from _backends_in(tmp_path)


@pytest.fixture(scope="module")
def make_module_sql_backend(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SqlBackendFactory]:
    """``make_sql_backend`` for module-scoped fixtures (a worker shared by tests)."""
    yield from _backends_in(tmp_path_factory.mktemp("sql"))


@pytest.fixture(scope="session")
def sql_url_of() -> Callable[[SqlBackend], str]:
    """The unmasked URL of a backend these fixtures made (for subprocesses)."""
    return _urls.__getitem__
