"""The pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``workflow_backend``: a fresh queued :class:`MemoryBackend` installed as
  the process backend for the test, restored afterwards; under the
  ``workflow_backends`` marker, the backend of the current run instead;
- ``inline_backend``: the same with an inline memory backend;
- ``sql_backend``: a :class:`SqlBackend` on SQLite in ``tmp_path`` (or on
  ``--jw-database-url`` / ``JOB_WORKFLOW_TEST_DATABASE_URL``) with fresh
  tables, installed as the process backend, its tables dropped afterwards;
- ``simulation``: a factory ``simulation(workers=4, seed=0, faults=None,
  durations=None, **options)`` returning a :class:`Simulation`;
- ``captured_events``: every event emitted during the test, in order (a
  :class:`CapturedEvents` list);
- ``manual_clock``: a :class:`ManualClock` installed as the process clock.

The marker ``@pytest.mark.workflow_backends("memory", "sqlite", "postgresql",
"mysql")`` runs a test once per listed backend, ``workflow_backend`` being
that backend. Options: ``--jw-postgresql-url``, ``--jw-mysql-url``,
``--jw-database-url`` and ``--jw-require-servers`` (see ``_fixtures``).

Kept off the main import path: importing ``job_workflow`` never loads it,
and it imports the library inside the fixtures, not here: pytest loads
this module before coverage starts, and a user's test session should not
pay for the import unless a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from job_workflow.backends.memory import MemoryBackend
    from job_workflow.backends.sql import SqlBackend
    from job_workflow.clock import ManualClock
    from job_workflow.core.ports import QueueBackend
    from job_workflow.testing._events import CapturedEvents
    from job_workflow.testing._simulation import SimulationFactory

BACKENDS = ("memory", "sqlite", "postgresql", "mysql")
MARKER = "workflow_backends"
FIXTURE = "workflow_backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("job-workflow", "job-workflow test backends")
    group.addoption(
        "--jw-postgresql-url",
        metavar="URL",
        help="PostgreSQL for @pytest.mark.workflow_backends('postgresql') "
        "(default: $JOB_WORKFLOW_TEST_POSTGRES_URL)",
    )
    group.addoption(
        "--jw-mysql-url",
        metavar="URL",
        help="MySQL/MariaDB for @pytest.mark.workflow_backends('mysql') "
        "(default: $JOB_WORKFLOW_TEST_MYSQL_URL)",
    )
    group.addoption(
        "--jw-database-url",
        metavar="URL",
        help="database of the sql_backend fixture "
        "(default: $JOB_WORKFLOW_TEST_DATABASE_URL, else SQLite in tmp_path)",
    )
    group.addoption(
        "--jw-require-servers",
        action="store_true",
        help="fail, rather than skip, tests whose database does not answer "
        "(also: JOB_WORKFLOW_REQUIRE_SERVERS=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): run the test once per job-workflow backend "
        f"({', '.join(BACKENDS)}); the {FIXTURE} fixture is that backend",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return
    names = _marker_backends(marker, metafunc.definition.nodeid)
    if FIXTURE not in metafunc.fixturenames:
        _usage_error(
            f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER} chooses the "
            f"backend of the {FIXTURE} fixture, but the test does not use it; "
            f"add a {FIXTURE} argument (or @pytest.mark.usefixtures({FIXTURE!r}))"
        )
    metafunc.parametrize(FIXTURE, names, indirect=True, ids=names)


def _marker_backends(marker: pytest.Mark, nodeid: str) -> list[str]:
    """The marker's backend names, validated; a usage error otherwise."""
    where = f"{nodeid}: @pytest.mark.{MARKER}"
    choices = ", ".join(repr(name) for name in BACKENDS)
    if marker.kwargs:
        _usage_error(f"{where} takes backend names only, got {sorted(marker.kwargs)}")
    if not marker.args:
        _usage_error(f"{where}() needs at least one backend name ({choices})")
    names: list[str] = []
    for name in marker.args:
        if name not in BACKENDS:
            _usage_error(f"{where}: unknown backend {name!r}; choose from {choices}")
        if name in names:
            _usage_error(f"{where}: backend {name!r} is listed twice")
        names.append(name)
    return names


def _usage_error(message: str) -> None:
    # A collection error that shows just this message, no traceback.
    pytest.fail(message, pytrace=False)


@pytest.fixture
def workflow_backend(request: pytest.FixtureRequest) -> Iterator[QueueBackend]:
    """A queued memory backend (or the marker's backend) as the process backend."""
    from job_workflow.testing._fixtures import install_backend

    name: str = getattr(request, "param", "memory")
    with install_backend(name, request) as backend:
        yield backend


@pytest.fixture
def inline_backend() -> Iterator[MemoryBackend]:
    """An inline memory backend installed as the process backend."""
    from job_workflow import use_backend
    from job_workflow.backends.memory import MemoryBackend

    backend = MemoryBackend("inline")
    with use_backend(backend):
        yield backend


@pytest.fixture
def sql_backend(request: pytest.FixtureRequest) -> Iterator[SqlBackend]:
    """A SQL backend with fresh tables installed as the process backend."""
    from job_workflow.testing._fixtures import install_sql_backend

    with install_sql_backend(request) as backend:
        yield backend


@pytest.fixture
def simulation() -> SimulationFactory:
    """A factory of simulations: ``simulation(workers=4, seed=0, ...)``."""
    from job_workflow.testing._simulation import SimulationFactory

    return SimulationFactory()


@pytest.fixture
def captured_events() -> Iterator[CapturedEvents]:
    """Every event emitted while the test runs, in order."""
    from job_workflow.testing._events import capture_events

    with capture_events() as captured:
        yield captured


@pytest.fixture
def manual_clock() -> Iterator[ManualClock]:
    """A ManualClock installed as the process clock: no real waiting."""
    from job_workflow import use_clock
    from job_workflow.clock import ManualClock

    clock = ManualClock()
    with use_clock(clock):
        yield clock
