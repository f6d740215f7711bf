"""Queue management: ``job_workflow.Queue`` over the process backend.

Covers the Ruby guide QUEUE_MANAGEMENT.md on ``MemoryBackend("queued")``
drained by worker threads, with a ManualClock for latencies: ``pause``,
``resume``, ``is_paused``, ``paused_queues`` and the events ``queue.pause`` /
``queue.resume`` (payload ``queue_name``); a paused queue keeps accepting
jobs but is not drained until resumed, while other queues are; ``latency``
and ``size`` of ready jobs; ``clear`` failing ready jobs with error class
``QueueCleared`` (and a parent waiting on a cleared sub-job failing with
``DependencyFailedError``); ``workflows(queue)``.
"""

import pytest

from job_workflow import (
    Queue,
    Workflow,
    WorkflowStatus,
    events,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock

THREADS = 2
DRAIN_TIMEOUT = 30.0

BATCH = "tests.queued.qm.batch"
REPORTS = "tests.queued.qm.reports"
RAN = []


class BatchJob(Workflow):
    name = "tests.queued.qm.BatchJob"
    queue = BATCH

    @task
    def work(self, ctx):
        RAN.append(("batch", ctx.job_id))


class DefaultJob(Workflow):
    name = "tests.queued.qm.DefaultJob"

    @task
    def work(self, ctx):
        RAN.append(("default", ctx.job_id))


class DailyReport(Workflow):
    name = "tests.queued.qm.DailyReport"
    queue = REPORTS

    @task
    def build(self, ctx):
        pass


class WeeklyReport(Workflow):
    name = "tests.queued.qm.WeeklyReport"
    queue = REPORTS

    @task
    def build(self, ctx):
        pass


@pytest.fixture
def clock():
    with use_clock(ManualClock()) as manual:
        yield manual


@pytest.fixture
def backend(clock):
    RAN.clear()
    queued = MemoryBackend("queued")
    with use_backend(queued):
        yield queued


def drain(backend):
    backend.drain(threads=THREADS, timeout=DRAIN_TIMEOUT)


# --- pause and resume ---------------------------------------------------------


def test_pause_and_resume_toggle_is_paused(backend):
    assert not Queue.is_paused(BATCH)

    Queue.pause(BATCH)
    assert Queue.is_paused(BATCH)
    assert not Queue.is_paused("default")

    Queue.resume(BATCH)
    assert not Queue.is_paused(BATCH)


def test_paused_queues_lists_every_paused_queue(backend):
    assert Queue.paused_queues() == []

    Queue.pause(BATCH)
    Queue.pause(REPORTS)
    assert sorted(Queue.paused_queues()) == sorted([BATCH, REPORTS])

    for queue in Queue.paused_queues():
        Queue.resume(queue)
    assert Queue.paused_queues() == []


def test_pause_and_resume_emit_events_with_the_queue_name(backend):
    with events.capture("queue.*") as captured:
        Queue.pause(BATCH)
        Queue.resume(BATCH)

    assert [(e.name, e.payload["queue_name"]) for e in captured] == [
        ("queue.pause", BATCH),
        ("queue.resume", BATCH),
    ]


def test_paused_queue_is_not_drained_until_resumed(backend):
    Queue.pause(BATCH)
    paused = [BatchJob.perform_later() for _ in range(2)]
    other = DefaultJob.perform_later()

    drain(backend)

    assert other.status() == "succeeded"
    assert [h.status() for h in paused] == ["pending", "pending"]
    assert {backend.get_job(h.job_id).status for h in paused} == {"ready"}
    assert [kind for kind, _ in RAN] == ["default"]
    assert Queue.size(BATCH) == 2

    Queue.resume(BATCH)
    drain(backend)

    assert [h.status() for h in paused] == ["succeeded", "succeeded"]
    assert sorted(job_id for kind, job_id in RAN if kind == "batch") == sorted(
        h.job_id for h in paused
    )
    assert Queue.size(BATCH) == 0


def test_set_queue_routes_a_job_to_a_paused_queue(backend):
    Queue.pause(BATCH)
    handle = DefaultJob.set(queue=BATCH).perform_later()

    drain(backend)
    assert handle.status() == "pending"

    Queue.resume(BATCH)
    drain(backend)
    assert handle.status() == "succeeded"


def test_paused_queue_holds_back_sub_jobs_but_not_their_parent(backend):
    ran = []

    class SubJobsOnBatch(Workflow):
        name = "tests.queued.qm.SubJobsOnBatch"

        @task(each=lambda ctx: [1, 2, 3], enqueue={"queue": BATCH})
        def fan(self, ctx):
            ran.append(ctx.each_value)

    Queue.pause(BATCH)
    handle = SubJobsOnBatch.perform_later()
    drain(backend)

    assert backend.get_job(handle.job_id).status == "finished"
    assert ran == []
    assert Queue.size(BATCH) == 3

    Queue.resume(BATCH)
    drain(backend)
    assert sorted(ran) == [1, 2, 3]


# --- latency and size ---------------------------------------------------------


def test_size_counts_ready_jobs_of_one_queue(backend):
    assert Queue.size(BATCH) == 0

    for _ in range(3):
        BatchJob.perform_later()
    DefaultJob.perform_later()

    assert Queue.size(BATCH) == 3
    assert Queue.size("default") == 1

    drain(backend)
    assert Queue.size(BATCH) == 0


def test_size_ignores_jobs_scheduled_for_later(backend):
    BatchJob.set(wait=60).perform_later()

    assert Queue.size(BATCH) == 0


def test_latency_is_the_wait_of_the_oldest_ready_job(backend, clock):
    assert Queue.latency(BATCH) == 0.0

    BatchJob.perform_later()
    clock.advance(3.0)
    BatchJob.perform_later()
    clock.advance(4.5)

    assert Queue.latency(BATCH) == pytest.approx(7.5)
    assert Queue.latency("default") == 0.0


def test_latency_keeps_growing_while_a_queue_is_paused(backend, clock):
    Queue.pause(BATCH)
    BatchJob.perform_later()

    clock.advance(10)
    drain(backend)
    clock.advance(20)

    assert Queue.latency(BATCH) == pytest.approx(30)

    Queue.resume(BATCH)
    drain(backend)
    assert Queue.latency(BATCH) == 0.0


# --- clear --------------------------------------------------------------------


def test_clear_fails_ready_jobs_with_queue_cleared(backend):
    handles = [BatchJob.perform_later() for _ in range(2)]
    other = DefaultJob.perform_later()

    assert Queue.clear(BATCH) == 2

    assert Queue.size(BATCH) == 0
    for handle in handles:
        job = backend.get_job(handle.job_id)
        assert job.status == "failed"
        assert job.error.error_class == "QueueCleared"
        status = WorkflowStatus.find(handle.job_id)
        assert status.is_failed
        assert status.error.error_class == "QueueCleared"
    assert Queue.size("default") == 1

    drain(backend)
    assert [kind for kind, _ in RAN] == ["default"]
    assert other.status() == "succeeded"


def test_clear_of_an_empty_queue_clears_nothing(backend):
    assert Queue.clear(BATCH) == 0


def test_clear_works_on_a_paused_queue(backend):
    Queue.pause(BATCH)
    handle = BatchJob.perform_later()

    assert Queue.clear(BATCH) == 1

    Queue.resume(BATCH)
    drain(backend)
    assert handle.status() == "failed"
    assert RAN == []


def test_clear_leaves_no_job_of_the_queue_to_run(backend):
    ran = []

    class LimitedOnBatch(Workflow):
        name = "tests.queued.qm.LimitedOnBatch"

        @task(each=lambda ctx: range(4), enqueue={"queue": BATCH, "concurrency": 2})
        def fan(self, ctx):
            ran.append(ctx.each_index)

    Queue.pause(BATCH)
    handle = LimitedOnBatch.perform_later()
    drain(backend)

    Queue.clear(BATCH)

    assert Queue.size(BATCH) == 0
    Queue.resume(BATCH)
    drain(backend)
    assert ran == []
    assert WorkflowStatus.find(handle.job_id).is_failed


def test_parent_waiting_on_cleared_sub_jobs_fails_with_dependency_failed(backend):
    aggregated = []

    class WaitsOnBatch(Workflow):
        name = "tests.queued.qm.WaitsOnBatch"

        @task(each=lambda ctx: [1, 2], enqueue={"queue": BATCH})
        def fan(self, ctx):
            pass

        @task(depends_on=[fan], dependency_wait={"poll_timeout": 1})
        def aggregate(self, ctx):
            aggregated.append(True)

    Queue.pause(BATCH)
    handle = WaitsOnBatch.perform_later()
    # The parent keeps rescheduling while its sub-jobs sit in the paused queue.
    with pytest.raises(TimeoutError):
        backend.drain(threads=1, timeout=0.5)

    assert Queue.clear(BATCH) == 2
    drain(backend)

    parent = backend.get_job(handle.job_id)
    assert parent.status == "failed"
    assert parent.error.error_class == "DependencyFailedError"
    assert aggregated == []
    assert WorkflowStatus.find(handle.job_id).is_failed


# --- workflows by queue -------------------------------------------------------


def test_workflows_lists_the_classes_using_a_queue(backend):
    found = Queue.workflows(REPORTS)

    assert set(found) == {DailyReport, WeeklyReport}
    assert BatchJob in Queue.workflows(BATCH)
    assert DailyReport not in Queue.workflows("default")


def test_workflows_of_an_unused_queue_is_empty(backend):
    assert Queue.workflows("tests.queued.qm.nobody") == []
