"""The Ruby gem's and Solid Queue's known bugs, put back and caught by check().

Each scenario runs the same workload twice: once with a runner or backend
that has the bug put back, where ``SimulationResult.check()`` must fail with
the invariant the bug breaks, and once with the real parts, where it must
pass. If a refactoring ever reintroduces one of these bugs, the simulator
finds it the way these tests do.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Generator
from typing import Any

import pytest

from job_workflow import Workflow, task
from job_workflow.backends.memory import MemoryBackend
from job_workflow.core._runner import (
    FINISHED,
    Effect,
    JobRun,
    Outcome,
    RunEnv,
)
from job_workflow.core._task import Task
from job_workflow.core.ports import JobRecord, JobState, NewJob, QueueBackend
from job_workflow.errors import InvariantViolation
from job_workflow.simulator import Faults, Simulation, SimulationResult

RunFactory = Callable[[RunEnv, JobRecord], JobRun]


def simulate(
    backend: type[MemoryBackend] = MemoryBackend,
    run_factory: RunFactory | None = None,
    **options: Any,
) -> Simulation:
    """A Simulation on a fresh ``backend`` of the given class.

    The backend is built before the Simulation, whose clock it then gets
    (``Simulation.__init__`` creates the clock, so it cannot be passed in).
    """
    ids = itertools.count(1)
    queue = backend("queued", id_factory=lambda: f"job-{next(ids):06d}")
    sim = Simulation(backend=queue, run_factory=run_factory, **options)
    queue._clock = sim.clock
    return sim


def violation(result: SimulationResult) -> str | None:
    """check()'s message, or None when every invariant holds."""
    try:
        result.check()
    except InvariantViolation as exc:
        return str(exc)
    return None


# -- workflows --


class Report(Workflow):
    """Settings first, a fan-out that reads them, a total after the fan-out."""

    name = "tests.simulator_regressions.Report"

    @task(output={"factor": int})
    def configure(self, ctx: Any) -> dict[str, Any]:
        return {"factor": 10}

    @task(
        depends_on=[configure],
        each=lambda ctx: [1, 2, 3],
        enqueue=True,
        output={"value": int},
    )
    def scale(self, ctx: Any) -> dict[str, Any]:
        # An optional setting with a default, as real configuration often is.
        factor = next((row.factor for row in ctx.output["configure"]), 1)
        return {"value": ctx.each_value * factor}

    @task(
        depends_on=[scale],
        dependency_wait={"poll_timeout": 4, "poll_interval": 1, "reschedule_delay": 2},
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, Any]:
        return {"total": sum(row.value for row in ctx.output["scale"])}


class Squares(Workflow):
    """A sequential map: every iteration runs in the workflow's own job."""

    name = "tests.simulator_regressions.Squares"

    @task(each=lambda ctx: list(range(8)), output={"square": int})
    def square(self, ctx: Any) -> dict[str, Any]:
        return {"square": ctx.each_value**2}


class Nightly(Workflow):
    """A fan-out whose parent waits patiently; one run at a time (see below)."""

    name = "tests.simulator_regressions.Nightly"

    @task(each=lambda ctx: [1, 2, 3], enqueue=True, output={"value": int})
    def fetch(self, ctx: Any) -> dict[str, Any]:
        return {"value": ctx.each_value}

    @task(
        depends_on=[fetch],
        dependency_wait={"poll_timeout": 30, "poll_interval": 1, "reschedule_delay": 5},
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, Any]:
        return {"total": sum(row.value for row in ctx.output["fetch"])}


class NightlyPolling(Workflow):
    """The same fan-out, but the parent polls while it waits, holding its slot."""

    name = "tests.simulator_regressions.NightlyPolling"

    @task(each=lambda ctx: [1, 2, 3], enqueue=True, output={"value": int})
    def fetch(self, ctx: Any) -> dict[str, Any]:
        return {"value": ctx.each_value}

    @task(depends_on=[fetch], output={"total": int})
    def total(self, ctx: Any) -> dict[str, Any]:
        return {"total": sum(row.value for row in ctx.output["fetch"])}


PRICING = {"key": "tests.pricing-api", "limit": 1}


class Quotes(Workflow):
    """Warm a cache through a limit-1 API, then fetch four quotes through it."""

    name = "tests.simulator_regressions.Quotes"

    # Each warm-up call outlives its one-second lease: the lease expires
    # while the call still runs, and the call releases it afterwards anyway.
    @task(each=lambda ctx: [1, 2, 3], throttle={**PRICING, "ttl": 1})
    def warm_up(self, ctx: Any) -> None:
        pass

    @task(
        depends_on=[warm_up],
        each=lambda ctx: ["a", "b", "c", "d"],
        enqueue=True,
        throttle={**PRICING, "ttl": 60},
        output={"quote": str},
    )
    def quote(self, ctx: Any) -> dict[str, Any]:
        return {"quote": ctx.each_value.upper()}

    @task(depends_on=[quote], dependency_wait=30)
    def done(self, ctx: Any) -> None:
        pass


# -- 1. stale parent context before enqueue --


def stale_parent_context() -> RunFactory:
    """Sub-jobs read the parent's context as it was when the parent was claimed."""
    snapshots: dict[str, JobState] = {}

    class StaleParentContext(JobRun):
        def _run_workflow(self) -> Generator[Effect, None, Outcome]:
            snapshots[self.job.id] = self.env.backend.load_state(self.job.id)
            return (yield from super()._run_workflow())

        def _run_sub_job(self, task_name: str) -> Generator[Effect, None, None]:
            parent_id = self.job.parent_id
            assert parent_id is not None
            self._load_outputs(snapshots[parent_id])
            task = self.workflow.get_task(task_name)
            value = self.job.metadata.get("each_value")
            yield from self._iteration(task, self.job.each_index, value, parent_id)

    return StaleParentContext


def test_stale_parent_context_before_enqueue() -> None:
    """The parent's context travelled to its sub-jobs as loaded when the parent
    was claimed, before ``configure``'s output was persisted. Every sub-job fell
    back to the default factor, so ``scale`` and ``total`` differ from a plain
    run."""
    buggy = simulate(run_factory=stale_parent_context(), workers=3).run(Report)
    real = simulate(workers=3).run(Report)

    assert violation(real) is None
    with pytest.raises(InvariantViolation, match=r"^outputs differ.*'scale'"):
        buggy.check()
    assert buggy.outputs[buggy.workflows[0][0]]["scale"] == [
        {"value": 1},
        {"value": 2},
        {"value": 3},
    ]


# -- 2. a sequential map resuming at the wrong iteration --


def resumes_map_at(first: Callable[[set[int]], int]) -> type[JobRun]:
    """A runner that resumes a map at ``first(done)`` instead of skipping done."""

    class ResumesMapAt(JobRun):
        def _run_iterations(
            self, task: Task, done: set[int], values: list[Any]
        ) -> Generator[Effect, None, bool]:
            redo = set(range(max(first(done), 0)))
            return (yield from super()._run_iterations(task, redo, values))

    return ResumesMapAt


CRASHES = Faults(crashes=0.25, crash_points=("before_body",))


def crashing_squares(run_factory: RunFactory | None, seed: int) -> SimulationResult:
    sim = simulate(run_factory=run_factory, workers=2, seed=seed, faults=CRASHES)
    return sim.run(Squares)


@pytest.mark.parametrize(
    "first",
    [lambda done: 0, lambda done: len(done) - 1],
    ids=["from-the-start", "one-early"],
)
def test_sequential_map_resumes_at_the_first_unfinished_iteration(
    first: Callable[[set[int]], int],
) -> None:
    """A worker crashed in the middle of an in-process map, and the job was
    recovered on another worker. The resumed run restarted the map from the
    start (or one iteration early), so a recorded iteration ran a second
    time."""
    seeds = range(30)  # workers crash at random; some seeds crash mid-map
    buggy = [violation(crashing_squares(resumes_map_at(first), s)) for s in seeds]
    real = [violation(crashing_squares(None, s)) for s in seeds]

    assert real == [None] * len(real)
    caught = [message for message in buggy if message is not None]
    assert caught, "no seed crashed a worker in the middle of the map"
    assert all(
        message.startswith("iteration ran again: 'square'[") for message in caught
    )


# -- 3. a rescheduled job marked finished --


class FinishesWhenRescheduled(JobRun):
    """Reports a finished job when the workflow asked to be rescheduled."""

    def execute(self) -> Generator[Effect, None, Outcome]:
        yield from super().execute()
        return FINISHED


def test_rescheduled_job_is_not_marked_finished() -> None:
    """On the only worker, the parent polled past its poll_timeout and
    rescheduled itself to let its sub-jobs run. The worker then recorded the
    job as finished, so ``total`` never ran although the workflow looked
    done."""
    buggy = simulate(run_factory=FinishesWhenRescheduled, workers=1).run(Report)
    real = simulate(workers=1).run(Report)

    assert violation(real) is None
    assert real.metrics.reschedules >= 1
    with pytest.raises(
        InvariantViolation, match=r"^rescheduled or unfinished job recorded as finished"
    ):
        buggy.check()


class IgnoresTheClaimer(MemoryBackend):
    """Accepts any worker's finish, as if every settle came from the holder."""

    def finish(self, job_id: str, now: float, *, worker_id: str | None = None) -> bool:
        return super().finish(job_id, now)


def test_a_late_finish_after_a_reschedule_is_refused() -> None:
    """The parent rescheduled itself, and its worker's acknowledgement of
    the run arrived afterwards as a plain "finished" (Solid Queue's bug of
    marking rescheduled jobs finished). A backend that does not check who
    holds the job takes it: ``total`` never runs."""
    late = Faults(late_finish=1.0)
    buggy = simulate(IgnoresTheClaimer, workers=1, faults=late).run(Report)
    real = simulate(workers=1, faults=late).run(Report)

    assert violation(real) is None
    notes = [e.detail["reason"] for e in real.trace if e.event == "fault.late_finish"]
    assert notes
    assert set(notes) == {"refused"}
    assert "applied" in {
        e.detail["reason"] for e in buggy.trace if e.event == "fault.late_finish"
    }
    with pytest.raises(
        InvariantViolation, match=r"^rescheduled or unfinished job recorded as finished"
    ):
        buggy.check()


def test_stale_progress_reads_only_delay_the_waiting_parent() -> None:
    """Every read of the sub-jobs' progress lags one read behind: the parent
    keeps waiting and rescheduling a little longer, and never runs ahead."""
    stale = simulate(workers=1, faults=Faults(stale_reads=1.0)).run(Report)
    fresh = simulate(workers=1).run(Report)

    assert violation(stale) is None
    assert any(e.event == "fault.stale_read" for e in stale.trace)
    assert stale.outputs == fresh.outputs
    assert stale.metrics.makespan > fresh.metrics.makespan


# -- 4. a reschedule that drops job state --


class RescheduleDropsState(MemoryBackend):
    """Reschedules a job by writing a fresh row: its progress is lost."""

    def reschedule(
        self, job_id: str, run_at: float, now: float, *, worker_id: str | None = None
    ) -> bool:
        applied = super().reschedule(job_id, run_at, now, worker_id=worker_id)
        with self._lock:
            self._states[job_id] = JobState()
        return applied


def test_reschedule_keeps_the_job_state() -> None:
    """The parent rescheduled itself while its sub-jobs ran, and the backend
    wrote the rescheduled job without its progress. When it came back it ran
    ``configure`` again, although that task had finished and been recorded."""
    buggy = simulate(RescheduleDropsState, workers=1).run(Report)
    real = simulate(workers=1).run(Report)

    assert violation(real) is None
    assert ("job-000001", "configure", 0) in buggy.reruns
    # check() names the first invariant broken: configure completing a second
    # time, after scale had started, already breaks dependency order.
    with pytest.raises(
        InvariantViolation,
        match=r"^(dependency order|iteration ran again)\b.*'configure'",
    ):
        buggy.check()


# -- 5. parent and sub-jobs sharing one concurrency key --


class OneRunAtATime(MemoryBackend):
    """Every workflow job takes its workflow's concurrency key, limit 1.

    The way Solid Queue's ``limits_concurrency`` on a job class lets one run
    of a workflow at a time; sub-jobs keep their own keys.
    """

    def enqueue(self, jobs: Any, now: float) -> list[str]:
        return super().enqueue([self._limited(job) for job in jobs], now)

    @staticmethod
    def _limited(job: NewJob) -> NewJob:
        if job.parent_id is not None:
            return job
        return job._replace(concurrency_key=job.workflow, concurrency_limit=1)


class _ParentKey:
    """A backend view that enqueues every job under one concurrency key."""

    def __init__(self, backend: QueueBackend, key: str, limit: int | None) -> None:
        self._backend, self._key, self._limit = backend, key, limit

    def enqueue(self, jobs: Any, now: float) -> list[str]:
        shared = [
            job._replace(concurrency_key=self._key, concurrency_limit=self._limit)
            for job in jobs
        ]
        return self._backend.enqueue(shared, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class SubJobsTakeParentKey(JobRun):
    """Enqueues sub-jobs under the concurrency key of the job that made them."""

    def __init__(self, env: RunEnv, job: JobRecord) -> None:
        if job.concurrency_key is not None:
            view = _ParentKey(env.backend, job.concurrency_key, job.concurrency_limit)
            env = dataclasses.replace(env, backend=view)  # type: ignore[arg-type]
        super().__init__(env, job)


def test_parent_and_sub_jobs_do_not_share_a_concurrency_key() -> None:
    """A workflow limited to one run at a time gave its sub-jobs its own
    concurrency key. The parent held the only slot while polling for them, so
    they stayed blocked behind it and nothing could ever run again. (A parent
    that reschedules gives its slot back while it waits.)"""
    buggy = simulate(OneRunAtATime, SubJobsTakeParentKey, workers=2).run(NightlyPolling)
    real = simulate(OneRunAtATime, workers=2).run(NightlyPolling)

    assert violation(real) is None
    assert buggy.deadlocked
    with pytest.raises(InvariantViolation, match=r"^deadlock"):
        buggy.check()
    jobs = buggy.backend.jobs()
    assert {job.concurrency_key for job in jobs} == {NightlyPolling.name}
    assert [job.status for job in jobs if job.parent_id] == ["blocked"] * 3


# -- 6. Solid Queue's stale claim that released a semaphore twice --


class CountingSemaphores(MemoryBackend):
    """Semaphores as counters of free slots, leases expiring after their ttl.

    The bug: a release gives a slot back even when the releasing holder's
    lease has already expired (and given its slot back once).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free: dict[str, int] = {}
        self.leases: dict[str, dict[str, float]] = {}

    def semaphore_acquire(
        self, key: str, limit: int, ttl: float, holder: str, now: float
    ) -> bool:
        self.free.setdefault(key, limit)
        leases = self.leases.setdefault(key, {})
        self._expire(key, now)
        if holder not in leases:
            if self.free[key] <= 0:
                return False
            self.free[key] -= 1
        leases[holder] = now + ttl
        return True

    def semaphore_release(self, key: str, holder: str, now: float) -> bool:
        self.leases.get(key, {}).pop(holder, None)
        self.free[key] = self.free.get(key, 0) + 1  # whether it held one or not
        return True

    def dispatch_due(self, now: float) -> int:
        for key in self.leases:
            self._expire(key, now)
        return super().dispatch_due(now)

    def _expire(self, key: str, now: float) -> None:
        leases = self.leases[key]
        for holder in [h for h, until in leases.items() if until <= now]:
            del leases[holder]
            self.free[key] += 1


def test_stale_holder_does_not_release_a_semaphore_twice() -> None:
    """Each warm-up call outlived its lease, whose slot the expiry gave back,
    and then released the semaphore again when it finished. Every stale
    release added a slot, so four calls ran at once through a limit-1 key."""
    durations = {"warm_up": 5.0, "quote": 1.0}
    buggy = simulate(CountingSemaphores, workers=5, durations=durations).run(Quotes)
    real = simulate(workers=5, durations=durations).run(Quotes)

    assert violation(real) is None
    assert real.metrics.peak_holders == {PRICING["key"]: 1}
    with pytest.raises(
        InvariantViolation,
        match=r"^throttle limit: key 'tests\.pricing-api' was held by 4 task bodies",
    ):
        buggy.check()
