"""What the plugin's fixtures build: backends with fresh tables, installed.

Kept apart from ``plugin`` so that loading the plugin imports none of this;
the fixtures import it when a test first asks for one.

Databases: SQLite lives in the test's ``tmp_path``. PostgreSQL and MySQL come
from ``--jw-postgresql-url`` / ``--jw-mysql-url`` or the environment
variables ``JOB_WORKFLOW_TEST_POSTGRES_URL`` / ``JOB_WORKFLOW_TEST_MYSQL_URL``;
``sql_backend`` uses ``--jw-database-url`` / ``JOB_WORKFLOW_TEST_DATABASE_URL``
when set. Each backend gets a random table prefix, so tests never see each
other's rows, and its tables are dropped afterwards. A database that is not
configured or does not answer skips the test, with the URL in the reason;
with ``--jw-require-servers`` (or ``JOB_WORKFLOW_REQUIRE_SERVERS=1``) it fails
it instead, for CI where the servers must be there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from job_workflow._runtime import use_backend
from job_workflow.backends.memory import MemoryBackend
from job_workflow.core.ports import QueueBackend

if TYPE_CHECKING:
    from job_workflow.backends.sql import SqlBackend

__all__ = ["install_backend", "install_sql_backend"]

REQUIRE_SERVERS_ENV = "JOB_WORKFLOW_REQUIRE_SERVERS"


@dataclass(frozen=True, slots=True)
class UrlSource:
    """Where the URL of one database comes from: an option or a variable."""

    label: str
    option: str
    variable: str

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")

    def url(self, config: pytest.Config) -> str | None:
        given = config.getoption(self.dest, default=None)
        return str(given) if given else os.environ.get(self.variable) or None


SERVERS = {
    "postgresql": UrlSource(
        "PostgreSQL", "--jw-postgresql-url", "JOB_WORKFLOW_TEST_POSTGRES_URL"
    ),
    "mysql": UrlSource("MySQL", "--jw-mysql-url", "JOB_WORKFLOW_TEST_MYSQL_URL"),
}
DATABASE = UrlSource(
    "test database", "--jw-database-url", "JOB_WORKFLOW_TEST_DATABASE_URL"
)

# A database found down once is not tried again by every later test.
_UNREACHABLE = pytest.StashKey[dict[str, str]]()


@contextmanager
def install_backend(
    name: str, request: pytest.FixtureRequest
) -> Iterator[QueueBackend]:
    """The backend ``name`` of the marker, installed as the process backend."""
    if name == "memory":
        with use_backend(MemoryBackend("queued")) as backend:
            yield backend
        return
    if name == "sqlite":
        url, what = _sqlite_url(request), "SQLite database"
    else:
        source = SERVERS[name]
        found = source.url(request.config)
        if found is None:
            _unavailable(
                request.config,
                f"no {source.label} server configured: pass {source.option}=URL "
                f"or set {source.variable}",
            )
        url, what = found, f"{source.label} server"
    with _fresh_sql_backend(url, what, request.config) as sql, use_backend(sql):
        yield sql


@contextmanager
def install_sql_backend(request: pytest.FixtureRequest) -> Iterator[SqlBackend]:
    """The ``sql_backend`` fixture: SQLite, or the configured test database."""
    url = DATABASE.url(request.config) or _sqlite_url(request)
    with (
        _fresh_sql_backend(url, "test database", request.config) as sql,
        use_backend(sql),
    ):
        yield sql


def _sqlite_url(request: pytest.FixtureRequest) -> str:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@contextmanager
def _fresh_sql_backend(
    url: str, what: str, config: pytest.Config
) -> Iterator[SqlBackend]:
    """A SqlBackend on ``url`` under a new table prefix; tables dropped after."""
    unreachable = config.stash.setdefault(_UNREACHABLE, {})
    if url in unreachable:
        _unavailable(config, unreachable[url])
    backend = _create(url, what, config)
    try:
        yield backend
    finally:
        try:
            backend.drop_schema()
        finally:
            backend.close()


def _create(url: str, what: str, config: pytest.Config) -> SqlBackend:
    from job_workflow.backends.sql import DatabaseUnavailableError, SqlBackend

    # Both errors name the URL (password masked). A ValueError is a URL that
    # does not parse, an unsupported database or a driver not installed.
    try:
        backend = SqlBackend(url, table_prefix=f"jw_t{secrets.token_hex(4)}_")
    except ValueError as exc:
        _give_up(config, url, f"{what} not available: {exc}")
    try:
        backend.create_schema()
    except (DatabaseUnavailableError, ValueError) as exc:
        backend.close()
        _give_up(config, url, f"{what} not available: {exc}")
    return backend


def _give_up(config: pytest.Config, url: str, reason: str) -> NoReturn:
    config.stash.setdefault(_UNREACHABLE, {})[url] = reason
    _unavailable(config, reason)


def _unavailable(config: pytest.Config, reason: str) -> NoReturn:
    required = config.getoption("jw_require_servers", default=False) or (
        os.environ.get(REQUIRE_SERVERS_ENV) == "1"
    )
    if required:
        pytest.fail(f"{reason} (servers are required here)", pytrace=False)
    pytest.skip(reason)
