"""The simulator's basic contract (SPEC §6), one behaviour per test.

Running (``run``, ``enqueue`` + ``run_until_idle``, ``run_until``,
``advance``, ``until``), virtual time (it never goes backwards, retries and
cron schedules move it, nothing sleeps for real, no thread starts), the
metrics, durations in each form, slow tasks, crash recovery, and the
dependency-wait guide's starvation case next to the same load completing.
"""

from __future__ import annotations

import gc
import random
import threading
import time
from typing import Any, ClassVar

import pytest

from job_workflow import Workflow, argument, schedule, task
from job_workflow._status import aggregate_status
from job_workflow.errors import InvariantViolation
from job_workflow.simulator import (
    Faults,
    Simulation,
    SimulationResult,
    TraceEntry,
)

START = 1_700_000_000.0  # the simulation's default virtual start


class Doubler(Workflow):
    """A map task of sub-jobs (two at a time) and a task that sums them."""

    name = "tests.sim_basics.doubler"
    items = argument(list[int])

    @task(
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 2},
        throttle={"key": "tests.sim_basics.api", "limit": 1},
        output={"doubled": int},
    )
    def double(self, ctx: Any) -> dict[str, int]:
        return {"doubled": ctx.each_value * 2}

    @task(
        depends_on=["double"],
        dependency_wait={"poll_timeout": 3, "poll_interval": 1, "reschedule_delay": 2},
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.doubled for o in ctx.output["double"])}


class Serial(Workflow):
    """Three plain tasks one after another: the makespan is their sum."""

    name = "tests.sim_basics.serial"

    @task(output={"n": int})
    def fetch(self, ctx: Any) -> dict[str, int]:
        return {"n": 1}

    @task(depends_on=["fetch"], output={"n": int})
    def parse(self, ctx: Any) -> dict[str, int]:
        return {"n": ctx.output["fetch"][0].n + 1}

    @task(depends_on=["parse"], output={"n": int})
    def store(self, ctx: Any) -> dict[str, int]:
        return {"n": ctx.output["parse"][0].n + 1}


class Squares(Workflow):
    """A map task run in the workflow's own job, iteration by iteration."""

    name = "tests.sim_basics.squares"
    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, output={"square": int})
    def square(self, ctx: Any) -> dict[str, int]:
        return {"square": ctx.each_value**2}


class Flaky(Workflow):
    """Fails its first two attempts; retries wait an hour each."""

    name = "tests.sim_basics.flaky"

    @task(
        retry={"count": 2, "strategy": "linear", "base_delay": 3600},
        output={"attempts": int},
    )
    def call(self, ctx: Any) -> dict[str, int]:
        if ctx.retry_count < 2:
            raise ConnectionError("service down")
        return {"attempts": ctx.retry_count + 1}


@schedule("every hour", key="hourly")
class Hourly(Workflow):
    name = "tests.sim_basics.hourly"

    @task(output={"ok": bool})
    def tick(self, ctx: Any) -> dict[str, bool]:
        return {"ok": True}


class PollingParent(Workflow):
    """The guide's starving parent: polls for its sub-jobs, holding its worker."""

    name = "tests.sim_basics.polling_parent"
    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, enqueue=True, output={"v": int})
    def fetch(self, ctx: Any) -> dict[str, int]:
        return {"v": ctx.each_value}

    @task(depends_on=["fetch"], output={"total": int})
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.v for o in ctx.output["fetch"])}


class ReschedulingParent(Workflow):
    """The same load with a dependency wait that gives its worker back."""

    name = "tests.sim_basics.rescheduling_parent"
    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, enqueue=True, output={"v": int})
    def fetch(self, ctx: Any) -> dict[str, int]:
        return {"v": ctx.each_value}

    @task(
        depends_on=["fetch"],
        dependency_wait={
            "poll_timeout": 30,
            "poll_interval": 5,
            "reschedule_delay": 10,
        },
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.v for o in ctx.output["fetch"])}


class Guarded(Workflow):
    """One call with a 5 s timeout and one retry a minute later."""

    name = "tests.sim_basics.guarded"
    calls: ClassVar[list[int]] = []

    @task(
        timeout=5,
        retry={"count": 1, "strategy": "linear", "base_delay": 60},
        output={"n": int},
    )
    def call(self, ctx: Any) -> dict[str, int]:
        Guarded.calls.append(ctx.retry_count)
        return {"n": 1}


def events(result: SimulationResult, name: str) -> list[Any]:
    return [entry for entry in result.trace if entry.event == name]


# -- running --


def test_run_enqueues_one_workflow_and_runs_it_to_the_end() -> None:
    result = Simulation(workers=3, seed=1).run(Doubler, items=[1, 2, 3])

    [job_id] = result.statuses
    assert result.statuses == {job_id: "succeeded"}
    assert result.outputs[job_id] == {
        "double": [{"doubled": 2}, {"doubled": 4}, {"doubled": 6}],
        "total": [{"total": 12}],
    }
    assert not result.deadlocked
    result.check()


def test_enqueue_returns_job_ids_and_nothing_runs_before_run_until_idle() -> None:
    sim = Simulation(workers=2, seed=0)
    first = sim.enqueue(Squares, items=[1, 2])
    second = sim.enqueue(Squares, items=[3])

    assert first != second
    before = sim.result()
    assert before.statuses == {first: "pending", second: "pending"}
    assert sim.now == START

    after = sim.run_until_idle()
    assert after.statuses == {first: "succeeded", second: "succeeded"}
    assert after.outputs[second] == {"square": [{"square": 9}]}
    after.check()


def test_run_until_stops_at_an_absolute_virtual_time_and_can_go_on() -> None:
    sim = Simulation(workers=1, seed=0)
    job_id = sim.enqueue(Serial)

    partial = sim.run_until(START + 1.5)
    assert sim.now == START + 1.5
    assert partial.statuses[job_id] == "running"
    assert [e.detail["task_name"] for e in events(partial, "task.complete")] == [
        "fetch",
        "parse",
    ]

    done = sim.run_until_idle()
    assert done.statuses[job_id] == "succeeded"
    assert done.outputs[job_id]["store"] == [{"n": 3}]
    done.check()


def test_advance_runs_for_a_number_of_virtual_seconds() -> None:
    sim = Simulation(workers=1, seed=0)
    job_id = sim.enqueue(Serial)

    sim.advance(1.0)
    sim.advance(1.0)
    assert sim.now == START + 2.0
    assert sim.result().statuses[job_id] == "running"

    finished = sim.advance(10.0)
    assert sim.now == START + 12.0  # advance moves the clock even when idle
    assert finished.statuses[job_id] == "succeeded"
    assert finished.metrics.makespan == 12.0


def test_until_bounds_a_run_and_leaves_the_rest_unfinished() -> None:
    sim = Simulation(workers=1, seed=0)
    result = sim.run(Flaky, until=START + 60)

    [job_id] = result.statuses
    assert result.statuses[job_id] == "running"  # waiting out its first retry
    assert not result.deadlocked
    assert len(events(result, "task.retry")) == 1

    assert sim.run_until_idle().statuses[job_id] == "succeeded"


@pytest.mark.parametrize("moment", [2.0, 9.0, None])
def test_statuses_agree_with_the_backend_s_jobs(moment: float | None) -> None:
    """The result reads statuses from the memory backend without a record per
    job; they are what WorkflowStatus computes from the records, mid-run too."""
    faults = Faults(task_errors=0.3, crashes=0.05)
    sim = Simulation(workers=2, seed=4, faults=faults)
    ids = [sim.enqueue(Doubler, items=[n, n + 1, n + 2]) for n in range(3)]
    ids.append(sim.enqueue(Flaky))
    result = sim.run_until_idle() if moment is None else sim.run_until(START + moment)

    backend = sim.backend
    expected = {}
    for job_id in ids:
        job = backend.get_job(job_id)
        assert job is not None
        expected[job_id] = aggregate_status(job, backend.sub_jobs(job_id))
    assert result.statuses == expected
    assert len(set(expected.values())) > 1 or moment is None


def test_virtual_time_never_goes_backwards_in_the_trace() -> None:
    faults = Faults(task_errors=0.2, crashes=0.1, slow_tasks=0.2, restart_delay=3.0)
    sim = Simulation(workers=3, seed=11, faults=faults)
    for n in range(4):
        sim.enqueue(Doubler, items=list(range(n, n + 5)))
    result = sim.run_until_idle()

    times = [entry.time for entry in result.trace]
    assert times == sorted(times)
    assert times[-1] == result.metrics.makespan
    for span in result.spans:
        assert 0 <= span.start - START <= span.end - START <= times[-1]


def test_the_trace_reads_like_a_list_of_entries() -> None:
    sim = Simulation(workers=1, seed=0)
    job_id = sim.enqueue(Serial)
    trace = sim.run_until_idle().trace
    entries = list(trace)

    assert len(trace) == len(entries) > 3
    assert all(isinstance(entry, TraceEntry) for entry in entries)
    assert entries[0] == TraceEntry(
        0.0, None, "job.enqueue", job_id, {"workflow": Serial.name}
    )
    assert trace[0] == entries[0]
    assert trace[-1] == entries[-1]
    assert trace[1:3] == entries[1:3]
    assert trace == entries
    assert trace != entries[:-1]
    assert trace != ["not an entry"] * len(entries)
    assert trace != "x" * len(entries)
    assert trace != [*entries[:-1], entries[-1]._replace(event="job.fail")]
    assert trace.index(entries[2]) == 2
    assert [e.event for e in trace].count("task.complete") == 3
    with pytest.raises(IndexError):
        trace[len(entries)]


def test_a_result_s_trace_stays_as_it_was_when_the_run_goes_on() -> None:
    sim = Simulation(workers=1, seed=0)
    sim.enqueue(Serial)
    partial = sim.run_until(START + 1.5)
    before = list(partial.trace)

    done = sim.run_until_idle()

    assert partial.trace == before
    assert len(done.trace) > len(partial.trace)
    assert done.trace[: len(before)] == before


def test_the_trace_leaves_nothing_for_the_cycle_collector() -> None:
    """A long run records hundreds of thousands of entries; none of them may
    stay tracked by the collector, whose passes would rescan them all."""
    sim = Simulation(workers=2, seed=3, faults=Faults(task_errors=0.2))
    for n in range(3):
        sim.enqueue(Doubler, items=[n, n + 1])
    trace = sim.run_until_idle().trace
    gc.collect()

    tracked = [
        entry
        for entry in trace._rows + trace._details  # type: ignore[attr-defined]
        if gc.is_tracked(entry)
    ]
    assert len(trace) > 50
    assert tracked == []


# -- metrics --


def test_metrics_report_busy_polling_retries_and_reschedules() -> None:
    result = Simulation(workers=3, seed=2).run(Doubler, items=[1, 2, 3, 4])
    metrics = result.metrics

    # Four sub-jobs and the total, one virtual second each.
    assert sum(metrics.worker_busy.values()) == 5.0
    assert set(metrics.worker_busy) == {"w0", "w1", "w2"}
    assert sum(metrics.worker_polling.values()) > 0
    assert metrics.reschedules == len(events(result, "job.reschedule")) > 0
    assert metrics.retries == 0
    assert metrics.makespan == result.trace[-1].time


def test_metrics_report_peak_holders_and_peak_concurrency() -> None:
    result = Simulation(workers=4, seed=3).run(Doubler, items=[1, 2, 3, 4, 5])
    [job_id] = result.statuses

    # The throttle (limit 1) serialises the bodies; the concurrency limit 2
    # lets two sub-jobs run (one waiting for the throttle) at once.
    assert result.metrics.peak_holders == {"tests.sim_basics.api": 1}
    assert result.metrics.peak_concurrency == {f"{job_id}:double": 2}
    result.check()


def test_metrics_count_retries() -> None:
    result = Simulation(workers=1, seed=0).run(Flaky)
    assert result.metrics.retries == 2
    assert result.metrics.reschedules == 0


# -- durations --


def test_a_number_is_every_task_duration() -> None:
    result = Simulation(workers=1, seed=0, durations=2.5).run(Serial)
    assert result.metrics.makespan == 7.5
    assert result.metrics.worker_busy == {"w0": 7.5}


def test_a_dict_gives_durations_per_task_and_the_default_for_the_rest() -> None:
    durations = {"fetch": 10.0, "store": 0.5}
    result = Simulation(workers=1, seed=0, durations=durations).run(Serial)
    assert result.metrics.makespan == 10.0 + 1.0 + 0.5


def test_a_callable_duration_gets_the_context_and_the_seeded_random() -> None:
    seen: list[tuple[int, float]] = []

    def duration(ctx: Any, rng: random.Random) -> float:
        seconds = ctx.each_value + rng.random()
        seen.append((ctx.each_value, seconds))
        return seconds

    def run(seed: int) -> SimulationResult:
        sim = Simulation(workers=1, seed=seed, durations={"square": duration})
        return sim.run(Squares, items=[1, 2, 3])

    first = run(5)
    assert [value for value, _ in seen] == [1, 2, 3]
    assert first.metrics.makespan == pytest.approx(sum(s for _, s in seen))
    assert 6 < first.metrics.makespan < 9

    seen.clear()
    assert run(5).metrics.makespan == first.metrics.makespan
    assert run(6).metrics.makespan != first.metrics.makespan


def test_slow_tasks_multiply_their_durations() -> None:
    slow = Faults(slow_tasks=1.0, slow_factor=10.0)
    result = Simulation(workers=1, seed=0, faults=slow).run(Serial)

    assert result.metrics.makespan == 30.0
    assert len(events(result, "fault.slow_task")) == 3
    result.check()


# -- virtual time: retries, schedules, no real waits --


def test_retries_with_delays_advance_virtual_time() -> None:
    result = Simulation(workers=1, seed=0).run(Flaky)
    [job_id] = result.statuses

    assert result.statuses[job_id] == "succeeded"
    # Each failed attempt takes its second too, then waits an hour.
    assert [e.time for e in events(result, "task.retry")] == [1.0, 3602.0]
    # Three one-second attempts and two hour-long waits.
    assert result.metrics.makespan == 7203.0
    assert result.outputs[job_id] == {"call": [{"attempts": 3}]}
    result.check()


def test_an_attempt_longer_than_its_timeout_fails_after_the_timeout() -> None:
    Guarded.calls.clear()
    result = Simulation(workers=1, seed=0, durations={"call": 8.0}).run(Guarded)
    [job_id] = result.statuses

    assert result.statuses[job_id] == "failed"
    [retry] = events(result, "task.retry")
    [error] = events(result, "task.error")
    assert (retry.detail["error_class"], retry.time) == ("TaskTimeoutError", 5.0)
    # 5 s, a minute's wait, 5 s again: each attempt stopped at its timeout.
    assert (error.detail["error_class"], error.time) == ("TaskTimeoutError", 70.0)
    assert Guarded.calls == [], "an attempt that times out runs no body here"
    result.check()


def test_an_attempt_within_its_timeout_succeeds() -> None:
    Guarded.calls.clear()
    result = Simulation(workers=1, seed=0, durations={"call": 4.0}).run(Guarded)

    assert set(result.statuses.values()) == {"succeeded"}
    assert result.metrics.makespan == 4.0
    assert Guarded.calls == [0]
    result.check()


def test_an_injected_failure_takes_the_attempt_s_time() -> None:
    always = Faults(task_errors=1.0)
    result = Simulation(workers=1, seed=0, faults=always, durations=3.0).run(Serial)

    assert set(result.statuses.values()) == {"failed"}
    [error] = events(result, "task.error")
    assert (error.detail["error_class"], error.time) == ("InjectedTaskError", 3.0)
    assert result.metrics.makespan == 3.0


def test_a_cron_schedule_fires_in_virtual_time() -> None:
    sim = Simulation(workers=1, seed=0)
    sim.schedule(Hourly)

    # The start (22:13:20 UTC) is 2,800 s before the next full hour.
    result = sim.run_until(START + 2800 + 2 * 3600 + 1)

    fired = events(result, "schedule.fire")
    assert [e.time for e in fired] == [2800.0, 6400.0, 10000.0]
    assert {e.detail["reason"] for e in fired} == {"hourly"}
    assert list(result.statuses.values()) == ["succeeded"] * 3
    result.check()


def test_run_until_idle_does_not_wait_for_the_next_cron_firing() -> None:
    sim = Simulation(workers=1, seed=0)
    sim.schedule(Hourly)
    result = sim.run_until_idle()
    assert result.statuses == {}
    assert sim.now == START


def test_the_simulator_never_sleeps_for_real(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called")

    monkeypatch.setattr(time, "sleep", no_sleep)
    sim = Simulation(workers=2, seed=0)
    for _ in range(3):
        sim.enqueue(Flaky)
    result = sim.run_until_idle()

    assert set(result.statuses.values()) == {"succeeded"}
    assert result.metrics.makespan >= 2 * 3600  # hours of virtual waiting


def test_the_simulator_never_starts_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_thread(self: threading.Thread) -> None:
        raise AssertionError(f"thread {self.name} started")

    before = threading.active_count()
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    faults = Faults(crashes=0.1, task_errors=0.1)
    result = Simulation(workers=4, seed=4, faults=faults).run(Doubler, items=[1, 2])

    assert threading.active_count() == before
    result.check()


class Probe(Workflow):
    """Notes the cycle collector's first threshold from inside a task."""

    name = "tests.sim_basics.probe"
    seen: ClassVar[list[int]] = []

    @task
    def look(self, ctx: Any) -> None:
        Probe.seen.append(gc.get_threshold()[0])


@pytest.mark.parametrize("how", ["run_until_idle", "run_until"])
def test_a_run_relaxes_the_collector_and_restores_it_after(how: str) -> None:
    """Jobs allocate many containers: while a run goes on, the collector's
    first threshold is at least 20,000; after it, as the caller had it."""
    before = gc.get_threshold()
    Probe.seen.clear()
    sim = Simulation(workers=1, seed=0)
    sim.enqueue(Probe)
    try:
        gc.set_threshold(500, before[1], before[2])
        if how == "run_until":
            sim.run_until(START + 10)
        else:
            sim.run_until_idle()
        assert gc.get_threshold() == (500, before[1], before[2])
    finally:
        gc.set_threshold(*before)
    assert Probe.seen == [20_000]


# -- crashes and recovery --


@pytest.mark.parametrize("seed", range(5))
def test_crashed_workers_recover_and_every_workflow_completes(seed: int) -> None:
    faults = Faults(crashes=0.3, crash_points=("before_body",), alive_threshold=30.0)
    sim = Simulation(workers=3, seed=seed, faults=faults)
    ids = [sim.enqueue(Squares, items=[n, n + 1, n + 2]) for n in range(4)]
    ids += [sim.enqueue(Doubler, items=[n, 2 * n]) for n in range(3)]
    result = sim.run_until_idle()

    assert events(result, "worker.crash")
    assert events(result, "worker.recover")
    assert {e.detail["reason"] for e in events(result, "worker.crash")} == {
        "before_body"
    }
    assert all(result.statuses[job_id] == "succeeded" for job_id in ids)
    for n, job_id in enumerate(ids[:4]):
        squares = [{"square": v**2} for v in (n, n + 1, n + 2)]
        assert result.outputs[job_id] == {"square": squares}
    result.check()  # outputs equal perform_now's, no iteration ran twice


def test_a_crashed_worker_restarts_under_a_new_id() -> None:
    faults = Faults(
        crashes=1.0, crash_points=("claimed",), restart_delay=5.0, alive_threshold=5.0
    )
    sim = Simulation(workers=1, seed=0, faults=faults)
    job_id = sim.enqueue(Serial)
    result = sim.run_until(START + 12)

    # Each incarnation claims the recovered job again and dies at once.
    restarts = events(result, "worker.restart")
    assert [(e.time, e.worker) for e in restarts] == [(5.0, "w0#1"), (10.0, "w0#2")]
    claims = events(result, "job.claim")
    assert [(e.worker, e.job_id) for e in claims] == [
        ("w0", job_id),
        ("w0#1", job_id),
        ("w0#2", job_id),
    ]


# -- the dependency-wait guide's starvation case --

LOAD = [[1, 2], [3, 4], [5, 6]]


def test_polling_parents_as_many_as_workers_deadlock() -> None:
    sim = Simulation(workers=len(LOAD), seed=0)
    for items in LOAD:
        sim.enqueue(PollingParent, items=items)
    result = sim.run_until_idle()

    assert result.deadlocked
    assert set(result.statuses.values()) == {"running"}
    assert all(w > 0 for w in result.metrics.worker_polling.values())
    with pytest.raises(InvariantViolation, match="deadlock"):
        result.check()


def test_the_same_load_with_dependency_wait_completes() -> None:
    sim = Simulation(workers=len(LOAD), seed=0)
    ids = [sim.enqueue(ReschedulingParent, items=items) for items in LOAD]
    result = sim.run_until_idle()

    assert not result.deadlocked
    assert result.metrics.reschedules > 0
    assert [result.outputs[job_id]["total"] for job_id in ids] == [
        [{"total": 3}],
        [{"total": 7}],
        [{"total": 11}],
    ]
    result.check()


def test_one_spare_worker_is_enough_for_polling_parents() -> None:
    sim = Simulation(workers=len(LOAD) + 1, seed=0)
    for items in LOAD:
        sim.enqueue(PollingParent, items=items)
    result = sim.run_until_idle()

    assert not result.deadlocked
    assert set(result.statuses.values()) == {"succeeded"}
    result.check()
