"""The two ports between the pure core and the world: queue backend and clock.

The core never reads the wall clock, sleeps, or touches storage itself: it
asks a :class:`Clock` and a :class:`QueueBackend`. A real clock and the
memory or SQL backend make production; a virtual clock and the memory
backend make the simulator. Times are float seconds since the epoch and are
passed *in* (``now``), so backends compute expiry and due times from numbers
the caller chose.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

JobStatus = Literal["ready", "scheduled", "blocked", "claimed", "finished", "failed"]
TaskOutcome = Literal["done", "skipped", "enqueued"]

TERMINAL_STATUSES: frozenset[str] = frozenset({"finished", "failed"})
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class BackendUnavailableError(ConnectionError):
    """A backend operation failed because its storage cannot be reached.

    Part of the port: a backend raises it (or a subclass, such as the SQL
    backend's ``DatabaseUnavailableError``) when a database is down or a
    connection dropped. The job that met it is not at fault, so a worker
    does not fail it: it gives the job back to the queue once the backend
    answers again, and the job resumes from its persisted progress.
    """


@runtime_checkable
class Clock(Protocol):
    """Time and randomness for the runner.

    ``now`` is wall time (seconds since the epoch) for timestamps and due
    times; ``monotonic`` measures durations; ``sleep`` is the only way the
    library waits; ``random`` is the one seeded source of jitter.
    """

    @property
    def random(self) -> random.Random: ...

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class NewJob(NamedTuple):
    """A job to enqueue. ``task_name`` set means a sub-job of ``parent_id``.

    A named tuple like :class:`JobRecord`: a parent builds one per sub-job.
    """

    workflow: str
    arguments: Mapping[str, Any]
    queue: str = "default"
    priority: int = 0
    run_at: float | None = None
    parent_id: str | None = None
    task_name: str | None = None
    each_index: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    metadata: Mapping[str, Any] = _NO_METADATA


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed for good: exception class and message."""

    error_class: str
    message: str


class JobRecord(NamedTuple):
    """A snapshot of one job as the backend stores it.

    A named tuple, immutable like the other records: a backend builds one
    at every claim, and a tuple of nineteen fields is built several times
    faster than a frozen dataclass.
    """

    id: str
    workflow: str
    arguments: Mapping[str, Any]
    queue: str
    priority: int
    status: JobStatus
    created_at: float
    run_at: float
    parent_id: str | None = None
    task_name: str | None = None
    each_index: int | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    claimed_by: str | None = None
    executions: int = 0
    finished_at: float | None = None
    error: JobError | None = None
    current_task: str | None = None
    metadata: Mapping[str, Any] = _NO_METADATA

    @property
    def is_sub_job(self) -> bool:
        return self.task_name is not None


@dataclass(slots=True)
class JobState:
    """The progress a job has persisted: what a resumed run continues from.

    ``tasks`` maps finished tasks to how they finished; ``iterations`` holds
    the finished iteration indices of tasks still running; ``outputs`` maps
    task -> each_index -> output data (JSON); ``sub_jobs`` lists the sub-job
    ids an enqueued task created, in each_index order.
    """

    tasks: dict[str, TaskOutcome] = field(default_factory=dict)
    iterations: dict[str, set[int]] = field(default_factory=dict)
    outputs: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    sub_jobs: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubJobProgress:
    """How the sub-jobs of one task stand: what a waiting parent polls."""

    total: int
    pending: int
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SemaphoreStatistics:
    """A semaphore at one moment: who holds it and its limit."""

    key: str
    limit: int
    holders: tuple[str, ...]
    expires_at: tuple[float, ...]


class QueueBackend(Protocol):
    """Storage and coordination for jobs: what every backend must provide.

    Enqueueing: ``enqueue`` (bulk; a job with ``run_at`` in the future is
    scheduled; a sub-job with a concurrency key over its limit is blocked and
    released in enqueue order) and ``start_inline`` (a job the caller runs
    itself, for ``perform_now``).
    Workers: ``claim`` ready jobs of unpaused queues (priority, then enqueue
    order), then exactly one of ``finish`` / ``fail`` / ``reschedule``;
    ``release_claimed`` returns a dead worker's jobs to the queue.
    A worker presumed dead may only have been slow, its job claimed again
    by another: so the three settles take the settling worker's
    ``worker_id`` and change nothing unless the job is still claimed by
    it (``worker_id=None`` skips that check, for callers that claim
    nothing). They return whether they changed the job; a refused one is
    logged (event ``job.stale_settle``), never raised, since the late
    worker did nothing wrong.
    ``dispatch_due`` makes due scheduled jobs ready and expires semaphore
    leases; ``next_due_time`` tells a driver when that will next matter.
    Progress: ``load_state`` (``tasks`` limits the outputs, iterations and
    sub-job ids returned to those tasks, so a sub-job reading its parent
    does not copy the outputs, nor the id list, of its thousands of
    siblings; every task's outcome comes back) / ``record_iteration`` /
    ``record_task`` / ``set_current_task`` (``record_iteration`` with
    ``task_outcome`` also records the task, in the same write: the runner's
    last iteration of a task; ``finish`` clears the current task);
    lookup with ``get_job`` and
    ``sub_jobs``; ``sub_job_progress`` answers a waiting parent's poll
    (counts and failed ids, in each_index order) without reading every
    sub-job.
    Semaphores: ``semaphore_acquire`` / ``semaphore_release`` /
    ``semaphore_statistics`` (a lease lasts ``ttl`` seconds).
    Queues: ``pause`` / ``resume`` / ``paused_queues`` / ``queue_size`` /
    ``queue_latency`` / ``clear_queue`` / ``jobs``.
    An operation a backend cannot do raises NotImplementedError naming the
    backend and the operation.
    """

    name: str

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> list[str]: ...

    def start_inline(self, job: NewJob, worker_id: str, now: float) -> JobRecord: ...

    def claim(
        self, queues: Sequence[str] | None, worker_id: str, now: float, limit: int = 1
    ) -> list[JobRecord]: ...

    def finish(
        self, job_id: str, now: float, *, worker_id: str | None = None
    ) -> bool: ...

    def fail(
        self, job_id: str, error: JobError, now: float, *, worker_id: str | None = None
    ) -> bool: ...

    def reschedule(
        self, job_id: str, run_at: float, now: float, *, worker_id: str | None = None
    ) -> bool: ...

    def release_claimed(self, worker_id: str, now: float) -> list[str]: ...

    def dispatch_due(self, now: float) -> int: ...

    def next_due_time(self) -> float | None: ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def sub_jobs(
        self, parent_id: str, task_name: str | None = None
    ) -> list[JobRecord]: ...

    def sub_job_progress(self, parent_id: str, task_name: str) -> SubJobProgress: ...

    def load_state(self, job_id: str, tasks: Collection[str] | None = None) -> JobState:
        """The job's progress, as the caller's own copy (it may change it)."""
        ...

    def record_iteration(
        self,
        job_id: str,
        task_name: str,
        each_index: int,
        output: dict[str, Any] | None,
        *,
        task_outcome: TaskOutcome | None = None,
    ) -> None: ...

    def record_task(
        self,
        job_id: str,
        task_name: str,
        outcome: TaskOutcome,
        sub_job_ids: Sequence[str] = (),
    ) -> None: ...

    def set_current_task(self, job_id: str, task_name: str | None) -> None: ...

    def semaphore_acquire(
        self, key: str, limit: int, ttl: float, holder: str, now: float
    ) -> bool: ...

    def semaphore_release(self, key: str, holder: str, now: float) -> bool: ...

    def semaphore_statistics(self, key: str, now: float) -> SemaphoreStatistics: ...

    def pause(self, queue: str) -> None: ...

    def resume(self, queue: str) -> None: ...

    def paused_queues(self) -> list[str]: ...

    def queue_size(self, queue: str) -> int: ...

    def queue_latency(self, queue: str, now: float) -> float: ...

    def clear_queue(self, queue: str) -> int: ...

    def jobs(self, queue: str | None = None) -> list[JobRecord]: ...
