"""Throttles: backend semaphores shared by every task, workflow and worker.

Covers the Ruby guide THROTTLING.md on ``MemoryBackend("queued")``: the
task-level ``throttle=int`` (key ``"<Workflow.name>:<task>"``, ttl 180 s) and
dict form (key, limit, ttl), a key shared by two workflows never held by more
than its limit with four worker threads, map tasks throttled per iteration,
the runtime ``with ctx.throttle(limit, key=...)`` and its automatic keys
``"<Workflow.name>:<task>:<n>"``, a lease released when its task fails, a
dead holder's lease blocking others until its ttl expires, and the events
``throttle.acquire.start`` / ``throttle.acquire.complete`` /
``throttle.release``.

Tests that measure holders with real threads run on the system clock: the
library's throttle polls then wait for real, and a lease's ttl cannot run out
under a holder that is still working (on a virtual clock, spinning waiters
would push time past it). The ttl test runs on a ManualClock.
"""

import threading
from contextlib import contextmanager

import pytest

from job_workflow import Workflow, argument, events, task, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock, SystemClock

THREADS = 4
DRAIN_TIMEOUT = 30.0
WAIT = 5.0  # real seconds: bound of every wait inside a task body
GRACE = 0.05  # real seconds an overlapping holder stays to let an extra one in


@pytest.fixture
def backend():
    queued = MemoryBackend("queued")
    with use_backend(queued):
        yield queued


@pytest.fixture
def clock():
    with use_clock(ManualClock()) as manual:
        yield manual


@pytest.fixture
def real_clock():
    with use_clock(SystemClock()) as system:
        yield system


def drain(backend, threads=THREADS):
    backend.drain(threads=threads, timeout=DRAIN_TIMEOUT)


class Gauge:
    """Counts the holders inside a throttled block and keeps the peak."""

    def __init__(self, limit):
        self.limit = limit
        self.running = 0
        self.peak = 0
        self.reached = threading.Event()
        self.exceeded = threading.Event()
        self._lock = threading.Lock()

    @contextmanager
    def inside(self):
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.running >= self.limit:
                self.reached.set()
            if self.running > self.limit:
                self.exceeded.set()
        try:
            self.reached.wait(WAIT)
            self.exceeded.wait(GRACE)
            yield
        finally:
            with self._lock:
                self.running -= 1


# --- task-level throttle ------------------------------------------------------


def test_int_throttle_uses_workflow_and_task_name_as_key(backend, clock):
    seen = {}

    class DefaultKey(Workflow):
        name = "tests.queued.throttle.DefaultKey"

        @task(throttle=3)
        def call_api(self, ctx):
            key = "tests.queued.throttle.DefaultKey:call_api"
            seen["stats"] = backend.semaphore_statistics(key, clock.now())
            seen["now"] = clock.now()

    with events.capture("throttle.acquire.start") as captured:
        DefaultKey.perform_later()
        drain(backend, threads=1)

    stats = seen["stats"]
    assert stats.limit == 3
    assert len(stats.holders) == 1
    assert list(stats.expires_at) == [seen["now"] + 180]
    assert [e.payload["concurrency_key"] for e in captured] == [
        "tests.queued.throttle.DefaultKey:call_api"
    ]


def test_dict_throttle_uses_its_key_limit_and_ttl(backend, clock):
    seen = {}

    class CustomKey(Workflow):
        name = "tests.queued.throttle.CustomKey"

        @task(throttle={"key": "tests.queued.user_api", "limit": 7, "ttl": 120})
        def fetch(self, ctx):
            stats = backend.semaphore_statistics("tests.queued.user_api", clock.now())
            seen["stats"] = stats
            seen["now"] = clock.now()

    CustomKey.perform_later()
    drain(backend, threads=1)

    stats = seen["stats"]
    assert stats.limit == 7
    assert len(stats.holders) == 1
    assert list(stats.expires_at) == [seen["now"] + 120]


def test_lease_is_released_when_the_task_finishes(backend, clock):
    class Releases(Workflow):
        name = "tests.queued.throttle.Releases"

        @task(throttle={"key": "tests.queued.releases", "limit": 1})
        def work(self, ctx):
            pass

    handles = [Releases.perform_later() for _ in range(3)]
    drain(backend, threads=1)

    assert [h.status() for h in handles] == ["succeeded"] * 3
    stats = backend.semaphore_statistics("tests.queued.releases", clock.now())
    assert stats.holders == ()
    assert clock.sleeps == [], "no job waited: each lease was released"


def test_lease_is_released_when_the_task_fails(backend, clock):
    class FailsHolding(Workflow):
        name = "tests.queued.throttle.FailsHolding"

        @task(throttle={"key": "tests.queued.fails", "limit": 1})
        def work(self, ctx):
            raise RuntimeError("boom")

    failed = FailsHolding.perform_later()
    drain(backend, threads=1)

    assert failed.status() == "failed"
    stats = backend.semaphore_statistics("tests.queued.fails", clock.now())
    assert stats.holders == ()


def test_shared_key_across_two_workflows_is_never_held_beyond_its_limit(
    backend, real_clock
):
    gauge = Gauge(limit=2)
    by_workflow = []

    class CreateCustomer(Workflow):
        name = "tests.queued.throttle.CreateCustomer"

        @task(throttle={"key": "tests.queued.payment_api", "limit": 2})
        def create_customer(self, ctx):
            with gauge.inside():
                by_workflow.append("create")

    class UpdateBilling(Workflow):
        name = "tests.queued.throttle.UpdateBilling"

        @task(throttle={"key": "tests.queued.payment_api", "limit": 2})
        def update_billing(self, ctx):
            with gauge.inside():
                by_workflow.append("update")

    handles = []
    for _ in range(3):
        handles.append(CreateCustomer.perform_later())
        handles.append(UpdateBilling.perform_later())
    drain(backend)

    assert {h.status() for h in handles} == {"succeeded"}
    assert sorted(by_workflow) == ["create"] * 3 + ["update"] * 3
    assert gauge.peak == 2, "two holders should overlap, and never more"


def test_throttled_map_sub_jobs_are_never_held_beyond_the_limit(backend, real_clock):
    gauge = Gauge(limit=2)

    class BatchFetch(Workflow):
        name = "tests.queued.throttle.BatchFetch"
        ids = argument(list[int])

        @task(each=lambda ctx: ctx.arguments.ids, enqueue=True, throttle=2)
        def fetch_all(self, ctx):
            with gauge.inside():
                pass

    handle = BatchFetch.perform_later(ids=[1, 2, 3, 4, 5, 6])
    drain(backend)

    assert handle.status() == "succeeded"
    assert len(backend.sub_jobs(handle.job_id, "fetch_all")) == 6
    assert gauge.peak == 2


# --- runtime throttle ---------------------------------------------------------


def test_runtime_throttle_holds_its_key_only_inside_the_block(backend, clock):
    seen = {}
    key = "tests.queued.db_write"

    class RuntimeBlock(Workflow):
        name = "tests.queued.throttle.RuntimeBlock"

        @task
        def process_and_save(self, ctx):
            with ctx.throttle(3, key=key):
                seen["inside"] = backend.semaphore_statistics(key, clock.now())
            seen["after"] = backend.semaphore_statistics(key, clock.now())

    RuntimeBlock.perform_later()
    drain(backend, threads=1)

    assert seen["inside"].limit == 3
    assert len(seen["inside"].holders) == 1
    assert seen["after"].holders == ()


def test_runtime_throttle_is_released_when_its_block_raises(backend, clock):
    key = "tests.queued.raising_write"
    seen = {}

    class RaisingBlock(Workflow):
        name = "tests.queued.throttle.RaisingBlock"

        @task
        def write(self, ctx):
            try:
                with ctx.throttle(1, key=key):
                    raise KeyError("missing row")
            except KeyError:
                pass
            seen["after"] = backend.semaphore_statistics(key, clock.now())

    handle = RaisingBlock.perform_later()
    drain(backend, threads=1)

    assert handle.status() == "succeeded"
    assert seen["after"].holders == ()


def test_runtime_throttle_is_shared_by_every_worker(backend, real_clock):
    gauge = Gauge(limit=1)

    class SharedWrite(Workflow):
        name = "tests.queued.throttle.SharedWrite"

        @task(each=lambda ctx: range(4), enqueue=True)
        def write(self, ctx):
            with ctx.throttle(1, key="tests.queued.cache_write"), gauge.inside():
                pass

    handle = SharedWrite.perform_later()
    drain(backend)

    assert handle.status() == "succeeded"
    assert gauge.peak == 1


def test_runtime_throttle_auto_keys_count_calls_within_an_iteration(backend, clock):
    class AutoKeys(Workflow):
        name = "tests.queued.throttle.AutoKeys"

        @task(each=lambda ctx: ["x", "y"])
        def sequential_operations(self, ctx):
            with ctx.throttle(5):
                pass
            with ctx.throttle(5):
                pass

    with events.capture("throttle.acquire.start") as captured:
        AutoKeys.perform_later()
        drain(backend, threads=1)

    prefix = "tests.queued.throttle.AutoKeys:sequential_operations"
    assert [e.payload["concurrency_key"] for e in captured] == [
        f"{prefix}:0",
        f"{prefix}:1",
        f"{prefix}:0",
        f"{prefix}:1",
    ]
    assert {e.payload["concurrency_limit"] for e in captured} == {5}


# --- a holder that dies -------------------------------------------------------


def test_dead_holder_blocks_others_until_its_ttl_expires(backend, clock):
    key = "tests.queued.crashed"
    started = clock.now()
    ran_at = []

    class AfterCrash(Workflow):
        name = "tests.queued.throttle.AfterCrash"

        @task(throttle={"key": key, "limit": 1, "ttl": 60})
        def work(self, ctx):
            ran_at.append(clock.now())

    # A worker took the lease and died: it will never release it.
    assert backend.semaphore_acquire(key, 1, 60, "dead-worker", started)
    handle = AfterCrash.perform_later()
    drain(backend, threads=1)

    assert handle.status() == "succeeded"
    [when] = ran_at
    assert when >= started + 60, "ran before the dead holder's ttl expired"
    assert when <= started + 61, "kept waiting long after the ttl expired"
    assert sum(clock.sleeps) >= 60
    stats = backend.semaphore_statistics(key, clock.now())
    assert "dead-worker" not in stats.holders


def test_waiting_follows_the_holders_ttl_not_the_waiters(backend, clock):
    key = "tests.queued.long_lease"
    started = clock.now()
    ran_at = []

    class Waits(Workflow):
        name = "tests.queued.throttle.Waits"

        @task(throttle={"key": key, "limit": 1, "ttl": 30})
        def work(self, ctx):
            ran_at.append(clock.now())

    assert backend.semaphore_acquire(key, 1, 300, "long-lease", started)
    Waits.perform_later()
    drain(backend, threads=1)

    [when] = ran_at
    assert started + 300 <= when <= started + 301
    assert backend.semaphore_statistics(key, clock.now()).holders == ()


# --- events -------------------------------------------------------------------


def test_throttle_events_wrap_the_task_with_key_and_limit(backend, clock):
    class Observed(Workflow):
        name = "tests.queued.throttle.Observed"

        @task(throttle=4)
        def call(self, ctx):
            pass

    with events.capture("*") as captured:
        Observed.perform_later()
        drain(backend, threads=1)

    names = [e.name for e in captured if e.name.startswith(("throttle", "task"))]
    assert names == [
        "throttle.acquire.start",
        "throttle.acquire",
        "throttle.acquire.complete",
        "task.start",
        "task",
        "task.complete",
        "throttle.release",
    ]
    throttle_events = [e for e in captured if e.name.startswith("throttle")]
    for event in throttle_events:
        assert event.payload["concurrency_key"] == "tests.queued.throttle.Observed:call"
        assert event.payload["concurrency_limit"] == 4
    span = next(e for e in captured if e.name == "throttle.acquire")
    assert span.duration_ms is not None


def test_runtime_throttle_emits_the_same_events(backend, clock):
    class RuntimeObserved(Workflow):
        name = "tests.queued.throttle.RuntimeObserved"

        @task
        def write(self, ctx):
            with ctx.throttle(2, key="tests.queued.observed_write"):
                pass

    with events.capture("throttle.*") as captured:
        RuntimeObserved.perform_later()
        drain(backend, threads=1)

    assert [e.name for e in captured] == [
        "throttle.acquire.start",
        "throttle.acquire",
        "throttle.acquire.complete",
        "throttle.release",
    ]
    assert {e.payload["concurrency_key"] for e in captured} == {
        "tests.queued.observed_write"
    }
    assert {e.payload["concurrency_limit"] for e in captured} == {2}


def test_a_context_kept_after_its_run_still_throttles(backend, clock):
    """A worker unlinks a finished run from its context; a task that kept the
    context can still take and give back a lease through it."""
    kept = []

    class Keeper(Workflow):
        name = "tests.throttling.Keeper"

        @task(each=lambda ctx: [1])
        def keep(self, ctx):
            kept.append(ctx)

    Keeper.perform_later()
    drain(backend, threads=1)

    [ctx] = kept
    key = "tests.throttling.kept"
    with ctx.throttle(1, key=key):
        [holder] = backend.semaphore_statistics(key, clock.now()).holders
        assert holder.endswith(f":{key}:0")  # the kept context's iteration
    assert backend.semaphore_statistics(key, clock.now()).holders == ()
