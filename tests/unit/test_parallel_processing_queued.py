"""Map tasks fanned out to sub-jobs, run by real worker threads.

The queued half of the Ruby guide PARALLEL_PROCESSING.md, on
``MemoryBackend("queued")`` drained by four worker threads: with ``enqueue=``
each iteration of a map task (or the single run of a plain task) becomes a
sub-job; at most ``concurrency`` sub-jobs of one parent's task run at once;
the dependent task sees every sub-job's output in each_index order, whatever
order they finished in; sub-jobs see the outputs their parent produced before
enqueueing them; ``enqueue={"queue": ...}`` routes sub-jobs to that queue; an
inline backend runs sub-jobs at once, in the caller.

Overlap is made possible, not hoped for: bodies wait on events (with bounds)
until the expected number of them run at once, then give any extra one a
chance to slip in before leaving.
"""

import threading
from contextlib import contextmanager

import pytest

from job_workflow import (
    Queue,
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

THREADS = 4
DRAIN_TIMEOUT = 30.0
WAIT = 5.0  # real seconds: bound of every wait inside a task body
GRACE = 0.05  # real seconds an overlapping body stays to let an extra one in


@pytest.fixture
def backend():
    queued = MemoryBackend("queued")
    with use_backend(queued), use_clock(ManualClock()):
        yield queued


def drain(backend):
    backend.drain(threads=THREADS, timeout=DRAIN_TIMEOUT)


class Gauge:
    """Counts the bodies running at once and keeps the peak."""

    def __init__(self, target):
        self.target = target
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
            if self.running >= self.target:
                self.reached.set()
            if self.running > self.target:
                self.exceeded.set()
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def hold(self):
        """Stay until ``target`` bodies overlap, then let an extra one try."""
        self.reached.wait(WAIT)
        self.exceeded.wait(GRACE)


# --- sub-jobs -----------------------------------------------------------------


def test_each_iteration_of_an_enqueued_map_task_becomes_a_sub_job(backend):
    ran_in = []

    class FanOut(Workflow):
        name = "tests.queued.parallel.FanOut"
        items = argument(list[int])

        @task(each=lambda ctx: ctx.arguments.items, enqueue=True, output={"v": int})
        def double(self, ctx):
            ran_in.append((ctx.each_index, ctx.job_id))
            return {"v": ctx.each_value * 2}

    handle = FanOut.perform_later(items=[5, 6, 7])
    drain(backend)

    subs = sorted(backend.sub_jobs(handle.job_id, "double"), key=lambda j: j.each_index)
    assert len(subs) == 3
    assert [sub.each_index for sub in subs] == [0, 1, 2]
    assert {sub.parent_id for sub in subs} == {handle.job_id}
    assert {sub.task_name for sub in subs} == {"double"}
    assert {sub.status for sub in subs} == {"finished"}
    assert sorted(ran_in) == [(sub.each_index, sub.id) for sub in subs]
    assert handle.status() == "succeeded"


def test_enqueued_plain_task_becomes_one_sub_job_without_index(backend):
    ran_in = []

    class PlainEnqueued(Workflow):
        name = "tests.queued.parallel.PlainEnqueued"

        @task(enqueue=True)
        def single(self, ctx):
            ran_in.append(ctx.job_id)

    handle = PlainEnqueued.perform_later()
    drain(backend)

    [sub] = backend.sub_jobs(handle.job_id, "single")
    assert sub.each_index is None
    assert sub.status == "finished"
    assert ran_in == [sub.id]


def test_task_enqueue_event_reports_the_sub_job_count(backend):
    class Counted(Workflow):
        name = "tests.queued.parallel.Counted"

        @task(each=lambda ctx: range(4), enqueue={"concurrency": 2})
        def work(self, ctx):
            pass

    with events.capture("task.enqueue") as captured:
        handle = Counted.perform_later()
        drain(backend)

    [event] = captured
    assert event.payload["task_name"] == "work"
    assert event.payload["job_id"] == handle.job_id
    assert event.payload["sub_job_count"] == 4
    assert len(backend.sub_jobs(handle.job_id, "work")) == 4


def test_enqueue_condition_decides_at_run_time_whether_to_fan_out(backend):
    class MaybeParallel(Workflow):
        name = "tests.queued.parallel.MaybeParallel"
        parallel = argument(bool)

        @task(
            each=lambda ctx: [1, 2],
            enqueue={"condition": lambda ctx: ctx.arguments.parallel},
            output={"v": int},
        )
        def work(self, ctx):
            return {"v": ctx.each_value}

    fanned = MaybeParallel.perform_later(parallel=True)
    in_process = MaybeParallel.perform_later(parallel=False)
    drain(backend)

    assert len(backend.sub_jobs(fanned.job_id, "work")) == 2
    assert backend.sub_jobs(in_process.job_id) == []
    outputs = in_process.wait(timeout=5).output["work"]
    assert [o.v for o in outputs] == [1, 2]


# --- concurrency --------------------------------------------------------------


def test_sub_jobs_never_exceed_the_concurrency_limit(backend):
    gauge = Gauge(target=2)

    class Limited(Workflow):
        name = "tests.queued.parallel.Limited"

        @task(each=lambda ctx: range(8), enqueue={"concurrency": 2})
        def work(self, ctx):
            with gauge.inside():
                gauge.hold()

        @task(depends_on=[work], dependency_wait={"poll_timeout": 1})
        def done(self, ctx):
            pass

    handle = Limited.perform_later()
    drain(backend)

    assert handle.status() == "succeeded"
    assert len(backend.sub_jobs(handle.job_id, "work")) == 8
    assert gauge.peak == 2, "two sub-jobs should overlap, and never more"


def test_concurrency_limit_applies_per_parent(backend):
    everyone = Gauge(target=2)
    per_parent = {"a": Gauge(target=1), "b": Gauge(target=1)}

    class PerParent(Workflow):
        name = "tests.queued.parallel.PerParent"
        tag = argument(str)

        @task(each=lambda ctx: range(3), enqueue={"concurrency": 1})
        def work(self, ctx):
            with everyone.inside(), per_parent[ctx.arguments.tag].inside():
                everyone.hold()

    handles = [PerParent.perform_later(tag=tag) for tag in ("a", "b")]
    drain(backend)

    assert [h.status() for h in handles] == ["succeeded", "succeeded"]
    assert per_parent["a"].peak == 1
    assert per_parent["b"].peak == 1
    assert everyone.peak == 2, "one sub-job of each parent may run at once"


# --- outputs ------------------------------------------------------------------


def test_dependent_task_sees_outputs_in_index_order_not_finish_order(backend):
    finished = []
    lock = threading.Lock()
    done = [threading.Event() for _ in range(3)]

    class ReverseFinish(Workflow):
        name = "tests.queued.parallel.ReverseFinish"

        @task(each=lambda ctx: ["a", "b", "c"], enqueue=True, output={"letter": str})
        def letters(self, ctx):
            later = ctx.each_index + 1
            if later < len(done):
                assert done[later].wait(WAIT), "the next sub-job never finished"
            with lock:
                finished.append(ctx.each_index)
            done[ctx.each_index].set()
            return {"letter": ctx.each_value}

        @task(depends_on=[letters], dependency_wait=1, output={"joined": str})
        def join(self, ctx):
            return {"joined": "".join(o.letter for o in ctx.output["letters"])}

    handle = ReverseFinish.perform_later()
    drain(backend)

    assert finished == [2, 1, 0]
    status = handle.wait(timeout=5)
    assert status.output["join"][0].joined == "abc"
    assert [o.each_index for o in status.output["letters"]] == [0, 1, 2]


def test_sub_jobs_see_parent_outputs_produced_before_the_enqueue(backend):
    class SeesParent(Workflow):
        name = "tests.queued.parallel.SeesParent"

        @task(output={"factor": int})
        def setup(self, ctx):
            return {"factor": 10}

        @task(
            depends_on=[setup],
            each=lambda ctx: [1, 2, 3],
            enqueue={"concurrency": 2},
            output={"scaled": int},
        )
        def scale(self, ctx):
            return {"scaled": ctx.each_value * ctx.output["setup"][0].factor}

        @task(depends_on=[scale], dependency_wait=1, output={"total": int})
        def total(self, ctx):
            return {"total": sum(o.scaled for o in ctx.output["scale"])}

    handle = SeesParent.perform_later()
    drain(backend)

    status = handle.wait(timeout=5)
    assert [o.scaled for o in status.output["scale"]] == [10, 20, 30]
    assert status.output["total"][0].total == 60


def test_sub_jobs_see_the_tasks_before_theirs_not_those_the_parent_ran_after(backend):
    """What a sub-job sees does not depend on when a worker picks it up: an
    independent task the parent ran after enqueueing it stays out of view,
    as under perform_now, where the iterations run before that task."""
    seen = []

    class LaterTask(Workflow):
        name = "tests.queued.parallel.LaterTask"

        @task(output={"factor": int})
        def setup(self, ctx):
            return {"factor": 10}

        @task(depends_on=[setup], each=lambda ctx: [1, 2], enqueue=True)
        def scale(self, ctx):
            seen.append((ctx.output["setup"][0].factor, len(ctx.output["later"])))

        @task(output={"n": int})
        def later(self, ctx):
            return {"n": 1}

    assert [t.name for t in LaterTask.tasks] == ["setup", "scale", "later"]
    handle = LaterTask.perform_later()
    backend.drain(threads=1, timeout=DRAIN_TIMEOUT)  # the parent runs first

    assert handle.wait(timeout=5).status == "succeeded"
    assert seen == [(10, 0), (10, 0)]
    LaterTask.perform_now()
    assert seen[2:] == [(10, 0), (10, 0)]


# --- queues -------------------------------------------------------------------


def test_enqueue_queue_option_puts_sub_jobs_on_that_queue(backend):
    other = "tests.queued.parallel.other"
    ran = []

    class Routed(Workflow):
        name = "tests.queued.parallel.Routed"

        @task(each=lambda ctx: [1, 2], enqueue={"queue": other})
        def work(self, ctx):
            ran.append(ctx.each_value)

    Queue.pause(other)
    handle = Routed.perform_later()
    drain(backend)

    subs = backend.sub_jobs(handle.job_id, "work")
    assert backend.get_job(handle.job_id).queue == "default"
    assert {sub.queue for sub in subs} == {other}
    assert {job.id for job in backend.jobs(other)} == {sub.id for sub in subs}
    assert {sub.status for sub in subs} == {"ready"}
    assert ran == []

    Queue.resume(other)
    drain(backend)

    assert sorted(ran) == [1, 2]
    assert handle.status() == "succeeded"


# --- inline mode --------------------------------------------------------------


def test_inline_backend_runs_sub_jobs_at_once_in_the_caller():
    inline = MemoryBackend("inline")
    threads = []

    class InlineFanOut(Workflow):
        name = "tests.queued.parallel.InlineFanOut"

        @task(each=lambda ctx: [1, 2, 3], enqueue=True, output={"v": int})
        def work(self, ctx):
            threads.append(threading.get_ident())
            return {"v": ctx.each_value + 1}

        @task(depends_on=[work], output={"total": int})
        def total(self, ctx):
            return {"total": sum(o.v for o in ctx.output["work"])}

    with use_backend(inline):
        handle = InlineFanOut.perform_later()
        status = WorkflowStatus.find(handle.job_id)

    subs = inline.sub_jobs(handle.job_id, "work")
    assert len(subs) == 3
    assert {sub.status for sub in subs} == {"finished"}
    assert threads == [threading.get_ident()] * 3
    assert status.is_succeeded
    assert status.output["total"][0].total == 9


def test_inline_backend_runs_every_sub_job_despite_a_concurrency_limit():
    inline = MemoryBackend("inline")
    ran = []

    class InlineLimited(Workflow):
        name = "tests.queued.parallel.InlineLimited"

        @task(each=lambda ctx: range(5), enqueue={"concurrency": 2})
        def work(self, ctx):
            ran.append(ctx.each_index)

        @task(depends_on=[work])
        def after(self, ctx):
            ran.append("after")

    with use_backend(inline):
        handle = InlineLimited.perform_later()

    assert ran == [0, 1, 2, 3, 4, "after"]
    assert {sub.status for sub in inline.sub_jobs(handle.job_id)} == {"finished"}
    assert handle.status() == "succeeded"
