"""``dry_run(Workflow, **arguments)``: what a run would do, side effects held back.

The workflow runs for real, synchronously, with dry-run mode forced on for
every task, on a fresh inline :class:`MemoryBackend` and a
:class:`ManualClock` (retry delays and throttle polls take no real time).
The report is assembled from the events of that one job (filtered by its job
id, so other runs in the process do not leak in) and from the progress the
backend persisted: which tasks ran, which were skipped and why, how many
iterations and sub-jobs each had, which ``skip_in_dry_run`` calls were held
back, and the outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from job_workflow._runtime import _Launcher
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core import _arguments
from job_workflow.core._events import Event, capture
from job_workflow.core._runner import decode_output
from job_workflow.core._task import Task
from job_workflow.core._workflow import Workflow
from job_workflow.core.ports import JobRecord

__all__ = [
    "DryRunReport",
    "SkippedSideEffect",
    "SubJobs",
    "TaskReport",
    "dry_run",
]

TaskStatus = Literal["ran", "skipped", "failed", "not_run"]
RunStatus = Literal["succeeded", "failed"]

# Reasons a task did not run; "condition_not_met" comes from the runner.
NOT_REACHED = "an earlier task failed"


@dataclass(frozen=True, slots=True)
class SubJobs:
    """The sub-jobs an enqueued task would create: how many, where, how many at once."""

    count: int
    queue: str
    concurrency: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "queue": self.queue,
            "concurrency": self.concurrency,
        }

    def __str__(self) -> str:
        limit = f", max {self.concurrency}" if self.concurrency else ""
        return f"{self.count} on {self.queue}{limit}"


@dataclass(frozen=True, slots=True)
class SkippedSideEffect:
    """One ``ctx.skip_in_dry_run`` call that returned its fallback.

    ``index`` is the call's position within its iteration (``dry_run_index``);
    ``each_index`` is the iteration of a map task, ``None`` for a plain task.
    """

    name: str | None
    index: int
    each_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "each_index": self.each_index}


@dataclass(frozen=True, slots=True)
class TaskReport:
    """What one task did in the dry run.

    ``status`` is ``"ran"``, ``"skipped"`` (``reason`` says why, e.g.
    ``"condition_not_met"``), ``"failed"`` (``error_class`` and
    ``error_message``) or ``"not_run"`` (an earlier task failed first).
    ``iterations`` counts iterations that completed; ``retries`` the retries
    made on the way; ``sub_jobs`` is set for a task that would enqueue.
    """

    name: str
    status: TaskStatus
    reason: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    iterations: int = 0
    retries: int = 0
    is_map: bool = False
    sub_jobs: SubJobs | None = None
    skipped_side_effects: tuple[SkippedSideEffect, ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()

    @property
    def error(self) -> str | None:
        """``"ErrorClass: message"`` for a failed task, else ``None``."""
        if self.error_class is None:
            return None
        return f"{self.error_class}: {self.error_message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "error_class": self.error_class,
            "error_message": self.error_message,
            "iterations": self.iterations,
            "retries": self.retries,
            "is_map": self.is_map,
            "sub_jobs": None if self.sub_jobs is None else self.sub_jobs.to_dict(),
            "skipped_side_effects": [s.to_dict() for s in self.skipped_side_effects],
            "outputs": [dict(o) for o in self.outputs],
        }


@dataclass(frozen=True)
class DryRunReport:
    """The result of :func:`dry_run`: one :class:`TaskReport` per task, in run order.

    ``status`` is ``"succeeded"`` or ``"failed"``; ``error`` holds the
    exception a failed run raised. ``str(report)`` is a plain-text table;
    ``report.to_dict()`` plain data; ``job_workflow.viz.render(report, ...)``
    draws it over the workflow's graph.
    """

    workflow: type[Workflow]
    arguments: Mapping[str, Any]
    tasks: tuple[TaskReport, ...]
    status: RunStatus
    job_id: str
    error: Exception | None = field(default=None, compare=False)

    @property
    def workflow_name(self) -> str:
        return self.workflow.name

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def task(self, name: str) -> TaskReport:
        """The report of task ``name``; an unknown name raises UnknownTaskError."""
        self.workflow.get_task(name)
        return next(t for t in self.tasks if t.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow_name,
            "job_id": self.job_id,
            "status": self.status,
            "error": None if self.error is None else _describe(self.error),
            "arguments": dict(self.arguments),
            "tasks": [t.to_dict() for t in self.tasks],
        }

    def __str__(self) -> str:
        return format_report(self)


def dry_run(workflow: type[Workflow], /, **arguments: Any) -> DryRunReport:
    """Run ``workflow`` with dry-run mode forced on and report what happened.

    Every task runs (task bodies, hooks, retries, conditions, map iterations
    all as usual) but each ``ctx.skip_in_dry_run(...)`` returns its fallback
    instead of calling its action. The run is synchronous, on a fresh inline
    memory backend and a manual clock, so it never waits for real and never
    touches the process backend. Enqueued tasks run their iterations in
    place; the report says how many sub-jobs they would have created.

    A task that fails does not raise here: the report records it (status
    ``"failed"`` with the error; the tasks after it ``"not_run"``) and
    ``report.error`` holds the exception. Invalid arguments still raise
    :class:`~job_workflow.ArgumentValidationError` before anything runs.

    A workflow started from inside a task (composition) is a run of its own,
    on the process backend, under its own dry-run setting: it is not forced
    into dry-run mode and does not appear in this report.
    """
    _check_workflow(workflow)
    values = _arguments.validate(workflow.arguments, arguments, workflow.name)
    backend = MemoryBackend("inline", clock=ManualClock())
    options = {"force_dry_run": True, "backend": backend, "clock": backend.clock}
    error: Exception | None = None
    with capture("*") as captured:
        try:
            _Launcher().perform_now(workflow, arguments, options)
        except Exception as exc:
            error = exc
    job = _workflow_job(backend, error)
    own = [e for e in captured if e.payload.get("job_id") == job.id]
    failed_task = job.current_task if error is not None else None
    tasks = _task_reports(workflow, backend, job.id, own, failed_task, error)
    return DryRunReport(
        workflow=workflow,
        arguments=values,
        tasks=tuple(tasks),
        status="failed" if error is not None else "succeeded",
        job_id=job.id,
        error=error,
    )


def _workflow_job(backend: MemoryBackend, error: Exception | None) -> JobRecord:
    jobs = [job for job in backend.jobs() if job.parent_id is None]
    if not jobs:  # pragma: no cover - arguments were validated above
        assert error is not None
        raise error
    return jobs[0]


def _check_workflow(workflow: Any) -> None:
    if not (
        isinstance(workflow, type)
        and issubclass(workflow, Workflow)
        and workflow is not Workflow
    ):
        raise TypeError(
            f"dry_run() takes a Workflow subclass, got {workflow!r}; "
            "pass the class itself, e.g. dry_run(Pipeline, items=[1, 2])"
        )


def _task_reports(
    workflow: type[Workflow],
    backend: MemoryBackend,
    job_id: str,
    events: Sequence[Event],
    failed_task: str | None,
    error: Exception | None,
) -> list[TaskReport]:
    state = backend.load_state(job_id)
    by_task: dict[str, list[Event]] = {}
    for event in events:
        name = event.payload.get("task_name")
        if isinstance(name, str):
            by_task.setdefault(name, []).append(event)
    reports = []
    for task in workflow.tasks:
        own = by_task.get(task.name, [])
        outputs = _outputs(task, state.outputs.get(task.name, {}))
        status = _status(task, state.tasks, own, failed_task)
        reports.append(_task_report(workflow, task, status, own, outputs, error))
    return reports


def _status(
    task: Task,
    finished: Mapping[str, str],
    events: Iterable[Event],
    failed_task: str | None,
) -> TaskStatus:
    if finished.get(task.name) == "skipped":
        return "skipped"
    if task.name in finished:
        return "ran"
    if task.name == failed_task or any(e.name == "task.error" for e in events):
        return "failed"
    return "not_run"


def _task_report(
    workflow: type[Workflow],
    task: Task,
    status: TaskStatus,
    events: Sequence[Event],
    outputs: tuple[dict[str, Any], ...],
    error: Exception | None,
) -> TaskReport:
    names = [e.name for e in events]
    return TaskReport(
        name=task.name,
        status=status,
        reason=_reason(status, events),
        error_class=type(error).__name__ if status == "failed" and error else None,
        error_message=str(error) if status == "failed" and error else None,
        iterations=names.count("task.complete"),
        retries=names.count("task.retry"),
        is_map=task.is_map,
        sub_jobs=_sub_jobs(workflow, task, events),
        skipped_side_effects=tuple(
            SkippedSideEffect(
                e.payload.get("dry_run_name"),
                int(e.payload.get("dry_run_index") or 0),
                e.payload.get("each_index"),
            )
            for e in events
            if e.name == "dry_run.skip"
        ),
        outputs=outputs,
    )


def _reason(status: TaskStatus, events: Iterable[Event]) -> str | None:
    if status == "not_run":
        return NOT_REACHED
    if status != "skipped":
        return None
    for event in events:
        if event.name == "task.skip":
            return str(event.payload.get("reason") or "skipped")
    return "skipped"


def _sub_jobs(
    workflow: type[Workflow], task: Task, events: Iterable[Event]
) -> SubJobs | None:
    spec = task.options.enqueue
    for event in events:
        if event.name == "task.enqueue":
            return SubJobs(
                count=int(event.payload.get("sub_job_count") or 0),
                queue=spec.queue or workflow.queue,
                concurrency=spec.concurrency,
            )
    return None


def _outputs(
    task: Task, by_index: Mapping[int, dict[str, Any]]
) -> tuple[dict[str, Any], ...]:
    declared = task.options.output
    return tuple(decode_output(declared, by_index[i]) for i in sorted(by_index))


def _describe(error: BaseException) -> dict[str, str]:
    return {"error_class": type(error).__name__, "error_message": str(error)}


# -- the plain-text table --

_HEADERS = ("task", "status", "iterations", "sub-jobs", "side effects skipped", "note")
_NOTE_WIDTH = 60
_VALUE_WIDTH = 100


def format_report(report: DryRunReport) -> str:
    """The report as lines of plain text: a heading, a table, the outputs."""
    heading = f"dry run of {report.workflow_name}: {report.status}"
    if report.error is not None:
        heading += f" ({_clip(_one_line(report.error), _NOTE_WIDTH)})"
    arguments = ", ".join(
        f"{k}={_clip(repr(v), 40)}" for k, v in report.arguments.items()
    )
    rows = [_row(t) for t in report.tasks]
    lines = [heading, f"arguments: {arguments or '(none)'}", "", *_table(rows)]
    outputs = [t for t in report.tasks if t.outputs]
    if outputs:
        lines += ["", "outputs:"]
        lines += [
            f"  {t.name}: {_clip(repr(list(t.outputs)), _VALUE_WIDTH)}" for t in outputs
        ]
    return "\n".join(lines)


def _row(task: TaskReport) -> tuple[str, ...]:
    status = task.status.replace("_", " ")
    iterations = str(task.iterations)
    if task.retries:
        iterations += f" ({task.retries} retries)"
    note = task.reason or ""
    if task.error_class is not None:
        first = (task.error_message or "").splitlines()[:1]
        note = _clip(": ".join([task.error_class, *first]), _NOTE_WIDTH)
    return (
        task.name,
        status,
        iterations,
        str(task.sub_jobs) if task.sub_jobs is not None else "-",
        summarize_side_effects(task.skipped_side_effects) or "-",
        note,
    )


def summarize_side_effects(skips: Iterable[SkippedSideEffect]) -> str:
    """``"email, gateway.charge x3"``: names in first-seen order with counts."""
    counts: dict[str, int] = {}
    for skip in skips:
        label = skip.name or "(unnamed)"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(
        label if count == 1 else f"{label} x{count}" for label, count in counts.items()
    )


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [
        max(len(header), *(len(row[i]) for row in rows)) if rows else len(header)
        for i, header in enumerate(_HEADERS)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ).rstrip()

    return [line(_HEADERS), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _one_line(error: BaseException) -> str:
    first = str(error).splitlines()[:1]
    return ": ".join([type(error).__name__, *first])


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
