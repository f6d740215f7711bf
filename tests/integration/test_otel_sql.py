"""OpenTelemetry traces across the SQL backend (SPEC §7; issue 7).

A workflow fans a map task out to sub-jobs and waits for them by
rescheduling itself; worker threads claim jobs from a SqlBackend (SQLite
always, PostgreSQL and MariaDB when their servers answer, see conftest.py)
and run each with ``_runner.perform`` and a RunEnv of their own. Nothing
links the threads but the database: the W3C ``traceparent`` of the span
that enqueued a sub-job is stored in the job's metadata JSON and read back
by whichever worker claims it. With the SDK's InMemorySpanExporter the tests
check that every span shares one trace id and that each sub-job's spans
hang under the parent's workflow span, on threads other than the parent's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from job_workflow import Workflow, WorkflowStatus, argument, events, task, use_clock
from job_workflow.backends.sql import SqlBackend
from job_workflow.clock import SystemClock
from job_workflow.core import _runner
from job_workflow.otel import OpenTelemetrySubscriber

THREADS = 4
DEADLINE = 60.0  # real seconds: bound of a whole queued run
OVERLAP_WAIT = 0.5  # real seconds a body waits for a second one to run
ITEMS = [1, 2, 3, 4, 5, 6]
NAME = "integration.otel_sql.FanOut"


class Threads:
    """Which thread ran which job, and a chance for two bodies to overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_job: dict[str, int] = {}
        self.running = 0
        self.two_running = threading.Event()
        # Sub-jobs wait for the parent's first reschedule (see run_workers),
        # so it surely meets them unfinished, however fast the backend.
        self.released = threading.Event()

    def enter(self, job_id: str) -> None:
        with self.lock:
            self.by_job[job_id] = threading.get_ident()
            self.running += 1
            if self.running >= 2:
                self.two_running.set()

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


threads = Threads()


class FanOut(Workflow):
    name = NAME

    items = argument(list[int])

    @task(output={"base": int})
    def prepare(self, ctx: Any) -> dict[str, int]:
        threads.enter(ctx.job_id)
        threads.leave()
        return {"base": 100}

    @task(
        depends_on=[prepare],
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 2},
        throttle={"key": "integration.otel_sql.api", "limit": 2},
        output={"value": int},
    )
    def compute(self, ctx: Any) -> dict[str, int]:
        threads.released.wait(DEADLINE)
        threads.enter(ctx.job_id)
        try:
            # Give a second sub-job the chance to run on another thread.
            threads.two_running.wait(OVERLAP_WAIT)
            with ctx.instrument("multiply", factor=2):
                return {"value": ctx.output["prepare"][0].base + 2 * ctx.each_value}
        finally:
            threads.leave()

    @task(
        depends_on=[compute],
        dependency_wait={
            "poll_timeout": 0.05,
            "poll_interval": 0.01,
            "reschedule_delay": 0.05,
        },
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, int]:
        threads.enter(ctx.job_id)
        threads.leave()
        return {"total": sum(row.value for row in ctx.output["compute"])}


SQL_PARAMS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=SQL_PARAMS)
def backend(request: pytest.FixtureRequest) -> Iterator[SqlBackend]:
    global threads
    threads = Threads()
    made: SqlBackend = request.getfixturevalue("make_sql_backend")(request.param)
    with use_clock(SystemClock()):
        yield made


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


@pytest.fixture
def subscriber(provider: TracerProvider) -> Iterator[OpenTelemetrySubscriber]:
    sub = OpenTelemetrySubscriber(tracer_provider=provider).subscribe()
    yield sub
    left_open = sub.open_spans()
    sub.unsubscribe()
    assert left_open == 0, "spans left open after the run"
    assert not trace.get_current_span().get_span_context().is_valid


# -- worker threads --


def work(
    backend: SqlBackend,
    worker_id: str,
    stop: threading.Event,
    errors: list[BaseException],
) -> None:
    """A worker thread: dispatch due jobs, claim one, perform it; until stopped."""
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
    release = events.subscribe(
        "dependent.reschedule", lambda event: threads.released.set()
    )
    try:
        return _run_workers(backend, job_id)
    finally:
        release.unsubscribe()


def _run_workers(backend: SqlBackend, job_id: str) -> WorkflowStatus:
    stop = threading.Event()
    errors: list[BaseException] = []
    workers = [
        threading.Thread(target=work, args=(backend, f"otel-w{n}", stop, errors))
        for n in range(THREADS)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline and not errors:
            status = WorkflowStatus.find(job_id, backend=backend)
            if status.status in ("succeeded", "failed"):
                break
            stop.wait(0.02)
    finally:
        stop.set()
        for worker in workers:
            worker.join(DEADLINE)
    assert errors == []
    return WorkflowStatus.find(job_id, backend=backend)


# -- reading spans --


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    assert parent.context is not None
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def trace_ids(exporter: InMemorySpanExporter) -> set[int]:
    return {s.context.trace_id for s in exporter.get_finished_spans() if s.context}


def job_of(span: ReadableSpan) -> str:
    assert span.attributes is not None
    return str(span.attributes["job_workflow.job.id"])


# -- tests --


@pytest.mark.usefixtures("subscriber")
def test_sub_jobs_on_other_threads_join_the_parents_trace_through_the_database(
    backend: SqlBackend, exporter: InMemorySpanExporter
) -> None:
    handle = FanOut.set(backend=backend).perform_later(items=ITEMS)
    status = run_workers(backend, handle.job_id)
    assert status.status == "succeeded", status.error
    assert status.output["total"][0].total == sum(100 + 2 * i for i in ITEMS)

    runs = named(exporter, f"{NAME} workflow")
    assert len(runs) >= 2, "the parent rescheduled itself while it waited"
    first = min(runs, key=lambda s: s.start_time or 0)
    assert first.parent is None
    assert all(is_child(run, first) for run in runs if run is not first)
    assert first.context is not None
    assert trace_ids(exporter) == {first.context.trace_id}

    # The trace context went through the database: each sub-job row carries
    # the traceparent of the parent's first workflow span.
    subs = backend.sub_jobs(handle.job_id, "compute")
    assert len(subs) == len(ITEMS)
    for job in subs:
        _, trace_id, span_id, _ = job.metadata["trace_context"]["traceparent"].split(
            "-"
        )
        assert trace_id == format(first.context.trace_id, "032x")
        assert span_id == format(first.context.span_id, "016x")

    computes = named(exporter, f"{NAME}.compute task")
    sub_ids = {job.id for job in subs}
    assert {job_of(span) for span in computes} == sub_ids
    assert all(is_child(span, first) for span in computes)
    throttles = named(exporter, "JobWorkflow throttle.acquire")
    assert {job_of(span) for span in throttles} == sub_ids
    assert all(is_child(span, first) for span in throttles)
    by_span = {s.context.span_id: s for s in computes if s.context}
    for block in named(exporter, f"{NAME}.compute multiply"):
        assert block.parent is not None
        assert job_of(by_span[block.parent.span_id]) == job_of(block)

    # ... on threads other than the parent's own.
    parent_thread = threads.by_job[handle.job_id]
    sub_threads = {threads.by_job[job_id] for job_id in sub_ids}
    assert len(sub_threads) >= 2
    assert sub_threads - {parent_thread}


@pytest.mark.usefixtures("subscriber")
def test_a_request_span_around_perform_later_roots_the_whole_trace(
    backend: SqlBackend, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("tests.app")
    with tracer.start_as_current_span("POST /orders") as request:
        handle = FanOut.set(backend=backend).perform_later(items=ITEMS[:3])
    status = run_workers(backend, handle.job_id)
    assert status.status == "succeeded", status.error

    parent = backend.get_job(handle.job_id)
    assert parent is not None
    assert parent.metadata["trace_context"]["traceparent"]
    trace_id = request.get_span_context().trace_id
    assert trace_ids(exporter) == {trace_id}
    [root] = named(exporter, "POST /orders")
    runs = named(exporter, f"{NAME} workflow")
    first = min(runs, key=lambda s: s.start_time or 0)
    assert is_child(first, root)
    for span in named(exporter, f"{NAME}.compute task"):
        assert is_child(span, first)
    names = {span.name for span in exporter.get_finished_spans()}
    assert {
        f"{NAME}.prepare task",
        f"{NAME}.total task",
        "JobWorkflow dependent.wait",
    } <= names
