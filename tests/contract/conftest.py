"""Backends under contract: every test in this folder runs once per backend.

memory, and the SQL backend on SQLite, PostgreSQL and MySQL/MariaDB (see
``tests/conftest.py`` for where the servers come from, and when a missing
one skips or fails).
"""

from __future__ import annotations

import pytest

from job_workflow.backends.memory import MemoryBackend
from job_workflow.core.ports import QueueBackend

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> QueueBackend:
    if request.param == "memory":
        return MemoryBackend("queued")
    make = request.getfixturevalue("make_sql_backend")
    made: QueueBackend = make(request.param)
    return made
