"""perform(): how a worker runs one claimed job and settles it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from job_workflow import Workflow, task, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core import _runner
from job_workflow.core.ports import NewJob
from job_workflow.errors import UnknownWorkflowError

_runs: list[weakref.ref[Any]] = []


class Keeps(Workflow):
    name = "tests.perform.keeps"

    @task()
    def only(self, ctx: Any) -> None:
        _runs.append(weakref.ref(ctx._run))


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    manual = ManualClock()
    with use_clock(manual):
        yield manual


def claim_one(backend: MemoryBackend, workflow: str, now: float) -> Any:
    backend.enqueue([NewJob(workflow, {})], now)
    [job] = backend.claim(None, "w1", now)
    return job


def test_a_job_of_an_unregistered_workflow_fails_with_unknown_workflow_error(
    clock: ManualClock,
) -> None:
    backend = MemoryBackend("queued", clock=clock)
    job = claim_one(backend, "tests.perform.nobody_registered_this", clock.now())
    env = _runner.RunEnv(backend=backend, clock=clock, worker_id="w1")

    outcome = _runner.perform(env, job)

    assert isinstance(outcome, UnknownWorkflowError)
    failed = backend.get_job(job.id)
    assert failed is not None
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.error_class == "UnknownWorkflowError"


def test_a_performed_run_is_freed_without_the_cycle_collector(
    clock: ManualClock,
) -> None:
    backend = MemoryBackend("queued", clock=clock)
    job = claim_one(backend, Keeps.name, clock.now())
    env = _runner.RunEnv(backend=backend, clock=clock, worker_id="w1")
    _runs.clear()
    gc.disable()
    try:
        _runner.perform(env, job)
        assert len(_runs) == 1
        assert _runs[0]() is None, "the run and its context still hold each other"
    finally:
        gc.enable()
