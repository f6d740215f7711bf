"""The pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``workflow_backend``: a fresh queued :class:`MemoryBackend` installed as
  the process backend for the test, restored afterwards;
- ``inline_backend``: the same with an inline backend;
- ``captured_events``: every event emitted during the test, in order.

Kept off the main import path: importing ``job_workflow`` never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from job_workflow.backends.memory import MemoryBackend
    from job_workflow.events import Event

# The library is imported inside the fixtures, not here: pytest loads this
# module before coverage starts, and a user's test session should not pay
# for the import unless a fixture is used.


@pytest.fixture
def workflow_backend() -> Iterator[MemoryBackend]:
    """A queued memory backend installed as the process backend."""
    from job_workflow import use_backend
    from job_workflow.backends.memory import MemoryBackend

    backend = MemoryBackend("queued")
    with use_backend(backend):
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
def captured_events() -> Iterator[list[Event]]:
    """Every event emitted while the test runs."""
    from job_workflow import events

    with events.capture("*") as captured:
        yield captured
