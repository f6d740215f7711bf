"""OpenTelemetry spans (SPEC §7; Ruby guide OPENTELEMETRY_INTEGRATION.md).

With the SDK's InMemorySpanExporter behind a SimpleSpanProcessor: span names
and attributes of workflows, task attempts, throttle acquisitions,
dependency waits and ``ctx.instrument`` blocks; parent/child links; errors
recorded on failing spans; one trace id across a workflow whose sub-jobs run
on other worker threads (``MemoryBackend("queued").drain(threads=3)``), also
after a reschedule and from a span around ``perform_later``; concurrent
workflows never mixing; a raising exporter or span processor leaving the
outcome alone; ``unsubscribe`` stopping spans; the import error without
OpenTelemetry. Waits run on a ManualClock.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from job_workflow import Workflow, argument, events, task, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core._events import collect_carried
from job_workflow.otel import OpenTelemetrySubscriber

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@pytest.fixture
def clock():
    with use_clock(ManualClock()) as manual:
        yield manual


@pytest.fixture
def backend(clock):
    with use_backend(MemoryBackend()) as inline:
        yield inline


@pytest.fixture
def queued(clock):
    with use_backend(MemoryBackend("queued")) as queued_backend:
        yield queued_backend


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter):
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


@pytest.fixture
def subscriber(provider):
    sub = OpenTelemetrySubscriber(tracer_provider=provider).subscribe()
    yield sub
    left_open = sub.open_spans()
    sub.unsubscribe()
    assert left_open == 0, "spans left open after the test's runs"
    assert not trace.get_current_span().get_span_context().is_valid


def drain(backend: MemoryBackend, threads: int = 3) -> None:
    backend.drain(threads=threads, timeout=30)


def named(exporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter, name: str) -> ReadableSpan:
    [span] = named(exporter, name)
    return span


def is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def trace_ids(exporter) -> set[int]:
    return {s.context.trace_id for s in exporter.get_finished_spans()}


# --- workflows ----------------------------------------------------------------------


class Simple(Workflow):
    name = "tests.otel.Simple"

    @task(output={"n": int})
    def fetch(self, ctx):
        return {"n": 1}

    @task(depends_on=[fetch])
    def store(self, ctx):
        pass


class Mapped(Workflow):
    name = "tests.otel.Mapped"

    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items)
    def visit(self, ctx):
        pass


flaky_calls: list[int] = []


class Flaky(Workflow):
    name = "tests.otel.Flaky"

    @task(retry={"count": 1, "strategy": "linear", "base_delay": 2})
    def pull(self, ctx):
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise ConnectionError("reset by peer")


class Broken(Workflow):
    name = "tests.otel.Broken"

    @task
    def explode(self, ctx):
        raise ValueError("boom")


class Throttled(Workflow):
    name = "tests.otel.Throttled"

    @task(throttle={"key": "tests.otel.api", "limit": 2})
    def call(self, ctx):
        with ctx.throttle(1, key="tests.otel.write"):
            pass


class Instrumented(Workflow):
    name = "tests.otel.Instrumented"

    @task
    def load(self, ctx):
        with ctx.instrument("csv.parse", source="upload", tags=["a", "b"]) as p:
            p["row_count"] = 3
        with pytest.raises(KeyError), ctx.instrument("lookup"):
            raise KeyError("nope")


sub_job_threads: dict[str, int] = {}
parent_threads: dict[str, int] = {}


class FanOut(Workflow):
    name = "tests.otel.FanOut"

    items = argument(list[int])

    @task(
        each=lambda ctx: ctx.arguments.items,
        enqueue=True,
        throttle=2,
        output={"v": int},
    )
    def double(self, ctx):
        sub_job_threads[ctx.job_id] = threading.get_ident()
        with ctx.instrument("compute"):
            return {"v": ctx.each_value * 2}

    @task(depends_on=[double], output={"total": int})
    def total(self, ctx):
        parent_threads[ctx.job_id] = threading.get_ident()
        return {"total": sum(o.v for o in ctx.output["double"])}


class FanOutReleasing(Workflow):
    """FanOut whose parent reschedules instead of holding its worker."""

    name = "tests.otel.FanOutReleasing"

    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, enqueue=True, throttle=2)
    def double(self, ctx):
        with ctx.instrument("compute"):
            pass

    @task(
        depends_on=[double],
        dependency_wait={"poll_timeout": 1, "poll_interval": 1, "reschedule_delay": 1},
    )
    def total(self, ctx):
        pass


class Rescheduling(Workflow):
    name = "tests.otel.Rescheduling"

    @task(enqueue=True)
    def slow(self, ctx):
        pass

    @task(
        depends_on=[slow],
        dependency_wait={"poll_timeout": 1, "poll_interval": 1, "reschedule_delay": 3},
    )
    def after(self, ctx):
        pass


# --- names, attributes, parents ---------------------------------------------------


def test_workflow_and_task_spans_with_names_attributes_and_parents(
    backend, exporter, subscriber
):
    run = Simple.perform_now()

    workflow = one(exporter, "tests.otel.Simple workflow")
    fetch = one(exporter, "tests.otel.Simple.fetch task")
    store = one(exporter, "tests.otel.Simple.store task")
    assert workflow.parent is None
    assert is_child(fetch, workflow)
    assert is_child(store, workflow)
    assert trace_ids(exporter) == {workflow.context.trace_id}
    assert dict(workflow.attributes) == {
        "job_workflow.job.name": "tests.otel.Simple",
        "job_workflow.job.id": run.job_id,
    }
    assert dict(fetch.attributes) == {
        "job_workflow.job.name": "tests.otel.Simple",
        "job_workflow.job.id": run.job_id,
        "job_workflow.task.name": "fetch",
        "job_workflow.task.retry_count": 0,
    }
    for span in (workflow, fetch, store):
        assert span.status.status_code is StatusCode.UNSET
        assert span.kind is trace.SpanKind.INTERNAL
        assert span.instrumentation_scope.name == "job_workflow"


def test_map_iterations_are_task_spans_with_their_each_index(
    backend, exporter, subscriber
):
    Mapped.perform_now(items=[5, 6, 7])

    visits = named(exporter, "tests.otel.Mapped.visit task")
    indexes = [s.attributes["job_workflow.task.each_index"] for s in visits]
    assert indexes == [0, 1, 2]


def test_a_retried_attempt_is_an_error_span_and_the_retry_a_span_event(
    backend, exporter, subscriber
):
    flaky_calls.clear()
    Flaky.perform_now()

    failed, succeeded = named(exporter, "tests.otel.Flaky.pull task")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ConnectionError: reset by peer"
    assert failed.attributes["job_workflow.error.class"] == "ConnectionError"
    assert failed.attributes["job_workflow.error.message"] == "reset by peer"
    assert failed.attributes["job_workflow.task.retry_count"] == 0
    [retry, exception] = failed.events
    assert exception.name == "exception"
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert retry.name == "task.retry"
    assert retry.attributes["job_workflow.attempt"] == 1
    assert retry.attributes["job_workflow.max_attempts"] == 2
    assert retry.attributes["job_workflow.delay_seconds"] == 2.0
    assert succeeded.status.status_code is StatusCode.UNSET
    assert succeeded.attributes["job_workflow.task.retry_count"] == 1
    assert "job_workflow.error.class" not in succeeded.attributes
    workflow = one(exporter, "tests.otel.Flaky workflow")
    assert workflow.status.status_code is StatusCode.UNSET
    assert is_child(failed, workflow)
    assert is_child(succeeded, workflow)


def test_a_final_failure_marks_the_task_and_the_workflow_span(
    backend, exporter, subscriber
):
    with pytest.raises(ValueError, match="boom"):
        Broken.perform_now()

    task_span = one(exporter, "tests.otel.Broken.explode task")
    workflow = one(exporter, "tests.otel.Broken workflow")
    for span in (task_span, workflow):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["job_workflow.error.class"] == "ValueError"
        assert span.attributes["job_workflow.error.message"] == "boom"
    assert is_child(task_span, workflow)
    assert not trace.get_current_span().get_span_context().is_valid


def test_throttle_spans_carry_key_and_limit_under_their_workflow_or_task(
    backend, exporter, subscriber
):
    run = Throttled.perform_now()

    workflow = one(exporter, "tests.otel.Throttled workflow")
    task_span = one(exporter, "tests.otel.Throttled.call task")
    task_throttle, body_throttle = named(exporter, "JobWorkflow throttle.acquire")
    assert task_throttle.attributes["job_workflow.concurrency.key"] == "tests.otel.api"
    assert task_throttle.attributes["job_workflow.concurrency.limit"] == 2
    assert task_throttle.attributes["job_workflow.job.id"] == run.job_id
    assert is_child(task_throttle, workflow)
    assert body_throttle.attributes["job_workflow.concurrency.key"] == (
        "tests.otel.write"
    )
    assert is_child(body_throttle, task_span)


def test_instrumented_blocks_are_spans_under_their_task(backend, exporter, subscriber):
    Instrumented.perform_now()

    task_span = one(exporter, "tests.otel.Instrumented.load task")
    parse = one(exporter, "tests.otel.Instrumented.load csv.parse")
    lookup = one(exporter, "tests.otel.Instrumented.load lookup")
    assert is_child(parse, task_span)
    assert is_child(lookup, task_span)
    assert parse.attributes["job_workflow.operation"] == "csv.parse"
    assert parse.attributes["job_workflow.task.name"] == "load"
    assert parse.attributes["source"] == "upload"
    assert parse.attributes["tags"] == ("a", "b")
    assert parse.attributes["row_count"] == 3  # added inside the block
    assert parse.status.status_code is StatusCode.UNSET
    assert lookup.status.status_code is StatusCode.ERROR
    assert lookup.attributes["job_workflow.error.class"] == "KeyError"
    assert task_span.status.status_code is StatusCode.UNSET


def test_spans_opened_in_a_task_body_hang_under_the_task_span(
    backend, exporter, provider, subscriber
):
    tracer = provider.get_tracer("tests.app")

    class Traced(Workflow):
        name = "tests.otel.Traced"

        @task
        def call(self, ctx):
            with tracer.start_as_current_span("http GET"):
                pass

    Traced.perform_now()

    assert is_child(
        one(exporter, "http GET"), one(exporter, "tests.otel.Traced.call task")
    )
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_body_that_leaves_a_context_attached_does_not_leak_it(
    backend, exporter, subscriber
):
    class Leaky(Workflow):
        name = "tests.otel.Leaky"

        @task
        def forget(self, ctx):
            span = trace.NonRecordingSpan(trace.get_current_span().get_span_context())
            otel_context.attach(trace.set_span_in_context(span))

        @task(depends_on=[forget])
        def after(self, ctx):
            pass

    Leaky.perform_now()

    workflow = one(exporter, "tests.otel.Leaky workflow")
    assert is_child(one(exporter, "tests.otel.Leaky.after task"), workflow)
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_workflow_run_inside_a_task_is_a_child_of_that_task(
    backend, exporter, subscriber
):
    class Outer(Workflow):
        name = "tests.otel.Outer"

        @task
        def compose(self, ctx):
            Simple.perform_now()

    Outer.perform_now()

    inner = one(exporter, "tests.otel.Simple workflow")
    assert is_child(inner, one(exporter, "tests.otel.Outer.compose task"))
    assert len(trace_ids(exporter)) == 1


# --- one trace across jobs and threads ---------------------------------------------


def test_sub_jobs_on_other_worker_threads_join_their_parents_trace(
    queued, exporter, subscriber
):
    sub_job_threads.clear()  # thread ids are reused by later drains
    parent_threads.clear()
    handle = FanOut.perform_later(items=[1, 2, 3, 4])
    drain(queued)
    assert handle.status() == "succeeded"

    # The parent polls while its sub-jobs run: they ran on other threads.
    assert set(sub_job_threads.values()).isdisjoint(parent_threads.values())
    workflow = one(exporter, "tests.otel.FanOut workflow")
    assert workflow.parent is None
    assert trace_ids(exporter) == {workflow.context.trace_id}
    doubles = named(exporter, "tests.otel.FanOut.double task")
    assert sorted(s.attributes["job_workflow.task.each_index"] for s in doubles) == [
        0,
        1,
        2,
        3,
    ]
    sub_ids = {s.attributes["job_workflow.job.id"] for s in doubles}
    assert len(sub_ids) == 4
    assert handle.job_id not in sub_ids
    for span in doubles:
        assert is_child(span, workflow)
    # a sub-job's throttle (acquired before any event names the job) and its
    # instrumented block join the trace too
    throttles = named(exporter, "JobWorkflow throttle.acquire")
    assert {s.attributes["job_workflow.job.id"] for s in throttles} == sub_ids
    assert all(is_child(s, workflow) for s in throttles)
    by_span = {s.context.span_id: s for s in doubles}
    for compute in named(exporter, "tests.otel.FanOut.double compute"):
        parent = by_span[compute.parent.span_id]
        assert (
            parent.attributes["job_workflow.job.id"]
            == (compute.attributes["job_workflow.job.id"])
        )


def test_the_sub_jobs_carry_a_w3c_traceparent(queued, exporter, subscriber):
    handle = FanOut.perform_later(items=[1, 2])
    drain(queued)

    workflow = one(exporter, "tests.otel.FanOut workflow")
    for job in queued.sub_jobs(handle.job_id):
        carried = job.metadata["trace_context"]["traceparent"]
        assert TRACEPARENT.match(carried)
        assert carried.split("-")[1] == format(workflow.context.trace_id, "032x")
        assert carried.split("-")[2] == format(workflow.context.span_id, "016x")


def test_perform_later_inside_a_span_continues_that_trace(
    queued, exporter, provider, subscriber
):
    tracer = provider.get_tracer("tests.app")
    with tracer.start_as_current_span("POST /orders") as request:
        handle = FanOut.perform_later(items=[1])
    drain(queued)

    workflow = one(exporter, "tests.otel.FanOut workflow")
    assert is_child(workflow, one(exporter, "POST /orders"))
    assert trace_ids(exporter) == {request.get_span_context().trace_id}
    assert queued.get_job(handle.job_id).metadata["trace_context"]


def test_a_rescheduled_workflow_keeps_its_trace(queued, exporter, subscriber):
    handle = Rescheduling.perform_later()
    drain(queued, threads=1)  # one worker: the parent must reschedule
    assert handle.status() == "succeeded"

    first, resumed = named(exporter, "tests.otel.Rescheduling workflow")
    assert first.parent is None
    assert is_child(resumed, first)
    assert [e.name for e in first.events][-1] == "dependent.reschedule"
    waits = named(exporter, "JobWorkflow dependent.wait")
    assert len(waits) == 2
    rescheduled_wait = waits[0]
    assert is_child(rescheduled_wait, first)
    assert rescheduled_wait.events[0].name == "dependent.reschedule"
    assert rescheduled_wait.attributes["job_workflow.dependent_task.name"] == "slow"
    assert is_child(waits[1], resumed)
    assert one(exporter, "tests.otel.Rescheduling.slow task").parent.span_id == (
        first.context.span_id
    )
    assert len(trace_ids(exporter)) == 1


def test_concurrent_workflows_on_many_threads_never_mix(queued, exporter, subscriber):
    handles = [FanOutReleasing.perform_later(items=[i, i, i]) for i in range(6)]
    drain(queued)

    assert {h.status() for h in handles} == {"succeeded"}
    workflows = named(exporter, "tests.otel.FanOutReleasing workflow")
    assert len(trace_ids(exporter)) == 6
    trace_of = {}
    for span in workflows:  # every run of one job is in the same trace
        job_id = span.attributes["job_workflow.job.id"]
        assert trace_of.setdefault(job_id, span.context.trace_id) == (
            span.context.trace_id
        )
    assert set(trace_of) == {h.job_id for h in handles}
    for handle in handles:
        sub_ids = {job.id for job in queued.sub_jobs(handle.job_id)}
        spans = [
            s
            for s in exporter.get_finished_spans()
            if s.attributes.get("job_workflow.job.id") in sub_ids
        ]
        assert len(spans) == 9  # per sub-job: throttle, task, compute
        assert {s.context.trace_id for s in spans} == {trace_of[handle.job_id]}


def test_two_subscribers_each_get_every_span_and_restore_the_context(
    backend, exporter, subscriber
):
    other_exporter = InMemorySpanExporter()
    other_provider = TracerProvider()
    other_provider.add_span_processor(SimpleSpanProcessor(other_exporter))
    with OpenTelemetrySubscriber(tracer_provider=other_provider):
        Instrumented.perform_now()
        Simple.perform_now()
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == sorted(s.name for s in other_exporter.get_finished_spans())
    assert len(names) == 7
    assert not trace.get_current_span().get_span_context().is_valid


# --- failures of tracing never change a run -----------------------------------------


class RaisingExporter(SpanExporter):
    def __init__(self):
        self.calls = 0

    def export(self, spans):
        self.calls += 1
        raise ConnectionError("collector down")

    def shutdown(self):
        pass


class RaisingProcessor(SpanProcessor):
    def on_start(self, span, parent_context=None):
        raise RuntimeError("on_start broke")

    def on_end(self, span):
        raise RuntimeError("on_end broke")


def test_a_raising_exporter_does_not_change_the_outcome(queued, caplog):
    failing = RaisingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(failing))
    with (
        caplog.at_level(logging.CRITICAL),
        OpenTelemetrySubscriber(tracer_provider=provider) as sub,
    ):
        handle = FanOut.perform_later(items=[1, 2, 3])
        drain(queued)
        with use_backend(MemoryBackend()):
            flaky_calls.clear()
            run = Flaky.perform_now()
            with pytest.raises(ValueError, match="boom"):
                Broken.perform_now()
        assert sub.open_spans() == 0
    assert failing.calls > 10
    assert handle.status() == "succeeded"
    assert handle.wait(0).output["total"][0].total == 12
    assert run.status == "succeeded"


def test_a_raising_span_processor_does_not_change_the_outcome(queued, caplog):
    provider = TracerProvider()
    provider.add_span_processor(RaisingProcessor())
    with (
        caplog.at_level(logging.DEBUG, logger="job_workflow.otel"),
        OpenTelemetrySubscriber(tracer_provider=provider) as sub,
    ):
        handle = FanOut.perform_later(items=[1, 2])
        drain(queued)
        with use_backend(MemoryBackend()):
            Instrumented.perform_now()
            with pytest.raises(ValueError, match="boom"):
                Broken.perform_now()
        assert sub.open_spans() == 0
    assert handle.status() == "succeeded"
    assert not trace.get_current_span().get_span_context().is_valid
    failures = [r for r in caplog.records if r.name == "job_workflow.otel"]
    assert failures
    assert [r.levelno for r in failures].count(logging.WARNING) == 1
    assert failures[0].event == "otel.error"


def test_a_raising_subscriber_next_to_it_does_not_change_the_outcome(
    backend, exporter, subscriber
):
    def explode(event):
        raise RuntimeError("subscriber bug")

    with events.subscribe("*", explode):
        run = Simple.perform_now()
    assert run.status == "succeeded"
    assert len(named(exporter, "tests.otel.Simple.fetch task")) == 1


# --- subscribing ---------------------------------------------------------------------


def test_unsubscribe_stops_spans_and_the_carried_context(queued, exporter, provider):
    sub = OpenTelemetrySubscriber(tracer_provider=provider).subscribe()
    tracer = provider.get_tracer("tests.app")
    with tracer.start_as_current_span("request"):
        assert TRACEPARENT.match(collect_carried()["traceparent"])
    sub.unsubscribe()
    spans_before = len(exporter.get_finished_spans())

    with tracer.start_as_current_span("request"):
        assert collect_carried() == {}
        handle = FanOut.perform_later(items=[1])
    drain(queued)

    assert handle.status() == "succeeded"
    assert "trace_context" not in queued.get_job(handle.job_id).metadata
    assert len(exporter.get_finished_spans()) == spans_before + 1  # "request"
    sub.unsubscribe()  # a second call does nothing


def test_unsubscribe_ends_spans_still_open(backend, exporter, provider):
    sub = OpenTelemetrySubscriber(tracer_provider=provider).subscribe()
    events.bus.emit("workflow.start", {"job_name": "tests.otel.Cut", "job_id": "j-1"})
    assert sub.open_spans() == 1
    sub.unsubscribe()
    assert sub.open_spans() == 0
    assert one(exporter, "tests.otel.Cut workflow").end_time is not None


def test_open_jobs_are_bounded(backend, exporter, provider):
    with OpenTelemetrySubscriber(tracer_provider=provider, max_open_jobs=2) as sub:
        for n in range(5):
            events.bus.emit(
                "workflow.start", {"job_name": "tests.otel.Many", "job_id": f"j-{n}"}
            )
        assert sub.open_spans() == 2
        assert len(named(exporter, "tests.otel.Many workflow")) == 3
    assert len(named(exporter, "tests.otel.Many workflow")) == 5


def test_the_class_subscribes_one_default_instance_on_the_global_provider(backend):
    first = OpenTelemetrySubscriber.subscribe()
    try:
        assert OpenTelemetrySubscriber.subscribe() is first
        assert first is OpenTelemetrySubscriber.default()
        assert first.subscribed
        run = Simple.perform_now()  # no global SDK provider: spans are no-ops
        assert run.status == "succeeded"
    finally:
        OpenTelemetrySubscriber.unsubscribe()
    assert not first.subscribed


def test_importing_without_opentelemetry_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "job_workflow.otel")
    with pytest.raises(ImportError) as caught:
        importlib.import_module("job_workflow.otel")
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install 'job-workflow[otel]'" in message
