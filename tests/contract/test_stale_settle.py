"""The claimer guard: a worker settles only the jobs it still holds.

A worker presumed dead (its claims released) may only have been slow. By
the time it finishes, fails or reschedules its job, another worker may
have claimed and be running it; the late settle must change nothing, or
the second run is overridden (a job marked finished while it runs, a
rescheduled job "finished" by a late ack). Every case here first has
worker A claim, lose and B claim the job, as after a missed heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

import pytest

from job_workflow.backends.sql import SqlBackend
from job_workflow.core.ports import JobError, JobRecord, NewJob, QueueBackend

T0 = 1_000_000.0
LATER = T0 + 60
ERROR = JobError("ValueError", "late")

Settle = Literal["finish", "fail", "reschedule"]
SETTLES: list[Settle] = ["finish", "fail", "reschedule"]


def job(**fields: object) -> NewJob:
    return NewJob(workflow="contract.W", arguments={}, **fields)  # type: ignore[arg-type]


def limited() -> NewJob:
    return job(concurrency_key="k", concurrency_limit=1)


def settle(
    backend: QueueBackend, how: Settle, job_id: str, worker_id: str | None
) -> bool:
    """Settle ``job_id`` one of the three ways, at T0 + 2."""
    calls: dict[Settle, Callable[[], bool]] = {
        "finish": lambda: backend.finish(job_id, T0 + 2, worker_id=worker_id),
        "fail": lambda: backend.fail(job_id, ERROR, T0 + 2, worker_id=worker_id),
        "reschedule": lambda: backend.reschedule(
            job_id, LATER, T0 + 2, worker_id=worker_id
        ),
    }
    return calls[how]()


def record(backend: QueueBackend, job_id: str) -> JobRecord:
    found = backend.get_job(job_id)
    assert found is not None
    return found


def claimed_again(backend: QueueBackend, spec: NewJob | None = None) -> str:
    """A job A claimed, then lost (presumed dead), now claimed by B."""
    [job_id] = backend.enqueue([spec or job()], T0)
    [first] = backend.claim(None, "A", T0)
    assert backend.release_claimed("A", T0 + 1) == [job_id]
    [second] = backend.claim(None, "B", T0 + 1)
    assert first.id == second.id == job_id
    return job_id


def assert_still_claimed_by(backend: QueueBackend, job_id: str, worker: str) -> None:
    """Claimed by ``worker``, with no trace of a settle anywhere."""
    now = record(backend, job_id)
    assert (now.status, now.claimed_by) == ("claimed", worker)
    assert (now.finished_at, now.error, now.run_at) == (None, None, T0)
    assert backend.next_due_time() is None  # no scheduled execution
    assert backend.queue_size("default") == 0
    if isinstance(backend, SqlBackend):
        counts = backend.execution_counts()
        assert counts == {
            "ready": 0,
            "claimed": 1,
            "scheduled": 0,
            "blocked": 0,
            "failed": 0,
        }


@pytest.mark.parametrize("how", SETTLES)
def test_a_late_settle_of_a_job_claimed_again_changes_nothing(
    backend: QueueBackend, how: Settle
) -> None:
    job_id = claimed_again(backend)
    assert settle(backend, how, job_id, "A") is False
    assert_still_claimed_by(backend, job_id, "B")


@pytest.mark.parametrize("how", SETTLES)
def test_the_new_claimer_settles_the_job_after_a_late_settle(
    backend: QueueBackend, how: Settle
) -> None:
    job_id = claimed_again(backend)
    settle(backend, how, job_id, "A")
    assert settle(backend, how, job_id, "B") is True
    now = record(backend, job_id)
    assert now.claimed_by is None
    if how == "finish":
        assert (now.status, now.finished_at, now.error) == ("finished", T0 + 2, None)
    elif how == "fail":
        assert (now.status, now.finished_at, now.error) == ("failed", T0 + 2, ERROR)
    else:
        assert (now.status, now.run_at, now.finished_at) == ("scheduled", LATER, None)
        assert backend.next_due_time() == LATER


@pytest.mark.parametrize("how", SETTLES)
def test_a_late_settle_of_a_limited_job_keeps_the_slot_of_its_new_run(
    backend: QueueBackend, how: Settle
) -> None:
    job_id = claimed_again(backend, limited())
    [waiting] = backend.enqueue([limited()], T0 + 1)
    assert record(backend, waiting).status == "blocked"
    assert settle(backend, how, job_id, "A") is False
    assert record(backend, waiting).status == "blocked"
    assert backend.claim(None, "C", T0 + 3) == []
    assert settle(backend, how, job_id, "B") is True
    assert [c.id for c in backend.claim(None, "C", T0 + 3)] == [waiting]


@pytest.mark.parametrize("how", SETTLES)
@pytest.mark.parametrize("state", ["ready", "scheduled", "finished"])
def test_a_workers_settle_of_a_job_nobody_holds_changes_nothing(
    backend: QueueBackend, how: Settle, state: str
) -> None:
    if state == "finished":
        [job_id] = backend.enqueue([job()], T0)
        backend.claim(None, "A", T0)
        assert backend.finish(job_id, T0 + 1, worker_id="A") is True
    else:
        run_at = LATER + 100 if state == "scheduled" else None
        [job_id] = backend.enqueue([job(run_at=run_at)], T0)
    before = record(backend, job_id)
    assert before.status == state
    assert settle(backend, how, job_id, "A") is False
    assert record(backend, job_id) == before
    assert backend.next_due_time() == (LATER + 100 if state == "scheduled" else None)


@pytest.mark.parametrize("how", SETTLES)
def test_a_workers_settle_of_an_unknown_job_returns_false(
    backend: QueueBackend, how: Settle
) -> None:
    assert settle(backend, how, "no-such-job", "A") is False
    assert backend.jobs() == []


@pytest.mark.parametrize("how", SETTLES)
def test_a_settle_without_a_worker_id_settles_whoever_holds_the_job(
    backend: QueueBackend, how: Settle
) -> None:
    job_id = claimed_again(backend)
    assert settle(backend, how, job_id, None) is True
    assert (
        record(backend, job_id).status
        == {
            "finish": "finished",
            "fail": "failed",
            "reschedule": "scheduled",
        }[how]
    )


@pytest.mark.parametrize("how", SETTLES)
def test_a_late_settle_is_logged_not_raised(
    backend: QueueBackend, how: Settle, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = claimed_again(backend)
    with caplog.at_level(logging.INFO, logger="job_workflow"):
        settle(backend, how, job_id, "A")
        settle(backend, how, job_id, "B")
    stale = [
        r for r in caplog.records if getattr(r, "event", None) == "job.stale_settle"
    ]
    assert [(r.levelno, r.job_id, r.worker_id, r.settle) for r in stale] == [  # type: ignore[attr-defined]
        (logging.INFO, job_id, "A", how)
    ]
