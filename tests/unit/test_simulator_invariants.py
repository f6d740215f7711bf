"""Every invariant of ``SimulationResult.check()`` fails when a part is wrong.

Each case runs one scenario twice: with a deliberately wrong backend (a
``MemoryBackend`` subclass) or a deliberately wrong runner (a ``JobRun``
subclass passed as ``run_factory``), where ``check()`` must raise
``InvariantViolation`` naming that invariant; and with the real parts, where
``check()`` must pass. The pair proves that the wrong part, and nothing else
in the scenario, is what breaks the invariant.

A backend given to ``Simulation(backend=...)`` cannot be built on the
simulation's clock, which ``Simulation.__init__`` creates; ``simulate()``
builds the backend first and hands it the clock afterwards (a queued
``MemoryBackend`` reads its clock only in ``clear_queue`` and ``drain``, which
a simulation never calls, so this only keeps it honest).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pytest

from job_workflow import Workflow, argument, task
from job_workflow.backends.memory import MemoryBackend
from job_workflow.core._options import DependencyWait
from job_workflow.core._runner import Effect, JobRun, Outcome, RunEnv
from job_workflow.core._task import Task
from job_workflow.core.ports import JobRecord, JobState
from job_workflow.errors import InvariantViolation
from job_workflow.simulator import Faults, Simulation, SimulationResult

RunFactory = Callable[[RunEnv, JobRecord], JobRun]
HORIZON = 600.0  # virtual seconds a one-worker fan-out needs at most


# -- workflows --


class Fanout(Workflow):
    """Prepare a factor, scale each item in a sub-job, total the results."""

    name = "tests.simulator_invariants.Fanout"

    items = argument(list[int], default=[1, 2, 3])

    @task(output={"factor": int})
    def prepare(self, ctx: Any) -> dict[str, Any]:
        return {"factor": 10}

    @task(
        depends_on=[prepare],
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 2},
        output={"value": int},
    )
    def scale(self, ctx: Any) -> dict[str, Any]:
        return {"value": ctx.each_value * ctx.output["prepare"][0].factor}

    @task(
        depends_on=[scale],
        dependency_wait={"poll_timeout": 4, "poll_interval": 1, "reschedule_delay": 2},
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, Any]:
        return {"total": sum(row.value for row in ctx.output["scale"])}


class Throttled(Workflow):
    """Four sub-jobs calling one service that allows a single caller."""

    name = "tests.simulator_invariants.Throttled"

    @task(
        each=lambda ctx: [1, 2, 3, 4],
        enqueue=True,
        throttle={"key": "tests.service", "limit": 1},
        output={"value": int},
    )
    def call(self, ctx: Any) -> dict[str, Any]:
        return {"value": ctx.each_value}

    @task(depends_on=[call], dependency_wait=30)
    def done(self, ctx: Any) -> None:
        pass


class ServiceDown(Workflow):
    """A task whose every attempt fails, retried twice."""

    name = "tests.simulator_invariants.ServiceDown"

    @task(retry=2)
    def call(self, ctx: Any) -> None:
        raise ConnectionError("service unavailable")


class Squares(Workflow):
    """A sequential map run in the workflow's own job, one iteration a second."""

    name = "tests.simulator_invariants.Squares"

    @task(each=lambda ctx: list(range(8)), output={"square": int})
    def square(self, ctx: Any) -> dict[str, Any]:
        return {"square": ctx.each_value**2}


# -- deliberately wrong backends --


class RescheduleInMilliseconds(MemoryBackend):
    """Reads a reschedule's delay as milliseconds: due a thousand times later."""

    def reschedule(
        self, job_id: str, run_at: float, now: float, *, worker_id: str | None = None
    ) -> bool:
        late = now + (run_at - now) * 1000
        return super().reschedule(job_id, late, now, worker_id=worker_id)


class IgnoresThrottleLimit(MemoryBackend):
    """Grants every semaphore request, whatever the limit."""

    def semaphore_acquire(
        self, key: str, limit: int, ttl: float, holder: str, now: float
    ) -> bool:
        return super().semaphore_acquire(key, 1_000_000, ttl, holder, now)


class IgnoresConcurrencyLimit(MemoryBackend):
    """Makes every due job ready at once, never blocking one on its key."""

    def _make_ready(self, job: Any) -> None:
        self._push_ready(job)


class FinishesOnReschedule(MemoryBackend):
    """Settles a rescheduled job as finished instead of scheduling it again."""

    def reschedule(
        self, job_id: str, run_at: float, now: float, *, worker_id: str | None = None
    ) -> bool:
        return self.finish(job_id, now, worker_id=worker_id)


class ForgetsIterations(MemoryBackend):
    """Persists each iteration but never reads the finished indices back."""

    def load_state(self, job_id: str, tasks: Any = None) -> JobState:
        state = super().load_state(job_id, tasks)
        return dataclasses.replace(state, iterations={})


class OneOutputSlot(MemoryBackend):
    """Stores every iteration's output at index 0: each overwrites the last."""

    def record_iteration(
        self,
        job_id: str,
        task_name: str,
        each_index: int,
        output: dict[str, Any] | None,
        **kw: Any,
    ) -> None:
        super().record_iteration(job_id, task_name, each_index, None, **kw)
        if output is not None:
            super().record_iteration(job_id, task_name, 0, output)


# -- deliberately wrong runners --


def with_options(task: Task, **changes: Any) -> Task:
    """A copy of ``task`` whose options differ as given (for wrong runners)."""
    return dataclasses.replace(
        task, options=dataclasses.replace(task.options, **changes)
    )


class IgnoresDependencyWait(JobRun):
    """Polls for sub-jobs holding its worker, whatever dependency_wait says."""

    def _wait_for(
        self, task: Task, dependency: str, state: JobState
    ) -> Generator[Effect, None, Outcome | None]:
        interval = task.options.dependency_wait.poll_interval
        poll_only = DependencyWait(poll_timeout=0, poll_interval=interval)
        task = with_options(task, dependency_wait=poll_only)
        return (yield from super()._wait_for(task, dependency, state))


class DoesNotWaitForSubJobs(JobRun):
    """Runs a dependent task as soon as the sub-jobs it needs are enqueued."""

    def _wait_for_dependencies(
        self, task: Task, state: JobState
    ) -> Generator[Effect, None, Outcome | None]:
        yield from ()
        return None


class RetriesOnceTooOften(JobRun):
    """Counts retries from zero: one more retry than the task allows."""

    def _iteration(
        self, task: Task, index: int | None, value: Any, owner_id: str, **kw: Any
    ) -> Generator[Effect, None, None]:
        retry = task.options.retry
        task = with_options(
            task, retry=dataclasses.replace(retry, count=retry.count + 1)
        )
        yield from super()._iteration(task, index, value, owner_id, **kw)


# -- running a scenario --


def simulate(
    backend: type[MemoryBackend] = MemoryBackend,
    run_factory: RunFactory | None = None,
    **options: Any,
) -> Simulation:
    """A Simulation on a fresh ``backend`` of the given class."""
    ids = itertools.count(1)
    queue = backend("queued", id_factory=lambda: f"job-{next(ids):06d}")
    sim = Simulation(backend=queue, run_factory=run_factory, **options)
    queue._clock = sim.clock  # the clock exists only once the Simulation does
    return sim


Scenario = Callable[[type[MemoryBackend], RunFactory | None], SimulationResult]


def starving_parents(
    backend: type[MemoryBackend], run_factory: RunFactory | None
) -> SimulationResult:
    sim = simulate(backend, run_factory, workers=2)
    sim.enqueue(Fanout)
    sim.enqueue(Fanout)
    return sim.run_until_idle()


def one_worker_fanout(
    backend: type[MemoryBackend], run_factory: RunFactory | None
) -> SimulationResult:
    # One worker: the parent must reschedule to let its sub-jobs run.
    sim = simulate(backend, run_factory, workers=1)
    return sim.run(Fanout, until=sim.now + HORIZON)


def fanout(
    backend: type[MemoryBackend], run_factory: RunFactory | None
) -> SimulationResult:
    sim = simulate(backend, run_factory, workers=4)
    return sim.run(Fanout, items=[1, 2, 3, 4])


def throttled(
    backend: type[MemoryBackend], run_factory: RunFactory | None
) -> SimulationResult:
    return simulate(backend, run_factory, workers=5).run(Throttled)


def service_down(
    backend: type[MemoryBackend], run_factory: RunFactory | None
) -> SimulationResult:
    return simulate(backend, run_factory, workers=1).run(ServiceDown)


def crashing_squares(
    backend: type[MemoryBackend], run_factory: RunFactory | None
) -> SimulationResult:
    """The first of several seeds whose check() fails, else the last one.

    Workers crash in the middle of an iteration now and then, so the job
    resumes mid-map; which seeds crash where is the simulation's business.
    """
    faults = Faults(crashes=0.25, crash_points=("before_body",))
    result = None
    for seed in range(30):
        sim = simulate(backend, run_factory, workers=2, seed=seed, faults=faults)
        result = sim.run(Squares)
        try:
            result.check()
        except InvariantViolation:
            return result
    assert result is not None
    return result


@dataclass(frozen=True)
class Case:
    invariant: str  # the words check()'s message starts with
    scenario: Scenario
    backend: type[MemoryBackend] = MemoryBackend
    run_factory: RunFactory | None = None

    def run(self, *, wrong: bool) -> SimulationResult:
        if wrong:
            return self.scenario(self.backend, self.run_factory)
        return self.scenario(MemoryBackend, None)


CASES = {
    "deadlock": Case("deadlock", starving_parents, run_factory=IgnoresDependencyWait),
    "job-lost-or-stuck": Case(
        "job lost or stuck", one_worker_fanout, backend=RescheduleInMilliseconds
    ),
    "dependency-order": Case(
        "dependency order", fanout, run_factory=DoesNotWaitForSubJobs
    ),
    "throttle-limit": Case("throttle limit", throttled, backend=IgnoresThrottleLimit),
    "concurrency-limit": Case(
        "concurrency limit", fanout, backend=IgnoresConcurrencyLimit
    ),
    "retry-bounds": Case("retry bounds", service_down, run_factory=RetriesOnceTooOften),
    "finished-means-done": Case(
        "rescheduled or unfinished job recorded as finished",
        one_worker_fanout,
        backend=FinishesOnReschedule,
    ),
    "iteration-ran-again": Case(
        "iteration ran again", crashing_squares, backend=ForgetsIterations
    ),
    "outputs-differ": Case(
        "outputs differ from perform_now", fanout, backend=OneOutputSlot
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_wrong_part_breaks_the_invariant(case: Case) -> None:
    result = case.run(wrong=True)

    with pytest.raises(InvariantViolation, match=f"^{re.escape(case.invariant)}"):
        result.check()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_same_scenario_passes_with_the_real_parts(case: Case) -> None:
    result = case.run(wrong=False)

    result.check()
    assert not result.deadlocked
    assert set(result.statuses.values()) <= {"succeeded", "failed"}


def test_every_invariant_of_check_has_a_case() -> None:
    # One case per invariant: a new invariant needs a case here too.
    assert len(CASES) == len(SimulationResult(**_empty_result())._invariants())


def test_the_deadlocked_run_shows_every_worker_polling() -> None:
    result = CASES["deadlock"].run(wrong=True)

    assert result.deadlocked
    assert result.trace[-1].event == "simulation.deadlock"
    assert all(seconds > 0 for seconds in result.metrics.worker_polling.values())


def test_the_throttle_violation_is_visible_in_the_metrics() -> None:
    wrong = CASES["throttle-limit"].run(wrong=True)
    right = CASES["throttle-limit"].run(wrong=False)

    assert wrong.metrics.peak_holders["tests.service"] > 1
    assert right.metrics.peak_holders["tests.service"] == 1


def test_the_retry_runner_retried_exactly_once_more() -> None:
    wrong = CASES["retry-bounds"].run(wrong=True)
    right = CASES["retry-bounds"].run(wrong=False)

    assert (wrong.metrics.retries, right.metrics.retries) == (3, 2)
    assert set(right.statuses.values()) == {"failed"}


def _empty_result() -> dict[str, Any]:
    fields = {f.name: None for f in dataclasses.fields(SimulationResult)}
    return {**fields, "compare_outputs": True}
