"""Workflows end to end on the SQL backend, with real worker threads.

One workflow fans a map task out to sub-jobs (concurrency 2) and waits for
them with ``dependency_wait`` (so the parent reschedules itself while they
run); it runs synchronously (``perform_now``) and through the queue
(``perform_later`` plus worker threads that claim, run and dispatch), on
SQLite, PostgreSQL and MySQL/MariaDB. The task bodies count how many of them
run at once, under a lock, so the limit is checked directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from job_workflow import Workflow, WorkflowStatus, argument, events, task, use_clock
from job_workflow.backends.sql import SqlBackend
from job_workflow.clock import SystemClock
from job_workflow.core import _runner

THREADS = 4
DEADLINE = 60.0  # real seconds: bound of a whole queued run
OVERLAP_WAIT = 0.5  # real seconds a body waits for a second one to overlap


class Gauge:
    """How many task bodies run at once, and the peak."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.lock = threading.Lock()
        self.two_running = threading.Event()
        self.overlap_wait = OVERLAP_WAIT
        # Sub-jobs wait for it, so that the parent surely meets them
        # unfinished and reschedules itself (however fast the backend).
        self.released = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
            if self.running >= 2:
                self.two_running.set()

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
            if self.running < 2:
                self.two_running.clear()


gauge = Gauge()


class FanOut(Workflow):
    name = "integration.sql.FanOut"

    items = argument(list[int])

    @task(output={"base": int})
    def prepare(self, ctx):
        return {"base": 100}

    @task(
        depends_on=[prepare],
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 2},
        output={"value": int},
    )
    def compute(self, ctx):
        gauge.released.wait(DEADLINE)
        gauge.enter()
        try:
            # Give a second body the chance to overlap (bounded), so the
            # limit is exercised rather than trivially met.
            gauge.two_running.wait(gauge.overlap_wait)
            base = ctx.output["prepare"][0].base
            return {"value": base + ctx.each_value * 2}
        finally:
            gauge.leave()

    @task(
        depends_on=[compute],
        dependency_wait={
            "poll_timeout": 0.05,
            "poll_interval": 0.01,
            "reschedule_delay": 0.05,
        },
        output={"total": int, "values": list[int]},
    )
    def total(self, ctx):
        values = [out.value for out in ctx.output["compute"]]
        return {"total": sum(values), "values": values}


SQL_PARAMS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
ITEMS = [1, 2, 3, 4, 5, 6, 7, 8]
VALUES = [100 + 2 * i for i in ITEMS]


@pytest.fixture(params=SQL_PARAMS)
def backend(request: pytest.FixtureRequest) -> Iterator[SqlBackend]:
    global gauge
    gauge = Gauge()
    made: SqlBackend = request.getfixturevalue("make_sql_backend")(request.param)
    with use_clock(SystemClock()):
        yield made


def test_perform_now_runs_everything_in_the_caller(backend: SqlBackend) -> None:
    gauge.overlap_wait = 0.0  # one body at a time: nothing to wait for
    gauge.released.set()  # nothing reschedules in a synchronous run
    run = FanOut.set(backend=backend).perform_now(items=ITEMS)
    assert run.status == "succeeded"
    assert run.output["total"][0].total == sum(VALUES)
    assert run.output["total"][0].values == VALUES
    status = WorkflowStatus.find(run.job_id, backend=backend)
    assert status.is_succeeded
    assert gauge.peak == 1  # synchronous: one body at a time


def work(
    backend: SqlBackend,
    worker_id: str,
    stop: threading.Event,
    errors: list[BaseException],
) -> None:
    """A worker thread: dispatch due jobs, claim one, run it; until told to stop."""
    clock = SystemClock()
    env = _runner.RunEnv(backend=backend, clock=clock, worker_id=worker_id)
    try:
        while not stop.is_set():
            backend.dispatch_due(clock.now())
            claimed = backend.claim(None, worker_id, clock.now())
            if claimed:
                _runner.perform(env, claimed[0])
            else:
                stop.wait(0.005)
    except BaseException as exc:
        errors.append(exc)


def run_workers(backend: SqlBackend, job_id: str) -> WorkflowStatus:
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=work, args=(backend, f"w{n}", stop, errors))
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline and not errors:
            status = WorkflowStatus.find(job_id, backend=backend)
            if status.status in ("succeeded", "failed"):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(DEADLINE)
    assert errors == []
    return WorkflowStatus.find(job_id, backend=backend)


def test_perform_later_with_worker_threads(backend: SqlBackend) -> None:
    handle = FanOut.set(backend=backend).perform_later(items=ITEMS)
    release = events.subscribe("dependent.reschedule", lambda e: gauge.released.set())
    try:
        status = run_workers(backend, handle.job_id)
    finally:
        release.unsubscribe()
    assert status.status == "succeeded", status.error
    assert status.output["total"][0].total == sum(VALUES)
    assert status.output["total"][0].values == VALUES
    assert [o.value for o in status.output["compute"]] == VALUES
    parent = backend.get_job(handle.job_id)
    assert parent is not None
    # It waited for its sub-jobs by rescheduling itself at least once.
    assert parent.executions >= 2, parent
    assert gauge.calls == len(ITEMS)
    assert gauge.peak == 2
    subs = backend.sub_jobs(handle.job_id, "compute")
    assert [s.each_index for s in subs] == list(range(len(ITEMS)))
    assert {s.status for s in subs} == {"finished"}
    assert backend.execution_counts() == {
        "ready": 0,
        "claimed": 0,
        "scheduled": 0,
        "blocked": 0,
        "failed": 0,
    }
