"""Dependency wait: a parent waiting for its sub-jobs without starving workers.

Covers the Ruby guide DEPENDENCY_WAIT.md and SPEC §4 on
``MemoryBackend("queued")`` with real worker threads and a ManualClock (every
poll, reschedule delay and idle wait moves virtual time only): with a
positive ``poll_timeout`` a parent on the only worker thread polls that long,
reschedules itself ``reschedule_delay`` ahead (event ``dependent.reschedule``,
job back to "scheduled", never recorded as finished), lets its own sub-jobs
run, then resumes at the waiting task without re-running finished tasks; a
sub-job failing for good fails the waiting task with
``DependencyFailedError`` naming it, and the workflow; the starvation the
guide warns about (polling-only parents as many as the workers never let
their sub-jobs run, and ``drain`` times out) next to the same load completing
with dependency_wait; and validation of the option's forms.
"""

import threading

import pytest

from job_workflow import (
    Workflow,
    WorkflowStatus,
    argument,
    events,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.errors import InvalidOptionError

DRAIN_TIMEOUT = 30.0
STARVE_TIMEOUT = 2.0  # real seconds given to a drain that cannot finish
GRACE = 2.0  # real seconds past a drain's timeout before the test stops it


class WorkerStopped(BaseException):
    """Raised into a worker the test had to stop (not an Exception on purpose:
    the runner must not record it as a job failure)."""


class StoppableClock(ManualClock):
    """A ManualClock whose ``sleep`` raises once stopped.

    A worker stuck polling only ever calls ``sleep``; stopping the clock ends
    it, so a drain that never returns cannot leak spinning threads into later
    tests.
    """

    def __init__(self):
        super().__init__()
        self.stopped = threading.Event()

    def sleep(self, seconds):
        if self.stopped.is_set():
            raise WorkerStopped
        super().sleep(seconds)


@pytest.fixture
def clock():
    manual = StoppableClock()
    with use_clock(manual):
        yield manual
    manual.stopped.set()


@pytest.fixture
def backend(clock):
    queued = MemoryBackend("queued")
    with use_backend(queued):
        yield queued


def drain_in_background(backend, clock, threads, timeout):
    """Drain on a helper thread; returns (returned in time, error raised)."""
    outcome = {}

    def run():
        try:
            backend.drain(threads=threads, timeout=timeout)
            outcome["error"] = None
        except BaseException as exc:  # reported to the test below
            outcome["error"] = exc

    helper = threading.Thread(target=run, daemon=True)
    helper.start()
    helper.join(timeout + GRACE)
    returned = not helper.is_alive()
    if not returned:
        clock.stopped.set()
        helper.join(GRACE)
    return returned, outcome.get("error")


# --- rescheduling on one worker thread ----------------------------------------


class Recorder:
    """Counts body calls and what sub-jobs saw of their parent."""

    def __init__(self):
        self.calls = {}
        self.parent_seen = []
        self._lock = threading.Lock()

    def call(self, name):
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1


def rescheduling_workflow(recorder, backend, wait):
    class Rescheduling(Workflow):
        name = "tests.queued.depwait.Rescheduling"
        items = argument(list[int])

        @task(output={"offset": int})
        def prepare(self, ctx):
            recorder.call("prepare")
            return {"offset": 100}

        @task(
            depends_on=[prepare],
            each=lambda ctx: ctx.arguments.items,
            enqueue={"concurrency": 2},
            output={"value": int},
        )
        def process_items(self, ctx):
            recorder.call(f"process_items[{ctx.each_index}]")
            parent_id = backend.get_job(ctx.job_id).parent_id
            parent = backend.get_job(parent_id)
            status = WorkflowStatus.find(parent_id).status
            recorder.parent_seen.append((parent.status, parent.finished_at, status))
            return {"value": ctx.each_value + ctx.output["prepare"][0].offset}

        @task(
            depends_on=[process_items],
            dependency_wait=wait,
            output={"total": int},
        )
        def aggregate(self, ctx):
            recorder.call("aggregate")
            return {"total": sum(o.value for o in ctx.output["process_items"])}

    return Rescheduling


def test_parent_reschedules_and_lets_its_sub_jobs_run_on_one_thread(backend):
    recorder = Recorder()
    wait = {"poll_timeout": 10, "poll_interval": 2, "reschedule_delay": 5}
    workflow = rescheduling_workflow(recorder, backend, wait)

    with events.capture("dependent.reschedule") as rescheduled:
        handle = workflow.perform_later(items=[1, 2, 3])
        backend.drain(threads=1, timeout=DRAIN_TIMEOUT)

    assert handle.status() == "succeeded"
    [event] = rescheduled
    assert event.payload["job_id"] == handle.job_id
    assert event.payload["task_name"] == "aggregate"
    assert event.payload["dependent_task_name"] == "process_items"
    assert event.payload["reschedule_delay"] == 5
    subs = backend.sub_jobs(handle.job_id, "process_items")
    assert {sub.status for sub in subs} == {"finished"}
    assert backend.get_job(handle.job_id).executions == 2


def test_rescheduled_parent_is_scheduled_not_finished_while_sub_jobs_run(backend):
    recorder = Recorder()
    workflow = rescheduling_workflow(recorder, backend, 10)

    handle = workflow.perform_later(items=[1, 2, 3])
    backend.drain(threads=1, timeout=DRAIN_TIMEOUT)

    assert recorder.parent_seen == [("scheduled", None, "running")] * 3
    assert backend.get_job(handle.job_id).status == "finished"


def test_resumed_parent_continues_at_the_waiting_task(backend):
    recorder = Recorder()
    workflow = rescheduling_workflow(recorder, backend, 10)

    handle = workflow.perform_later(items=[1, 2, 3])
    backend.drain(threads=1, timeout=DRAIN_TIMEOUT)

    assert recorder.calls == {
        "prepare": 1,
        "process_items[0]": 1,
        "process_items[1]": 1,
        "process_items[2]": 1,
        "aggregate": 1,
    }
    status = handle.wait(timeout=5)
    assert [o.value for o in status.output["process_items"]] == [101, 102, 103]
    assert status.output["aggregate"][0].total == 306


def test_polling_and_reschedule_follow_the_configured_timings(backend, clock):
    recorder = Recorder()
    wait = {"poll_timeout": 3, "poll_interval": 1, "reschedule_delay": 7}
    workflow = rescheduling_workflow(recorder, backend, wait)
    times = {}

    def on_reschedule(event):
        times["rescheduled"] = clock.now()
        times["poll_count"] = event.payload["poll_count"]

    def on_wait_complete(event):
        times["resumed"] = clock.now()

    with (
        events.subscribe("dependent.reschedule", on_reschedule),
        events.subscribe("dependent.wait.complete", on_wait_complete),
    ):
        workflow.perform_later(items=[1, 2])
        backend.drain(threads=1, timeout=DRAIN_TIMEOUT)

    assert clock.sleeps[:3] == [1, 1, 1]
    assert times["poll_count"] == 3
    assert times["resumed"] == times["rescheduled"] + 7


def test_int_shorthand_is_the_poll_timeout(backend, clock):
    recorder = Recorder()
    workflow = rescheduling_workflow(recorder, backend, 30)

    with events.capture("dependent.reschedule") as rescheduled:
        workflow.perform_later(items=[1])
        backend.drain(threads=1, timeout=DRAIN_TIMEOUT)

    assert clock.sleeps[:6] == [5] * 6, "default poll_interval is 5 s"
    [event] = rescheduled
    assert event.payload["poll_count"] == 6
    assert event.payload["reschedule_delay"] == 5


@pytest.mark.parametrize("wait", [None, {}, 0])
def test_polling_only_never_reschedules(backend, wait):
    recorder = Recorder()
    workflow = rescheduling_workflow(recorder, backend, wait)

    with events.capture("dependent.*") as captured:
        handle = workflow.perform_later(items=[1, 2, 3])
        backend.drain(threads=2, timeout=DRAIN_TIMEOUT)

    assert handle.status() == "succeeded"
    names = [e.name for e in captured]
    assert "dependent.reschedule" not in names
    assert names.count("dependent.wait.complete") == 1
    assert backend.get_job(handle.job_id).executions == 1


# --- a failed sub-job ---------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "threads"),
    [(10, 1), (None, 2)],
    ids=["dependency_wait-one-thread", "polling-two-threads"],
)
def test_failed_sub_job_fails_the_waiting_task_and_the_workflow(backend, wait, threads):
    aggregated = []

    class SubJobFails(Workflow):
        name = "tests.queued.depwait.SubJobFails"

        @task(each=lambda ctx: [1, 2, 3], enqueue=True, output={"v": int})
        def process_items(self, ctx):
            if ctx.each_value == 2:
                raise RuntimeError("item 2 is broken")
            return {"v": ctx.each_value}

        @task(depends_on=[process_items], dependency_wait=wait)
        def aggregate(self, ctx):
            aggregated.append(True)

    with events.capture("workflow.error") as errors:
        handle = SubJobFails.perform_later()
        backend.drain(threads=threads, timeout=DRAIN_TIMEOUT)

    subs = sorted(
        backend.sub_jobs(handle.job_id, "process_items"), key=lambda j: j.each_index
    )
    failed_id = subs[1].id
    assert subs[1].status == "failed"
    assert subs[1].error.error_class == "RuntimeError"
    parent = backend.get_job(handle.job_id)
    assert parent.status == "failed"
    assert parent.error.error_class == "DependencyFailedError"
    assert failed_id in parent.error.message
    assert subs[0].id not in parent.error.message
    assert "aggregate" in parent.error.message
    assert aggregated == []
    status = WorkflowStatus.find(handle.job_id)
    assert status.status == "failed"
    assert status.is_failed
    [error] = [e for e in errors if e.payload["job_id"] == handle.job_id]
    assert error.payload["error_class"] == "DependencyFailedError"


# --- starvation ---------------------------------------------------------------


def starvation_workflow(wait, ran):
    class Starving(Workflow):
        name = "tests.queued.depwait.Starving"
        n = argument(int)

        @task(each=lambda ctx: [1, 2], enqueue=True, output={"v": int})
        def process_items(self, ctx):
            ran.append(ctx.job_id)
            return {"v": ctx.each_value}

        @task(depends_on=[process_items], dependency_wait=wait)
        def aggregate(self, ctx):
            pass

    return Starving


def test_polling_parents_as_many_as_workers_starve_their_sub_jobs(backend, clock):
    ran = []
    workflow = starvation_workflow(None, ran)

    handles = [workflow.perform_later(n=n) for n in range(2)]
    drain_in_background(backend, clock, threads=2, timeout=STARVE_TIMEOUT)

    assert ran == [], "a sub-job ran although every worker was polling"
    for handle in handles:
        subs = backend.sub_jobs(handle.job_id)
        assert len(subs) == 2
        assert {sub.status for sub in subs} == {"ready"}
        assert backend.get_job(handle.job_id).finished_at is None
        assert handle.status() != "succeeded"


def test_drain_times_out_when_polling_parents_starve_the_workers(backend, clock):
    workflow = starvation_workflow(None, [])

    for n in range(2):
        workflow.perform_later(n=n)
    returned, error = drain_in_background(
        backend, clock, threads=2, timeout=STARVE_TIMEOUT
    )

    assert returned, (
        f"drain(timeout={STARVE_TIMEOUT}) had not returned {GRACE}s after its "
        "timeout: workers polling for dependencies never gave up"
    )
    assert isinstance(error, TimeoutError)


def test_same_load_with_dependency_wait_completes(backend, clock):
    ran = []
    workflow = starvation_workflow({"poll_timeout": 5, "reschedule_delay": 1}, ran)

    handles = [workflow.perform_later(n=n) for n in range(2)]
    backend.drain(threads=2, timeout=DRAIN_TIMEOUT)

    assert [h.status() for h in handles] == ["succeeded", "succeeded"]
    assert len(ran) == 4


# --- option validation --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        -1,
        -0.5,
        {"poll_timeout": -1},
        {"poll_interval": -1},
        {"poll_interval": 0},
        {"reschedule_delay": -1},
        {"poll_timeout": True},
        {"bogus": 1},
        {"poll_timeout": 5, "timeout": 5},
        "30",
    ],
)
def test_invalid_dependency_wait_raises_at_definition(value):
    with pytest.raises(InvalidOptionError) as caught:

        class Invalid(Workflow):
            name = "tests.queued.depwait.Invalid"

            @task(enqueue=True)
            def first(self, ctx):
                pass

            @task(depends_on=[first], dependency_wait=value)
            def second(self, ctx):
                pass

    assert caught.value.option.startswith("dependency_wait")


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        0,
        30,
        2.5,
        {"poll_timeout": 30, "poll_interval": 2},
        {"poll_timeout": 0},
    ],
)
def test_valid_dependency_wait_forms_are_accepted(value):
    class Valid(Workflow):
        name = "tests.queued.depwait.Valid"

        @task(enqueue=True)
        def first(self, ctx):
            pass

        @task(depends_on=[first], dependency_wait=value)
        def second(self, ctx):
            pass

    assert [t.name for t in Valid.tasks] == ["first", "second"]


def test_sub_job_that_succeeds_on_retry_does_not_fail_the_waiting_task(backend):
    attempts = {}
    lock = threading.Lock()

    class FlakySubJob(Workflow):
        name = "tests.queued.depwait.FlakySubJob"

        @task(each=lambda ctx: [1, 2], enqueue=True, retry=2, output={"v": int})
        def process_items(self, ctx):
            with lock:
                attempts[ctx.each_index] = attempts.get(ctx.each_index, 0) + 1
                first = attempts[ctx.each_index] == 1
            if first:
                raise RuntimeError("flaky")
            return {"v": ctx.each_value}

        @task(depends_on=[process_items], dependency_wait=10, output={"n": int})
        def aggregate(self, ctx):
            return {"n": len(ctx.output["process_items"])}

    handle = FlakySubJob.perform_later()
    backend.drain(threads=1, timeout=DRAIN_TIMEOUT)

    assert attempts == {0: 2, 1: 2}
    assert handle.status() == "succeeded"
    assert handle.wait(timeout=5).output["aggregate"][0].n == 2


class Staggered(Workflow):
    """Three sub-jobs one at a time, the last slow, and a parent that resumes."""

    name = "tests.dependency_wait.Staggered"

    @task(
        each=lambda ctx: [1, 2, 3],
        enqueue={"concurrency": 1},
        output={"n": int},
    )
    def part(self, ctx):
        return {"n": ctx.each_value}

    @task(
        depends_on=[part],
        dependency_wait={
            "poll_timeout": 1,
            "poll_interval": 0.5,
            "reschedule_delay": 0.5,
        },
        output={"total": int},
    )
    def total(self, ctx):
        return {"total": sum(o.n for o in ctx.output["part"])}


def test_a_parent_resumed_mid_way_sees_the_outputs_stored_while_it_waited():
    """Resumed with two sub-jobs done, the parent loads their outputs; the
    third, stored while it waits, is read before the dependent task runs."""
    from job_workflow.simulator import Simulation

    def duration(ctx, rng):
        return 5.0 if ctx.each_index == 2 else 0.2

    sim = Simulation(workers=2, seed=0, durations={"part": duration})
    result = sim.run(Staggered)

    [parent] = result.statuses
    trace = list(result.trace)
    last_claim = max(
        e.time for e in trace if e.job_id == parent and e.event == "job.claim"
    )
    parts_done = [
        e.time for e in trace if e.event == "job.finish" and e.job_id != parent
    ]
    waited = [e.time for e in trace if e.event == "dependent.wait.complete"]
    assert sum(t < last_claim for t in parts_done) == 2
    assert waited == [5.5]  # in the run that began with two parts done
    assert result.outputs[parent]["total"] == [{"total": 6}]
    result.check()


@pytest.mark.parametrize("order", [("base", "parts"), ("parts", "base")])
def test_a_parent_resumed_at_a_task_reads_all_its_dependencies_outputs(order):
    """Resumed at the waiting task, the parent reads the outputs of the
    dependency it ran itself as well as those of the sub-jobs it waited for,
    whichever comes first in depends_on."""
    from job_workflow.simulator import Simulation

    class Mixed(Workflow):
        name = f"tests.dependency_wait.Mixed.{'_'.join(order)}"

        @task(output={"offset": int})
        def base(self, ctx):
            return {"offset": 100}

        @task(each=lambda ctx: [1, 2, 3], enqueue={"concurrency": 1}, output={"n": int})
        def parts(self, ctx):
            return {"n": ctx.each_value}

        @task(
            depends_on=list(order),
            dependency_wait={
                "poll_timeout": 1,
                "poll_interval": 1,
                "reschedule_delay": 1,
            },
            output={"total": int},
        )
        def total(self, ctx):
            offset = ctx.output["base"][0].offset
            return {"total": offset + sum(o.n for o in ctx.output["parts"])}

    result = Simulation(workers=2, seed=0, durations=1.0).run(Mixed)

    [parent] = result.statuses
    assert result.metrics.reschedules >= 1  # it did resume at "total"
    assert result.outputs[parent]["total"] == [{"total": 106}]
    result.check()
