"""OpenTelemetry traces of workflows, across jobs, threads and processes.

::

    from job_workflow.otel import OpenTelemetrySubscriber

    OpenTelemetrySubscriber.subscribe()      # spans go to the global provider
    OpenTelemetrySubscriber(tracer_provider=provider).subscribe()  # or to yours

Spans, started and ended from the events of docs/events.md:

- ``"<Workflow> workflow"``: one run of a workflow job. A job that a
  dependency wait reschedules has one span per run; in this process a later
  run is a child of the first, so the runs share a trace.
- ``"<Workflow>.<task> task"``: one attempt of one iteration (retries are
  siblings). While it runs it is the current span, so spans your task body
  opens with the OpenTelemetry API hang under it.
- ``"<Workflow>.<task> <operation>"``: a ``ctx.instrument`` block, current
  inside the block too; its fields become attributes.
- ``"JobWorkflow throttle.acquire"`` and ``"JobWorkflow dependent.wait"``.

Retries, skips, enqueues, dry-run skips and reschedules are span events. A
failure sets the span's status to ERROR and adds an ``exception`` event.

Trace context travels inside jobs: while subscribed, every job enqueued
(``perform_later``, and each sub-job a task enqueues) stores the W3C
``traceparent`` of the span that enqueued it, and the first span of that
job becomes its child, on whichever worker, thread or process runs it. So a
workflow and all its sub-jobs form one trace.

Spans are tracked per thread and job id, so concurrent jobs never mix. The
subscriber catches its own errors and those of span processors: tracing can
lose a span, never change a workflow's outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import (
        NonRecordingSpan,
        Span,
        SpanContext,
        Status,
        StatusCode,
        TracerProvider,
    )
    from opentelemetry.trace.propagation.tracecontext import (
        TraceContextTextMapPropagator,
    )
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:
    raise ImportError(
        f"job_workflow.otel needs OpenTelemetry ({exc}); "
        "install it with: pip install 'job-workflow[otel]'"
    ) from None

from job_workflow import __version__
from job_workflow._subscribers import Subscriber
from job_workflow.core._events import Event, register_carrier

__all__ = [
    "CONCURRENCY_KEY",
    "CONCURRENCY_LIMIT",
    "DEPENDENT_TASK_NAME",
    "ERROR_CLASS",
    "ERROR_MESSAGE",
    "JOB_ID",
    "JOB_NAME",
    "OPERATION",
    "TASK_EACH_INDEX",
    "TASK_NAME",
    "TASK_RETRY_COUNT",
    "OpenTelemetrySubscriber",
]

JOB_NAME: Final = "job_workflow.job.name"
JOB_ID: Final = "job_workflow.job.id"
TASK_NAME: Final = "job_workflow.task.name"
TASK_EACH_INDEX: Final = "job_workflow.task.each_index"
TASK_RETRY_COUNT: Final = "job_workflow.task.retry_count"
CONCURRENCY_KEY: Final = "job_workflow.concurrency.key"
CONCURRENCY_LIMIT: Final = "job_workflow.concurrency.limit"
ERROR_CLASS: Final = "job_workflow.error.class"
ERROR_MESSAGE: Final = "job_workflow.error.message"
DEPENDENT_TASK_NAME: Final = "job_workflow.dependent_task.name"
OPERATION: Final = "job_workflow.operation"

_ATTRIBUTES: Final = (
    ("job_name", JOB_NAME),
    ("job_id", JOB_ID),
    ("task_name", TASK_NAME),
    ("each_index", TASK_EACH_INDEX),
    ("retry_count", TASK_RETRY_COUNT),
    ("concurrency_key", CONCURRENCY_KEY),
    ("concurrency_limit", CONCURRENCY_LIMIT),
    ("dependent_task_name", DEPENDENT_TASK_NAME),
)
# Payload keys of a ctx.instrument event that are not the user's fields.
_LIBRARY_KEYS: Final = frozenset(
    {key for key, _ in _ATTRIBUTES}
    | {"operation", "trace_context", "error_class", "error_message"}
)
# Span events copied from lifecycle events, with the payload keys they keep.
_NOTES: Final[Mapping[str, tuple[str, ...]]] = {
    "task.retry": ("attempt", "max_attempts", "delay_seconds"),
    "task.skip": ("task_name", "reason"),
    "task.enqueue": ("task_name", "sub_job_count"),
    "dry_run.skip": ("dry_run_name", "dry_run_index"),
    "dependent.reschedule": ("dependent_task_name", "reschedule_delay", "poll_count"),
}
_MAX_WAITING_THROTTLES: Final = 16

_log = logging.getLogger("job_workflow.otel")


@dataclass(frozen=True, slots=True)
class _Attached:
    """A context made current, and the token that undoes it."""

    context: Context
    token: Token[Context]


@dataclass(slots=True)
class _Open:
    """A started span; ``attached`` when it was made the current span."""

    span: Span
    thread: int
    attached: _Attached | None = None


@dataclass(slots=True)
class _Job:
    """The open spans of one job on one thread."""

    job_id: str
    job_name: str
    thread: int
    parent: Context
    workflow: _Open | None = None
    task: _Open | None = None
    wait: _Open | None = None
    throttles: dict[str, _Open] = field(default_factory=dict)
    operations: list[tuple[str, _Open]] = field(default_factory=list)

    def opened(self) -> list[_Open]:
        """Open spans, innermost first (the order to end them in)."""
        spans = [o for _, o in reversed(self.operations)]
        for one in (self.task, *self.throttles.values(), self.wait, self.workflow):
            if one is not None:
                spans.append(one)
        return spans

    def context(self) -> Context:
        """The context a new span of this job hangs under."""
        for one in (
            self.operations[-1][1] if self.operations else None,
            self.task,
            self.workflow,
        ):
            if one is not None:
                return trace.set_span_in_context(one.span, self.parent)
        return self.parent


@dataclass(slots=True)
class _ThreadState:
    """Per thread: the jobs it runs (last = current), and throttle waits seen
    before any job event of a sub-job (their payload has no job id)."""

    jobs: list[str] = field(default_factory=list)
    throttles: dict[str, tuple[int, dict[str, AttributeValue]]] = field(
        default_factory=dict
    )
    acquired: list[tuple[int, int, dict[str, AttributeValue]]] = field(
        default_factory=list
    )


class OpenTelemetrySubscriber(Subscriber):
    """Turn workflow events into OpenTelemetry spans (see the module docstring).

    ``tracer_provider`` defaults to the global one. ``max_open_jobs`` bounds
    the jobs tracked at once: past it, the oldest job's spans are ended.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        max_open_jobs: int = 10_000,
    ) -> None:
        super().__init__()
        self._tracer = trace.get_tracer("job_workflow", __version__, tracer_provider)
        self._propagator = TraceContextTextMapPropagator()
        self._max_open_jobs = max_open_jobs
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._first_runs: OrderedDict[str, SpanContext] = OrderedDict()
        self._local = threading.local()
        self._remove_carrier: Callable[[], None] | None = None
        self._failures = 0
        self._table: dict[str, Callable[[str, Mapping[str, Any]], None]] = {
            "workflow.start": self._start_workflow,
            "workflow": self._end_workflow,
            "task.start": self._start_task,
            "task": self._end_task,
            "task.retry": self._note_on_task,
            "dry_run.skip": self._note_on_task,
            "task.skip": self._note_on_workflow,
            "task.enqueue": self._note_on_workflow,
            "throttle.acquire.start": self._start_throttle,
            "throttle.acquire": self._end_throttle,
            "dependent.wait.start": self._start_wait,
            "dependent.wait": self._end_wait,
            "dependent.reschedule": self._reschedule,
        }

    def open_spans(self) -> int:
        """How many spans are started and not yet ended (for tests)."""
        with self._lock:
            jobs = list(self._jobs.values())
        return sum(len(job.opened()) for job in jobs)

    # -- subscription --

    def _handlers(self) -> list[tuple[str, Callable[[Event], Any]]]:
        # "*": custom ctx.instrument operations can have any name.
        return [("*", self._on_event)]

    def _started(self) -> None:
        self._remove_carrier = register_carrier(self._carry)

    def _stopped(self) -> None:
        if self._remove_carrier is not None:
            self._remove_carrier()
            self._remove_carrier = None
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
            self._first_runs.clear()
        for job in jobs:
            self._close(job)

    def _on_event(self, event: Event) -> None:
        if not self._subscriptions:  # an event that raced with unsubscribe()
            return
        try:
            payload = event.payload
            operation = payload.get("operation")
            if isinstance(operation, str):
                if event.name == operation:
                    self._end_operation(operation, payload)
                elif event.name == f"{operation}.start":
                    self._start_operation(operation, payload)
                return
            handler = self._table.get(event.name)
            if handler is not None:
                handler(event.name, payload)
        except Exception:
            self._report_failure(event.name)

    # -- trace context carried in jobs --

    def _carry(self) -> dict[str, str]:
        """The W3C trace context of the span enqueueing a job right now."""
        carrier: dict[str, str] = {}
        try:
            job = self._current()
            if job is not None and job.task is None and not job.operations:
                context = job.context()  # the runner enqueueing sub-jobs
            else:  # a task body (its span is current) or code outside any job
                context = otel_context.get_current()
            self._propagator.inject(carrier, context=context)
        except Exception:
            self._report_failure("carrier")
            return {}
        return carrier

    def _parent(self, job_id: str, payload: Mapping[str, Any], run: bool) -> Context:
        """Where a job's first span hangs: the carried context, else (for a
        later run of a rescheduled job) its first run, else the current span."""
        carried = payload.get("trace_context")
        if isinstance(carried, Mapping) and carried:
            context = self._propagator.extract(dict(carried), context=Context())
            if trace.get_current_span(context).get_span_context().is_valid:
                return context
        first = self._first_runs.get(job_id) if run else None
        if first is not None:
            return trace.set_span_in_context(NonRecordingSpan(first), Context())
        return otel_context.get_current()

    # -- jobs --

    def _thread(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState()
        return state

    def _current(self) -> _Job | None:
        """The job this thread is running (the innermost one, for composition)."""
        me, jobs = threading.get_ident(), self._thread().jobs
        while jobs:
            job = self._jobs.get(jobs[-1])
            if job is not None and job.thread == me:
                return job
            jobs.pop()
        return None

    def _own(self, payload: Mapping[str, Any]) -> _Job | None:
        job = self._jobs.get(str(payload.get("job_id")))
        if job is not None and job.thread == threading.get_ident():
            return job
        return None

    def _track(self, payload: Mapping[str, Any], *, run: bool) -> _Job:
        """The job of ``payload`` on this thread; ``run`` starts a fresh run.

        Spans left open by an earlier run of the job (a worker interrupted
        mid-wait) or by another thread are ended first.
        """
        job_id, me = str(payload.get("job_id")), threading.get_ident()
        stale: list[_Job] = []
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and (run or job.thread != me):
                stale.append(job)
                job = None
            if job is None:
                name = str(payload.get("job_name"))
                job = _Job(job_id, name, me, self._parent(job_id, payload, run))
                self._jobs[job_id] = job
                while len(self._jobs) > self._max_open_jobs:
                    stale.append(self._jobs.pop(next(iter(self._jobs))))
        for old in stale:
            self._close(old)
        jobs = self._thread().jobs
        if job_id in jobs:
            jobs.remove(job_id)
        jobs.append(job_id)
        return job

    def _release_if_done(self, job: _Job) -> None:
        if job.opened():
            return
        with self._lock:
            if self._jobs.get(job.job_id) is job:
                del self._jobs[job.job_id]

    def _close(self, job: _Job, payload: Mapping[str, Any] | None = None) -> None:
        """End every open span of ``job``, with ``payload``'s error if any."""
        with self._lock:
            if self._jobs.get(job.job_id) is job:
                del self._jobs[job.job_id]
        opened = job.opened()
        job.operations.clear()
        job.throttles.clear()
        job.task = job.wait = job.workflow = None
        for one in opened:
            self._finish(one, payload)

    # -- spans --

    def _start(
        self,
        name: str,
        context: Context,
        attributes: dict[str, AttributeValue],
        start_time: int | None = None,
    ) -> Span | None:
        try:
            return self._tracer.start_span(
                name, context=context, attributes=attributes, start_time=start_time
            )
        except Exception:
            self._report_failure(name)
            return None

    def _attach(self, span: Span) -> _Attached | None:
        try:
            return _attached(trace.set_span_in_context(span))
        except Exception:
            self._report_failure("attach")
            return None

    def _finish(
        self,
        one: _Open,
        payload: Mapping[str, Any] | None = None,
        end_time: int | None = None,
    ) -> None:
        # Detach first (innermost spans are finished first), and only in the
        # thread that attached: a context token belongs to its thread.
        if one.attached is not None and one.thread == threading.get_ident():
            _detach(one.attached)
        try:
            if payload is not None:
                _mark_error(one.span, payload)
            one.span.end(end_time=end_time)
        except Exception:
            self._report_failure("span end")

    def _report_failure(self, where: str) -> None:
        self._failures += 1
        _log.log(
            logging.WARNING if self._failures == 1 else logging.DEBUG,
            "OpenTelemetry subscriber failed at %s; the workflow is not affected",
            where,
            exc_info=True,
            extra={"event": "otel.error"},
        )

    # -- workflow runs --

    def _start_workflow(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._track(payload, run=True)
        span = self._start(f"{job.job_name} workflow", job.parent, _attributes(payload))
        if span is None:
            self._release_if_done(job)
            return
        job.workflow = _Open(span, job.thread)
        with self._lock:
            if job.job_id not in self._first_runs:
                self._first_runs[job.job_id] = span.get_span_context()
                while len(self._first_runs) > self._max_open_jobs:
                    self._first_runs.popitem(last=False)
        self._add_waiting_throttles(job)

    def _end_workflow(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is None:
            return
        self._close(job, payload)
        with self._lock:
            self._first_runs.pop(job.job_id, None)

    def _reschedule(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is None:
            return
        for one in (job.wait, job.workflow):
            if one is not None:
                _note(one.span, name, payload)
        self._close(job)

    # -- task attempts --

    def _start_task(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._track(payload, run=False)
        self._add_waiting_throttles(job)
        if job.task is not None:  # left open by an attempt that never ended
            stale, job.task = job.task, None
            self._finish(stale)
        span = self._start(
            f"{job.job_name}.{payload.get('task_name')} task",
            job.context(),
            _attributes(payload),
        )
        if span is None:
            self._release_if_done(job)
            return
        job.task = _Open(span, job.thread, self._attach(span))

    def _end_task(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is not None and job.task is not None:
            for _, operation in reversed(job.operations):
                self._finish(operation)
            job.operations.clear()
            task, job.task = job.task, None
            self._finish(task, payload)
        elif "error_class" in payload:
            # The attempt failed before it started (acquiring its throttle):
            # an empty span still shows the failure where it happened.
            job = job or self._track(payload, run=False)
            span = self._start(
                f"{job.job_name}.{payload.get('task_name')} task",
                job.context(),
                _attributes(payload),
            )
            if span is not None:
                self._finish(_Open(span, job.thread), payload)
        if job is not None:
            self._release_if_done(job)

    def _note_on_task(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        target = (job.task or job.workflow) if job is not None else None
        if target is not None:
            _note(target.span, name, payload)

    def _note_on_workflow(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is not None and job.workflow is not None:
            _note(job.workflow.span, name, payload)

    # -- custom operations (ctx.instrument) --

    def _start_operation(self, operation: str, payload: Mapping[str, Any]) -> None:
        job = self._track(payload, run=False)
        task = payload.get("task_name")
        where = f"{job.job_name}.{task}" if task is not None else job.job_name
        attributes = _attributes(payload)
        attributes[OPERATION] = operation
        attributes.update(_custom_attributes(payload))
        span = self._start(f"{where} {operation}", job.context(), attributes)
        if span is None:
            self._release_if_done(job)
            return
        job.operations.append((operation, _Open(span, job.thread, self._attach(span))))

    def _end_operation(self, operation: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is None:
            return
        names = [name for name, _ in job.operations]
        if operation not in names:
            return
        index = len(names) - 1 - names[::-1].index(operation)
        inner = job.operations[index + 1 :]
        _, opened = job.operations[index]
        del job.operations[index:]
        for _, one in reversed(inner):
            self._finish(one)
        try:
            opened.span.set_attributes(_custom_attributes(payload))
        finally:
            self._finish(opened, payload)
        self._release_if_done(job)

    # -- throttles --

    def _start_throttle(self, name: str, payload: Mapping[str, Any]) -> None:
        key = str(payload.get("concurrency_key"))
        attributes = _attributes(payload)
        job = self._current()
        if job is None:
            # A sub-job acquires its task's throttle before any event names
            # the job: keep the times, and make the span once the job is known.
            self._thread().throttles[key] = (time.time_ns(), attributes)
            return
        attributes.update({JOB_NAME: job.job_name, JOB_ID: job.job_id})
        if key in job.throttles:
            self._finish(job.throttles.pop(key))
        span = self._start("JobWorkflow throttle.acquire", job.context(), attributes)
        if span is not None:
            job.throttles[key] = _Open(span, job.thread)

    def _end_throttle(self, name: str, payload: Mapping[str, Any]) -> None:
        key = str(payload.get("concurrency_key"))
        job = self._current()
        if job is not None and key in job.throttles:
            self._finish(job.throttles.pop(key), payload)
            self._release_if_done(job)
            return
        state = self._thread()
        waiting = state.throttles.pop(key, None)
        if waiting is not None:
            started, attributes = waiting
            state.acquired.append((started, time.time_ns(), attributes))
            del state.acquired[:-_MAX_WAITING_THROTTLES]

    def _add_waiting_throttles(self, job: _Job) -> None:
        state = self._thread()
        acquired, state.acquired = state.acquired, []
        for started, ended, attributes in acquired:
            attributes.update({JOB_NAME: job.job_name, JOB_ID: job.job_id})
            span = self._start(
                "JobWorkflow throttle.acquire", job.context(), attributes, started
            )
            if span is not None:
                self._finish(_Open(span, job.thread), end_time=ended)

    # -- dependency waits --

    def _start_wait(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is None:
            return
        if job.wait is not None:
            self._finish(job.wait)
        span = self._start(
            "JobWorkflow dependent.wait", job.context(), _attributes(payload)
        )
        job.wait = _Open(span, job.thread) if span is not None else None

    def _end_wait(self, name: str, payload: Mapping[str, Any]) -> None:
        job = self._own(payload)
        if job is not None and job.wait is not None:
            wait, job.wait = job.wait, None
            self._finish(wait, payload)


# Per thread, for every subscriber: the contexts they made current (live),
# and those whose detach came while another subscriber's was on top.
_contexts = threading.local()
_MAX_LATE_DETACHES: Final = 32
_MAX_LIVE_CONTEXTS: Final = 64


def _attached(context: Context) -> _Attached:
    live: list[Context] | None = getattr(_contexts, "live", None)
    if live is None:
        live = _contexts.live = []
    attached = _Attached(context, otel_context.attach(context))
    live.append(context)
    del live[:-_MAX_LIVE_CONTEXTS]
    return attached


def _detach(attached: _Attached) -> None:
    """Make the context current before ``attached`` again, in LIFO order.

    Two subscribers attach their task spans in subscription order and see
    the end event in the same order, so the first to detach is not the
    innermost: its detach waits until the context above it is detached.
    Anything else left on top (a body that attached and never detached) is
    dropped with it.
    """
    live: list[Context] = getattr(_contexts, "live", [])
    waiting: list[_Attached] | None = getattr(_contexts, "waiting", None)
    if waiting is None:
        waiting = _contexts.waiting = []
    current = otel_context.get_current()
    if current is not attached.context and any(c is current for c in live):
        waiting.append(attached)
        del waiting[:-_MAX_LATE_DETACHES]
        return
    while True:
        otel_context.detach(attached.token)
        live[:] = [c for c in live if c is not attached.context]
        current = otel_context.get_current()
        below = next((w for w in waiting if w.context is current), None)
        if below is None:
            return
        waiting.remove(below)
        attached = below


_SCALARS: Final = frozenset({str, bool, int, float})


def _attributes(payload: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for key, attribute in _ATTRIBUTES:
        value = payload.get(key)
        if type(value) in _SCALARS:
            attributes[attribute] = value
    return attributes


def _custom_attributes(payload: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The fields a ctx.instrument block added, those OpenTelemetry can store."""
    attributes: dict[str, AttributeValue] = {}
    for key, value in payload.items():
        if key in _LIBRARY_KEYS or not isinstance(key, str):
            continue
        if isinstance(value, str | bool | int | float):
            attributes[key] = value
        elif isinstance(value, list | tuple) and _same_scalar_type(value):
            attributes[key] = list(value)
    return attributes


def _same_scalar_type(values: list[Any] | tuple[Any, ...]) -> bool:
    kinds = {type(v) for v in values}
    return len(kinds) == 1 and kinds <= _SCALARS


def _mark_error(span: Span, payload: Mapping[str, Any]) -> None:
    error_class = payload.get("error_class")
    if error_class is None:
        return
    message = str(payload.get("error_message", ""))
    span.set_attributes({ERROR_CLASS: str(error_class), ERROR_MESSAGE: message})
    span.add_event(
        "exception",
        {"exception.type": str(error_class), "exception.message": message},
    )
    span.set_status(Status(StatusCode.ERROR, f"{error_class}: {message}"))


def _note(span: Span, name: str, payload: Mapping[str, Any]) -> None:
    attributes: dict[str, AttributeValue] = {}
    for key in _NOTES.get(name, ()):
        value = payload.get(key)
        if isinstance(value, str | bool | int | float):
            attributes[f"job_workflow.{key}"] = value
    if name == "task.retry":
        attributes.update(
            {
                ERROR_CLASS: str(payload.get("error_class")),
                ERROR_MESSAGE: str(payload.get("error_message")),
            }
        )
    span.add_event(name, attributes)
