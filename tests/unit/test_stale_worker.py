"""A worker presumed dead that was only slow: its late settle changes nothing.

The runner settles a job under the worker id it was claimed with. Here the
first task body plays the supervisor that gave up on worker A: it releases
A's claims and lets worker B claim the job. When A's run then ends, the job
is B's, and A's finish, failure or reschedule must leave it to B.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from job_workflow import Workflow, task, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core import _runner
from job_workflow.core.ports import JobRecord


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    manual = ManualClock()
    with use_clock(manual):
        yield manual


@pytest.fixture
def backend(clock: ManualClock) -> Iterator[MemoryBackend]:
    queued = MemoryBackend("queued")
    with use_backend(queued):
        yield queued


def presume_a_dead(backend: MemoryBackend, job_id: str, now: float) -> None:
    """What a supervisor does when A's heartbeat stops, then B's claim."""
    assert backend.release_claimed("A", now) == [job_id]
    [claimed] = backend.claim(None, "B", now)
    assert claimed.id == job_id


def workflow(backend: MemoryBackend, ending: str) -> type[Workflow]:
    """A workflow whose first task loses A's claim; then it ends as asked."""
    if ending == "reschedule":
        return waiting_workflow(backend)

    class Slow(Workflow):
        name = f"tests.stale_worker.{ending}"

        @task()
        def lose_the_claim(self, ctx: Any) -> None:
            presume_a_dead(backend, ctx.job_id, backend.clock.now())

        @task(depends_on=[lose_the_claim])
        def end(self, ctx: Any) -> None:
            if ending == "fail":
                raise ValueError("A failed late")

    return Slow


def waiting_workflow(backend: MemoryBackend) -> type[Workflow]:
    """Reschedules itself: nobody runs its sub-job while it waits for it."""

    class SlowWaiting(Workflow):
        name = "tests.stale_worker.reschedule"

        @task()
        def lose_the_claim(self, ctx: Any) -> None:
            presume_a_dead(backend, ctx.job_id, backend.clock.now())

        @task(depends_on=[lose_the_claim], enqueue=True)
        def sub_job(self, ctx: Any) -> None:
            pass

        @task(
            depends_on=[sub_job],
            dependency_wait={"poll_timeout": 4, "poll_interval": 1},
        )
        def end(self, ctx: Any) -> None:
            pass

    return SlowWaiting


def claim_as_a(backend: MemoryBackend, cls: type[Workflow]) -> tuple[str, JobRecord]:
    handle = cls.perform_later()
    [record] = backend.claim(None, "A", backend.clock.now())
    assert record.id == handle.job_id
    return handle.job_id, record


@pytest.mark.parametrize("ending", ["finish", "fail", "reschedule"])
def test_a_late_settle_by_the_runner_leaves_the_job_to_its_new_claimer(
    backend: MemoryBackend, clock: ManualClock, ending: str
) -> None:
    job_id, record = claim_as_a(backend, workflow(backend, ending))
    env = _runner.RunEnv(backend=backend, clock=clock, worker_id="A")
    outcome = _runner.perform(env, record)
    expected = {
        "finish": _runner.Finished,
        "fail": ValueError,
        "reschedule": _runner.Rescheduled,
    }[ending]
    assert isinstance(outcome, expected)
    after = backend.get_job(job_id)
    assert after is not None
    assert (after.status, after.claimed_by) == ("claimed", "B")
    assert (after.finished_at, after.error) == (None, None)
    assert backend.next_due_time() is None
