"""Assertions with failure messages that say what happened to a workflow.

Each helper raises a plain ``AssertionError`` and sets ``__tracebackhide__``,
so pytest shows the line of the test that called it and the message, not
the helper's own frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, TypeAlias

from job_workflow._runtime import WorkflowRun, current_backend
from job_workflow._status import JobHandle, WorkflowStatus
from job_workflow.core._events import Event
from job_workflow.core.ports import JobRecord, QueueBackend

__all__ = ["assert_event_sequence", "assert_failed", "assert_succeeded"]

RunReference: TypeAlias = JobHandle | WorkflowRun | WorkflowStatus | str
"""What the status assertions accept: a handle, a run, a status or a job id."""

ExpectedEvent: TypeAlias = str | tuple[str, Mapping[str, Any]]
"""An event name (or glob), optionally with payload fields it must carry."""

# Payload fields worth showing when listing captured events.
_SHOWN_FIELDS = (
    "task_name",
    "each_index",
    "attempt",
    "dependent_task_name",
    "concurrency_key",
    "reason",
    "error_class",
    "error_message",
)
_LISTED_EVENTS = 60


def assert_succeeded(
    run: RunReference, *, backend: QueueBackend | None = None
) -> WorkflowStatus:
    """Assert that a workflow and all its sub-jobs finished; return its status.

    ``run`` is what ``perform_later`` or ``perform_now`` returned, a
    ``WorkflowStatus`` or a job id. Job ids are looked up on ``backend``
    (default: the process backend); a handle remembers its own backend.
    The failure message names the failed task, iteration and error, or,
    for a workflow still pending, reminds you to drain the backend.
    """
    __tracebackhide__ = True
    status, records = _lookup(run, backend)
    if status.status != "succeeded":
        raise AssertionError(_describe(status, records, "succeeded"))
    return status


def assert_failed(
    run: RunReference,
    error: type[BaseException] | str | None = None,
    *,
    backend: QueueBackend | None = None,
) -> WorkflowStatus:
    """Assert that a workflow failed, with ``error`` if given; return its status.

    ``error`` is an exception class or its name; it matches when the
    workflow job or any of its sub-jobs failed with it (a failed sub-job
    makes its parent fail with ``DependencyFailedError``, so both match).
    ``run`` and ``backend`` are as for :func:`assert_succeeded`.
    """
    __tracebackhide__ = True
    status, records = _lookup(run, backend)
    if status.status != "failed":
        raise AssertionError(_describe(status, records, "failed"))
    wanted = error if isinstance(error, str) or error is None else error.__name__
    # A failed sub-job makes its parent fail with DependencyFailedError, so
    # the error asked for may sit on any job of the workflow.
    errors = [r.error for r in records if r.error is not None]
    if wanted is not None and all(e.error_class != wanted for e in errors):
        got = "; ".join(f"{e.error_class}: {e.message}" for e in errors) or "no error"
        raise AssertionError(
            f"workflow {status.workflow_name!r} (job {status.job_id}) failed "
            f"with {got}, expected {wanted}"
        )
    return status


def assert_event_sequence(
    captured: Iterable[Event], expected: Sequence[ExpectedEvent]
) -> None:
    """Assert that ``expected`` events were emitted in this order.

    Each item is an event name or glob (``"task.*"``), or a pair of a name
    and payload fields the event must carry (``("task.start", {"task_name":
    "total"})``). Other events may come between them: this checks a
    subsequence, not the whole list. The failure message shows which
    expected events matched, where the match stopped, and the captured
    events with their task names.
    """
    __tracebackhide__ = True
    events = list(captured)
    wants = [_normalise(item) for item in expected]
    found: list[int] = []
    position = 0
    for name, fields in wants:
        index = _find(events, name, fields, position)
        if index is None:
            raise AssertionError(_sequence_failure(events, wants, found))
        found.append(index)
        position = index + 1


# -- lookup --


def _lookup(
    run: RunReference, backend: QueueBackend | None
) -> tuple[WorkflowStatus, list[JobRecord]]:
    __tracebackhide__ = True
    if isinstance(run, JobHandle) and backend is None:
        backend = run._backend
    if backend is None:
        backend = current_backend()
    job_id = run if isinstance(run, str) else run.job_id
    status = (
        run
        if isinstance(run, WorkflowStatus)
        else WorkflowStatus.find_by(job_id=job_id, backend=backend)
    )
    if status is None:
        raise AssertionError(f"no workflow job {job_id!r} on backend {backend!r}")
    job = backend.get_job(job_id)
    records = [job] if job is not None else []
    return status, records + backend.sub_jobs(job_id)


# -- messages --


def _describe(status: WorkflowStatus, records: list[JobRecord], expected: str) -> str:
    lines = [
        f"workflow {status.workflow_name!r} (job {status.job_id}) is "
        f"{status.status}, expected {expected}"
    ]
    # Sub-jobs first: a failed one is usually why its parent failed.
    ordered = sorted(records, key=lambda r: r.task_name is None)
    failures = [(r, r.error) for r in ordered if r.status == "failed" and r.error]
    for record, error in failures:
        lines.append(f"  {_where(record)} failed: {error.error_class}: {error.message}")
    if not failures and status.error is not None:
        lines.append(f"  error: {status.error.error_class}: {status.error.message}")
    if status.current_task_name:
        lines.append(f"  current task: {status.current_task_name}")
    waiting = [r for r in ordered if r.status in ("ready", "scheduled", "blocked")]
    if waiting:
        listed = ", ".join(f"{_where(r)} ({r.status})" for r in waiting[:5])
        more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
        lines.append(f"  waiting: {listed}{more}")
    if status.status in ("pending", "running"):
        lines.append(
            "  hint: jobs run only when workers take them; call "
            "job_workflow.testing.drain(backend) before asserting"
        )
    return "\n".join(lines)


def _where(record: JobRecord) -> str:
    if record.task_name is None:
        task = record.current_task
        return f"task {task!r}" if task else "the workflow job"
    index = "" if record.each_index is None else f"[{record.each_index}]"
    return f"task {record.task_name!r}{index} (sub-job {record.id})"


def _normalise(item: ExpectedEvent) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, str):
        return item, {}
    name, fields = item
    return name, fields


def _find(
    events: list[Event], name: str, fields: Mapping[str, Any], start: int
) -> int | None:
    for index in range(start, len(events)):
        event = events[index]
        if fnmatchcase(event.name, name) and all(
            key in event.payload and event.payload[key] == value
            for key, value in fields.items()
        ):
            return index
    return None


def _sequence_failure(
    events: list[Event],
    wants: list[tuple[str, Mapping[str, Any]]],
    found: list[int],
) -> str:
    missing = len(found)
    after = f"after event #{found[-1] + 1}" if found else "in the captured events"
    lines = [f"expected event sequence not found: {missing} of {len(wants)} matched"]
    for number, (name, fields) in enumerate(wants):
        label = _label(name, fields)
        if number < missing:
            lines.append(f"  ok       {label}  (#{found[number] + 1})")
        elif number == missing:
            lines.append(f"  MISSING  {label}  (none {after})")
        else:
            lines.append(f"  -        {label}")
    extra = {key for _, fields in wants for key in fields}
    lines.append(f"captured events ({len(events)}):")
    for number, event in enumerate(events[:_LISTED_EVENTS], start=1):
        lines.append(f"  #{number:<3} {_summary(event, extra)}")
    if len(events) > _LISTED_EVENTS:
        lines.append(f"  ... and {len(events) - _LISTED_EVENTS} more")
    return "\n".join(lines)


def _label(name: str, fields: Mapping[str, Any]) -> str:
    shown = " ".join(f"{key}={value!r}" for key, value in fields.items())
    return f"{name} {shown}" if shown else name


def _summary(event: Event, extra: set[str]) -> str:
    payload = event.payload
    keys = [k for k in _SHOWN_FIELDS if payload.get(k) is not None]
    keys += sorted(k for k in extra if k in payload and k not in keys)
    shown = " ".join(f"{key}={payload[key]!r}" for key in keys)
    return f"{event.name:<28} {shown}".rstrip()
