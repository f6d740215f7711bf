"""What a simulation returns, and the invariants ``check()`` verifies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast, overload

from job_workflow.core import _codec
from job_workflow.core._workflow import registry
from job_workflow.errors import InvariantViolation, UnknownWorkflowError

if TYPE_CHECKING:
    from job_workflow.core.ports import QueueBackend
    from job_workflow.simulator._faults import Faults


class TraceEntry(NamedTuple):
    """One thing that happened: virtual seconds since the start, worker, event.

    A named tuple rather than a dataclass: a simulation records several per
    job, and building a tuple costs a fraction of a frozen dataclass.
    """

    time: float
    worker: str | None
    event: str
    job_id: str | None
    detail: dict[str, Any]

    def canonical(self) -> str:
        return json.dumps(
            [self.time, self.worker, self.event, self.job_id, self.detail],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )


Row = tuple[float, str | None, str, str | None]
"""A trace entry without its detail: virtual time, worker, event, job id."""

_new_entry = cast(
    Callable[[tuple[float, str | None, str, str | None, dict[str, Any]]], TraceEntry],
    partial(tuple.__new__, TraceEntry),
)


def _entry(row: Row, detail: dict[str, Any]) -> TraceEntry:
    return _new_entry((row[0], row[1], row[2], row[3], detail))


class Trace(Sequence[TraceEntry]):
    """A run's trace: a read-only sequence of :class:`TraceEntry`.

    A simulation records several entries per job, hundreds of thousands in
    a long run. Held as named tuples, each would stay tracked by the cycle
    collector for as long as the trace lives (a tuple subclass is never
    untracked, nor is a tuple holding a dict), and the collector's passes
    rescanned them all while the run went on: a tenth of a simulation's
    time, and more with every minute of it. So the trace keeps rows of
    plain values, which the collector stops tracking, beside a list of the
    detail dicts (untracked while they hold plain values too), and builds
    each entry when it is read.
    """

    __slots__ = ("_details", "_rows")

    def __init__(self, rows: list[Row], details: list[dict[str, Any]]) -> None:
        if len(rows) != len(details):
            raise ValueError("a trace needs one detail dict per row")
        self._rows = rows
        self._details = details

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> TraceEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[TraceEntry]: ...

    def __getitem__(self, index: int | slice) -> TraceEntry | list[TraceEntry]:
        if isinstance(index, slice):
            return list(map(_entry, self._rows[index], self._details[index]))
        return _entry(self._rows[index], self._details[index])

    def __iter__(self) -> Iterator[TraceEntry]:
        return map(_entry, self._rows, self._details)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Trace):
            return self._rows == other._rows and self._details == other._details
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by content, like a list

    def __repr__(self) -> str:
        return f"Trace({list(self)!r})"


class Span(NamedTuple):
    """A stretch of one worker's time: a task body, a poll, a retry wait."""

    worker: str
    start: float
    end: float
    kind: str
    job_id: str | None
    task: str | None
    each_index: int | None


@dataclass(frozen=True, slots=True)
class Metrics:
    """Aggregates of a run (virtual seconds)."""

    makespan: float
    worker_busy: dict[str, float]
    worker_polling: dict[str, float]
    reschedules: int
    retries: int
    peak_holders: dict[str, int]
    peak_concurrency: dict[str, int]
    concurrency_limits: dict[str, int]


@dataclass(frozen=True)
class SimulationResult:
    """Statuses, outputs, trace and metrics of a simulation, and ``check()``.

    Trace times count virtual seconds from ``start``; span times are absolute
    virtual times (``span.start - result.start`` is seconds since the start).
    Spans still under way when the result was taken (a deadlock, ``until``)
    end at the result's moment.
    """

    seed: int
    workers: int
    faults: Faults
    statuses: dict[str, str]
    outputs: dict[str, dict[str, list[dict[str, Any]]]]
    trace: Trace
    spans: list[Span]
    deadlocked: bool
    metrics: Metrics
    workflows: list[tuple[str, str, dict[str, Any]]]
    limits: dict[str, int]
    reruns: list[tuple[str, str, int]]
    backend: QueueBackend = field(repr=False)
    compare_outputs: bool = True
    start: float = 0.0

    @cached_property
    def digest(self) -> str:
        """A stable hash of the trace: same seed and scenario, same digest.

        Computed on first use: hashing every entry's canonical JSON costs
        about as much as a fifth of the run, which a caller that never
        compares digests should not pay.
        """
        lines = "\n".join(entry.canonical() for entry in self.trace)
        return hashlib.sha256(lines.encode()).hexdigest()

    def check(self) -> None:
        """Raise InvariantViolation naming the first broken invariant.

        In order: no deadlock; no job lost or stuck (every job finished or
        failed); dependency order (a task starts only after its dependencies,
        and all their sub-jobs, completed); throttle limits (task bodies
        holding one throttle key never outnumber its limit) and concurrency
        limits (sub-jobs of one key never run beyond it); retry bounds (no
        retry beyond a task's retry count); a finished workflow finished every
        task (a rescheduled job is never recorded as finished); no recorded
        iteration ran again, also after a crash (only a job delivered to two
        workers at once may run one twice); outputs of a succeeded workflow
        equal those of a plain ``perform_now``.
        """
        for invariant in self._invariants():
            message = invariant()
            if message is not None:
                raise InvariantViolation(f"{message} (seed {self.seed})")

    def _invariants(self) -> list[Callable[[], str | None]]:
        return [
            self._no_deadlock,
            self._nothing_stuck,
            self._dependency_order,
            self._throttle_limits,
            self._concurrency_limits,
            self._retry_bounds,
            self._finished_means_done,
            self._no_rerun,
            self._outputs_match,
        ]

    def _no_deadlock(self) -> str | None:
        if not self.deadlocked:
            return None
        waiting = sorted(
            {
                e.job_id
                for e in self.trace
                if e.event == "dependent.wait.start" and e.job_id
            }
        )
        return (
            "deadlock: jobs are pending and no progress is possible "
            f"(every worker is polling for sub-jobs that no worker is free to run; "
            f"waiting jobs: {', '.join(waiting) or 'none'}); use dependency_wait "
            "with a poll_timeout so waiting jobs reschedule"
        )

    def _nothing_stuck(self) -> str | None:
        stuck = [
            f"{job.id} ({job.status})"
            for job in self.backend.jobs()
            if job.status not in ("finished", "failed")
        ]
        if stuck:
            return f"job lost or stuck: {', '.join(stuck[:5])} never finished"
        return None

    def _dependency_order(self) -> str | None:
        jobs = {job.id: job for job in self.backend.jobs()}
        started: dict[tuple[str, str], int] = {}
        completed = self._completion_positions(jobs)
        for position, entry in enumerate(self.trace):
            job = jobs.get(entry.job_id or "")
            task = entry.detail.get("task_name")
            if job is None or job.parent_id or task is None:
                continue
            if entry.event in ("task.start", "task.skip", "task.enqueue"):
                started.setdefault((job.id, task), position)
        for (owner, task), position in started.items():
            cls = _workflow(jobs[owner].workflow)
            if cls is None:
                continue
            finished = self.backend.load_state(owner, ()).tasks
            for dependency in cls.get_task(task).depends_on:
                done = completed.get((owner, dependency))
                if done is None and finished.get(dependency) == "done":
                    done = -1  # an in-process map over nothing emits no event
                if done is None or done > position:
                    return (
                        f"dependency order: task {task!r} of job {owner} started "
                        f"before its dependency {dependency!r} completed"
                    )
        return None

    def _completion_positions(self, jobs: dict[str, Any]) -> dict[tuple[str, str], int]:
        """Trace position at which each (workflow job, task) had completed.

        A task is complete once each of its iterations (or sub-jobs) has
        completed *once*: later re-runs by a duplicate or recovered copy do
        not move it. An enqueued task with no sub-jobs completes when it
        enqueued nothing.
        """
        first: dict[tuple[str, str, Any], int] = {}
        for position, entry in enumerate(self.trace):
            job = jobs.get(entry.job_id or "")
            if job is None:
                continue
            if entry.event == "job.finish" and job.parent_id and job.task_name:
                key = (job.parent_id, job.task_name, job.id)
                first.setdefault(key, position)
            task = entry.detail.get("task_name")
            if task is None or job.parent_id:
                continue
            if entry.event in ("task.complete", "task.skip"):
                first.setdefault(
                    (job.id, task, entry.detail.get("each_index")), position
                )
            if entry.event == "task.enqueue":
                first.setdefault((job.id, task, "enqueued"), position)
        completed: dict[tuple[str, str], int] = {}
        for (owner, task, _), position in first.items():
            completed[(owner, task)] = max(completed.get((owner, task), -1), position)
        return completed

    def _throttle_limits(self) -> str | None:
        for key, peak in self.metrics.peak_holders.items():
            limit = self.limits.get(key)
            if limit is not None and peak > limit:
                return (
                    f"throttle limit: key {key!r} was held by {peak} task bodies at "
                    f"once, limit {limit}"
                )
        return None

    def _concurrency_limits(self) -> str | None:
        for key, peak in self.metrics.peak_concurrency.items():
            limit = self.metrics.concurrency_limits.get(key)
            if limit is not None and peak > limit:
                return (
                    f"concurrency limit: {peak} sub-jobs of key {key!r} ran at once, "
                    f"limit {limit}"
                )
        return None

    def _retry_bounds(self) -> str | None:
        jobs = {job.id: job for job in self.backend.jobs()}
        for entry in self.trace:
            if entry.event != "task.retry" or entry.job_id not in jobs:
                continue
            cls = _workflow(jobs[entry.job_id].workflow)
            task = entry.detail.get("task_name")
            if cls is None or task is None:
                continue
            allowed = cls.get_task(task).options.retry.count
            if entry.detail.get("attempt", 0) > allowed:
                return (
                    f"retry bounds: task {task!r} of job {entry.job_id} retried "
                    f"{entry.detail['attempt']} times, retry count {allowed}"
                )
        return None

    def _finished_means_done(self) -> str | None:
        for job in self.backend.jobs():
            if job.status != "finished" or job.parent_id:
                continue
            cls = _workflow(job.workflow)
            if cls is None:
                continue
            done = self.backend.load_state(job.id, ()).tasks
            missing = [t.name for t in cls.tasks if t.name not in done]
            if missing:
                return (
                    f"rescheduled or unfinished job recorded as finished: job {job.id} "
                    f"finished without running {', '.join(map(repr, missing))}"
                )
        return None

    def _no_rerun(self) -> str | None:
        if not self.reruns:
            return None
        owner, task, index = self.reruns[0]
        return (
            f"iteration ran again: {task!r}[{index}] of job {owner} was recorded as "
            "finished and then ran a second time"
        )

    def _outputs_match(self) -> str | None:
        if not self.compare_outputs:
            return None
        for job_id, name, arguments in self.workflows:
            if self.statuses.get(job_id) != "succeeded":
                continue
            cls = _workflow(name)
            if cls is None:
                continue
            expected = _plain_run(cls, arguments)
            if expected is None:
                continue
            actual = dict(self.outputs[job_id].items())
            if actual != expected:
                differing = sorted(
                    task
                    for task in set(actual) | set(expected)
                    if actual.get(task) != expected.get(task)
                )
                return (
                    f"outputs differ from perform_now for job {job_id}: tasks "
                    f"{', '.join(map(repr, differing))}"
                )
        return None


def _workflow(name: str) -> Any:
    try:
        return registry.get(name)
    except UnknownWorkflowError:
        return None


def _plain_run(cls: Any, arguments: dict[str, Any]) -> dict[str, list[Any]] | None:
    """Outputs of a fault-free perform_now, as JSON, or None if it fails."""
    from job_workflow._runtime import use_backend, use_clock
    from job_workflow.backends.memory import MemoryBackend
    from job_workflow.clock import ManualClock

    clock = ManualClock()
    try:
        with use_clock(clock), use_backend(MemoryBackend(clock=clock)):
            run = cls.perform_now(**arguments)
    except Exception:
        return None
    return {
        task: [_codec.encode(data) for data in rows]
        for task, rows in run.output.to_dict().items()
        if rows
    }
