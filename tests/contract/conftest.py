"""Backends under contract: every test in this folder runs once per backend.

Server backends (PostgreSQL, MySQL) run when their URL is set in
JOB_WORKFLOW_TEST_POSTGRES_URL / JOB_WORKFLOW_TEST_MYSQL_URL; with
JOB_WORKFLOW_REQUIRE_SERVERS=1 (as in CI) a missing server is a failure,
not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from job_workflow.backends.memory import MemoryBackend
from job_workflow.core.ports import QueueBackend


def _memory(tmp_path: object) -> QueueBackend:
    return MemoryBackend("queued")


FACTORIES: dict[str, Callable[[object], QueueBackend]] = {"memory": _memory}


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[QueueBackend]:
    made = FACTORIES[request.param](tmp_path)
    yield made
    close = getattr(made, "close", None)
    if callable(close):
        close()


def require_servers() -> bool:
    return os.environ.get("JOB_WORKFLOW_REQUIRE_SERVERS") == "1"
