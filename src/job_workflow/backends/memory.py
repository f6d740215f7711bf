"""The in-memory backend: the whole queue port in one process.

It is a real backend, not a stub: ready, scheduled, claimed, blocked and
failed jobs, semaphores with leases, per-key concurrency limits, paused
queues. ``mode="inline"`` runs each enqueued job at once in the caller
(quick tests, the default process backend); ``mode="queued"`` keeps jobs
until :meth:`MemoryBackend.drain` runs them on worker threads. All state
sits behind one lock, so any number of threads may use it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from job_workflow.backends._settle import settled
from job_workflow.core import _runner
from job_workflow.core._codec import copy_json
from job_workflow.core.ports import (
    Clock,
    JobError,
    JobRecord,
    JobState,
    JobStatus,
    NewJob,
    SemaphoreStatistics,
    SubJobProgress,
    TaskOutcome,
)

__all__ = ["MemoryBackend"]

Mode = Literal["inline", "queued"]
_NO_SUB_JOBS = SubJobProgress(0, 0, ())


@dataclass(slots=True)
class _Job:
    id: str
    seq: int
    spec: NewJob
    status: JobStatus
    created_at: float
    run_at: float
    claimed_by: str | None = None
    executions: int = 0
    finished_at: float | None = None
    error: JobError | None = None
    current_task: str | None = None

    def snapshot(self) -> JobRecord:
        spec = self.spec
        # Positional, in JobRecord's field order: a record is taken at every
        # claim, and binding nineteen keywords is a good part of its cost.
        return JobRecord(
            self.id,
            spec.workflow,
            spec.arguments,
            spec.queue,
            spec.priority,
            self.status,
            self.created_at,
            self.run_at,
            spec.parent_id,
            spec.task_name,
            spec.each_index,
            spec.concurrency_key,
            spec.concurrency_limit,
            self.claimed_by,
            self.executions,
            self.finished_at,
            self.error,
            self.current_task,
            spec.metadata,
        )


@dataclass(slots=True)
class _Tally:
    """How the sub-jobs of one (parent, task) stand, kept as they settle.

    A waiting parent polls this at every poll interval: counting as jobs
    settle makes the poll cost nothing per sub-job, and the answer is
    built once per change rather than once per poll.
    """

    total: int = 0
    pending: int = 0
    failed: list[_Job] = field(default_factory=list)
    answer: SubJobProgress | None = None

    def progress(self) -> SubJobProgress:
        if self.answer is None:
            failed = sorted(self.failed, key=lambda job: job.spec.each_index or 0)
            self.answer = SubJobProgress(
                self.total, self.pending, tuple(job.id for job in failed)
            )
        return self.answer


@dataclass(slots=True)
class _Semaphore:
    limit: int
    holders: dict[str, float] = field(default_factory=dict)  # holder -> expires_at

    def expire(self, now: float) -> None:
        for holder in [h for h, until in self.holders.items() if until <= now]:
            del self.holders[holder]


class MemoryBackend:
    """The queue port in memory; see the module docstring."""

    name = "memory"

    def __init__(
        self,
        mode: Mode = "inline",
        *,
        clock: Clock | None = None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        if mode not in ("inline", "queued"):
            raise ValueError(f"mode must be 'inline' or 'queued', got {mode!r}")
        self.mode: Mode = mode
        self._clock = clock
        self._new_id = id_factory or (lambda: uuid.uuid4().hex)
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._waiting = 0  # threads in self._changed.wait()
        self._jobs: dict[str, _Job] = {}
        self._ready: dict[str, list[tuple[int, int, str]]] = {}
        # Bumped whenever a job may have become claimable: a caller that
        # found nothing to claim need not ask again until it moves (the
        # simulator's idle workers).
        self._ready_version = 0
        self._scheduled: list[tuple[float, int, str]] = []
        self._blocked: dict[str, deque[str]] = {}
        self._active: dict[str, int] = {}  # concurrency key -> ready or running
        self._children: dict[str, dict[str, list[str]]] = {}  # parent -> task -> ids
        self._tallies: dict[tuple[str, str], _Tally] = {}  # (parent, task)
        self._claims: dict[str, set[str]] = {}  # worker -> claimed job ids
        self._states: dict[str, JobState] = {}
        self._semaphores: dict[str, _Semaphore] = {}
        self._paused: set[str] = set()
        self._processes: dict[str, dict[str, Any]] = {}
        self._recurring: set[tuple[str, float]] = set()

    def _notify(self) -> None:
        # Only drain()'s idle workers wait on the condition; skip the wake-up
        # call when none does (the simulator settles thousands of jobs).
        if self._waiting:
            self._changed.notify_all()

    @property
    def clock(self) -> Clock:
        if self._clock is not None:
            return self._clock
        from job_workflow._runtime import current_clock

        return current_clock()

    # -- enqueueing --

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> list[str]:
        with self._lock:
            ids = [self._add(spec, now).id for spec in jobs]
            self._notify()
        if self.mode == "inline":
            self._run_inline(ids)
        return ids

    def start_inline(self, job: NewJob, worker_id: str, now: float) -> JobRecord:
        with self._lock:
            record = self._new_job(job, now, "claimed")
            self._set_claim(record, worker_id)
            record.executions = 1
            return record.snapshot()

    def _new_job(self, spec: NewJob, now: float, status: JobStatus) -> _Job:
        run_at = now if spec.run_at is None else spec.run_at
        job = _Job(self._new_id(), next(self._seq), spec, status, now, run_at)
        self._jobs[job.id] = job
        if spec.parent_id is not None and spec.task_name is not None:
            self._children.setdefault(spec.parent_id, {}).setdefault(
                spec.task_name, []
            ).append(job.id)
            tally = self._tallies.get((spec.parent_id, spec.task_name))
            if tally is None:
                tally = self._tallies[spec.parent_id, spec.task_name] = _Tally()
            tally.total += 1
            tally.pending += 1
            tally.answer = None
        return job

    def _add(self, spec: NewJob, now: float) -> _Job:
        job = self._new_job(spec, now, "scheduled")
        if job.run_at > now:
            heapq.heappush(self._scheduled, (job.run_at, job.seq, job.id))
        else:
            self._make_ready(job)
        return job

    def _make_ready(self, job: _Job) -> None:
        key, limit = job.spec.concurrency_key, job.spec.concurrency_limit
        if key is not None and limit is not None:
            if self._active.get(key, 0) >= limit:
                job.status = "blocked"
                self._blocked.setdefault(key, deque()).append(job.id)
                return
            self._active[key] = self._active.get(key, 0) + 1
        self._push_ready(job)

    def _push_ready(self, job: _Job) -> None:
        # Order by when the job became ready, not when it was created: a
        # rescheduled parent must queue behind the sub-jobs it waits for.
        job.status = "ready"
        self._ready_version += 1
        heap = self._ready.get(job.spec.queue)
        if heap is None:
            heap = self._ready[job.spec.queue] = []
        heapq.heappush(heap, (job.spec.priority, next(self._seq), job.id))

    def _set_claim(self, job: _Job, worker_id: str | None) -> None:
        """Set who holds a job, keeping the per-worker index in step."""
        if job.claimed_by is not None:
            self._claims.get(job.claimed_by, set()).discard(job.id)
        job.claimed_by = worker_id
        if worker_id is not None:
            held = self._claims.get(worker_id)
            if held is None:
                held = self._claims[worker_id] = set()
            held.add(job.id)

    def _release_key(self, job: _Job) -> None:
        key = job.spec.concurrency_key
        if key is None or job.spec.concurrency_limit is None:
            return
        self._active[key] = max(0, self._active.get(key, 0) - 1)
        waiting = self._blocked.get(key)
        while waiting:
            candidate = self._jobs.get(waiting.popleft())
            if candidate is not None and candidate.status == "blocked":
                self._make_ready(candidate)
                break

    # -- workers --

    def claim(
        self, queues: Sequence[str] | None, worker_id: str, now: float, limit: int = 1
    ) -> list[JobRecord]:
        claimed: list[JobRecord] = []
        with self._lock:
            while len(claimed) < limit:
                job = self._pop_ready(queues)
                if job is None:
                    break
                job.status = "claimed"
                self._set_claim(job, worker_id)
                job.executions += 1
                claimed.append(job.snapshot())
        return claimed

    def _pop_ready(self, queues: Sequence[str] | None) -> _Job | None:
        names = self._ready.keys() if queues is None else queues
        best: tuple[int, int, str] | None = None
        best_queue = ""
        for queue in names:
            heap = self._ready.get(queue)
            if queue in self._paused or not heap:
                continue
            # Entries of jobs that left "ready" another way are dropped lazily.
            while heap and self._jobs[heap[0][2]].status != "ready":
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best):
                best, best_queue = heap[0], queue
        if best is None:
            return None
        heapq.heappop(self._ready[best_queue])
        return self._jobs[best[2]]

    def _settle(
        self, job_id: str, status: JobStatus, now: float, worker_id: str | None
    ) -> _Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status in ("finished", "failed"):
            return None
        if worker_id is not None and (
            job.status != "claimed" or job.claimed_by != worker_id
        ):
            return None  # a late settle by a worker presumed dead
        was_holding = job.status in ("claimed", "ready")
        job.status = status
        self._set_claim(job, None)
        job.finished_at = now
        if was_holding:
            self._release_key(job)
        spec = job.spec
        if spec.parent_id is not None and spec.task_name is not None:
            tally = self._tallies[spec.parent_id, spec.task_name]
            tally.pending -= 1
            if status == "failed":
                tally.failed.append(job)
            tally.answer = None
        self._notify()
        return job

    def finish(self, job_id: str, now: float, *, worker_id: str | None = None) -> bool:
        with self._lock:
            job = self._settle(job_id, "finished", now, worker_id)
            if job is not None:
                job.current_task = None
        return settled(job is not None, job_id, worker_id, "finish")

    def fail(
        self, job_id: str, error: JobError, now: float, *, worker_id: str | None = None
    ) -> bool:
        with self._lock:
            job = self._settle(job_id, "failed", now, worker_id)
            if job is not None:
                job.error = error
        return settled(job is not None, job_id, worker_id, "fail")

    def reschedule(
        self, job_id: str, run_at: float, now: float, *, worker_id: str | None = None
    ) -> bool:
        with self._lock:
            applied = self._reschedule(job_id, run_at, worker_id)
        return settled(applied, job_id, worker_id, "reschedule")

    def _reschedule(self, job_id: str, run_at: float, worker_id: str | None) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.status != "claimed":
            return False
        if worker_id is not None and job.claimed_by != worker_id:
            return False
        self._set_claim(job, None)
        job.run_at = run_at
        job.status = "scheduled"
        # A waiting job gives its concurrency slot back; it takes one again
        # (or is blocked) when it comes due.
        self._release_key(job)
        heapq.heappush(self._scheduled, (run_at, job.seq, job.id))
        self._notify()
        return True

    def release_claimed(self, worker_id: str, now: float) -> list[str]:
        with self._lock:
            held = self._claims.pop(worker_id, set())
            released = [
                job
                for job in (self._jobs[i] for i in held if i in self._jobs)
                if job.status == "claimed" and job.claimed_by == worker_id
            ]
            released.sort(key=lambda job: job.seq)
            for job in released:
                job.claimed_by = None
                self._push_ready(job)
            self._notify()
            return [job.id for job in released]

    def dispatch_due(self, now: float) -> int:
        # The simulator asks at every instant: answer cheaply when nothing
        # can be due. Read without the lock: a job another thread schedules
        # meanwhile is dispatched by the next call, as if it came later.
        scheduled = self._scheduled
        if not self._semaphores and not (scheduled and scheduled[0][0] <= now):
            return 0
        moved = 0
        with self._lock:
            while self._scheduled and self._scheduled[0][0] <= now:
                _, _, job_id = heapq.heappop(self._scheduled)
                job = self._jobs.get(job_id)
                if job is not None and job.status == "scheduled" and job.run_at <= now:
                    self._make_ready(job)
                    moved += 1
            for semaphore in self._semaphores.values():
                semaphore.expire(now)
            if moved:
                self._notify()
        return moved

    def next_due_time(self) -> float | None:
        with self._lock:
            while self._scheduled:
                run_at, _, job_id = self._scheduled[0]
                job = self._jobs.get(job_id)
                if (
                    job is not None
                    and job.status == "scheduled"
                    and job.run_at == run_at
                ):
                    return run_at
                heapq.heappop(self._scheduled)
            return None

    # -- progress --

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None else job.snapshot()

    def sub_jobs(self, parent_id: str, task_name: str | None = None) -> list[JobRecord]:
        with self._lock:
            by_task = self._children.get(parent_id, {})
            if task_name is not None:
                ids: Iterable[str] = by_task.get(task_name, ())
            else:
                ids = itertools.chain.from_iterable(by_task.values())
            return [self._jobs[i].snapshot() for i in ids if i in self._jobs]

    def _tree_statuses(self, job_id: str) -> tuple[list[JobStatus], int] | None:
        """A job's status, then its sub-jobs', and its executions.

        What an aggregate status needs, without a record per job (the
        simulator asks for every workflow it ran).
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            everyone = self._jobs
            statuses = [job.status]
            for ids in self._children.get(job_id, {}).values():
                statuses.extend(everyone[i].status for i in ids)
            return statuses, job.executions

    def _all_settled(self) -> bool:
        """Whether every job finished or failed."""
        with self._lock:
            return all(
                job.status in ("finished", "failed") for job in self._jobs.values()
            )

    def sub_job_progress(self, parent_id: str, task_name: str) -> SubJobProgress:
        with self._lock:
            tally = self._tallies.get((parent_id, task_name))
            return _NO_SUB_JOBS if tally is None else tally.progress()

    def load_state(self, job_id: str, tasks: Collection[str] | None = None) -> JobState:
        with self._lock:
            state = self._states.get(job_id) or JobState()
            if tasks is not None:
                # One pass over the asked tasks (a sub-job asks for a few).
                iterations: dict[str, set[int]] = {}
                outputs: dict[str, dict[int, dict[str, Any]]] = {}
                sub_jobs: dict[str, list[str]] = {}
                for k in tasks:
                    if k in state.iterations:
                        iterations[k] = set(state.iterations[k])
                    if k in state.outputs:
                        outputs[k] = {
                            i: copy_json(data) for i, data in state.outputs[k].items()
                        }
                    if k in state.sub_jobs:
                        sub_jobs[k] = list(state.sub_jobs[k])
                return JobState(dict(state.tasks), iterations, outputs, sub_jobs)
            return JobState(
                tasks=dict(state.tasks),
                iterations={k: set(v) for k, v in state.iterations.items()},
                outputs={
                    task: {i: copy_json(data) for i, data in by_index.items()}
                    for task, by_index in state.outputs.items()
                },
                sub_jobs={k: list(v) for k, v in state.sub_jobs.items()},
            )

    def _state(self, job_id: str) -> JobState:
        """The job's stored progress, created at its first write."""
        state = self._states.get(job_id)
        if state is None:
            state = self._states[job_id] = JobState()
        return state

    def record_iteration(
        self,
        job_id: str,
        task_name: str,
        each_index: int,
        output: dict[str, Any] | None,
        *,
        task_outcome: TaskOutcome | None = None,
    ) -> None:
        with self._lock:
            state = self._state(job_id)
            if output is not None:
                state.outputs.setdefault(task_name, {})[each_index] = output
            if task_outcome is None:
                state.iterations.setdefault(task_name, set()).add(each_index)
            else:
                state.tasks[task_name] = task_outcome
                state.iterations.pop(task_name, None)

    def record_task(
        self,
        job_id: str,
        task_name: str,
        outcome: TaskOutcome,
        sub_job_ids: Sequence[str] = (),
    ) -> None:
        with self._lock:
            state = self._state(job_id)
            state.tasks[task_name] = outcome
            state.iterations.pop(task_name, None)
            if sub_job_ids:
                state.sub_jobs[task_name] = list(sub_job_ids)

    def set_current_task(self, job_id: str, task_name: str | None) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.current_task = task_name

    # -- semaphores --

    def semaphore_acquire(
        self, key: str, limit: int, ttl: float, holder: str, now: float
    ) -> bool:
        with self._lock:
            semaphore = self._semaphores.setdefault(key, _Semaphore(limit))
            semaphore.limit = limit
            semaphore.expire(now)
            if holder not in semaphore.holders and len(semaphore.holders) >= limit:
                return False
            semaphore.holders[holder] = now + ttl
            return True

    def semaphore_release(self, key: str, holder: str, now: float) -> bool:
        with self._lock:
            semaphore = self._semaphores.get(key)
            if semaphore is None or holder not in semaphore.holders:
                return False
            del semaphore.holders[holder]
            self._notify()
            return True

    def semaphore_statistics(self, key: str, now: float) -> SemaphoreStatistics:
        with self._lock:
            semaphore = self._semaphores.get(key)
            if semaphore is None:
                return SemaphoreStatistics(key, 0, (), ())
            semaphore.expire(now)
            return SemaphoreStatistics(
                key,
                semaphore.limit,
                tuple(semaphore.holders),
                tuple(semaphore.holders.values()),
            )

    # -- queues --

    def pause(self, queue: str) -> None:
        with self._lock:
            self._paused.add(queue)

    def resume(self, queue: str) -> None:
        with self._lock:
            self._paused.discard(queue)
            self._ready_version += 1
            self._notify()
        if self.mode == "inline":
            self._run_inline(
                [job.id for job in self._jobs_in(queue) if job.status == "ready"]
            )

    def paused_queues(self) -> list[str]:
        with self._lock:
            return sorted(self._paused)

    def _jobs_in(self, queue: str) -> list[_Job]:
        with self._lock:
            return sorted(
                (j for j in self._jobs.values() if j.spec.queue == queue),
                key=lambda j: j.seq,
            )

    def queue_size(self, queue: str) -> int:
        return sum(1 for job in self._jobs_in(queue) if job.status == "ready")

    def queue_latency(self, queue: str, now: float) -> float:
        ready = [job.run_at for job in self._jobs_in(queue) if job.status == "ready"]
        return max(0.0, now - min(ready)) if ready else 0.0

    def clear_queue(self, queue: str) -> int:
        """Fail every waiting job of ``queue``: ready and blocked ones.

        Blocked jobs go too, or they would become ready as the cleared jobs
        free their concurrency slots. A cleared job is failed, never deleted,
        so whoever waits for it learns it will not run.
        """
        with self._lock:
            cleared = [
                job
                for job in self._jobs_in(queue)
                if job.status in ("ready", "blocked")
            ]
            now = self.clock.now()
            for job in cleared:
                self._settle(job.id, "failed", now, None)
                job.error = JobError("QueueCleared", f"queue {queue!r} was cleared")
            return len(cleared)

    def jobs(self, queue: str | None = None) -> list[JobRecord]:
        with self._lock:
            found = sorted(self._jobs.values(), key=lambda j: j.seq)
            return [
                j.snapshot() for j in found if queue is None or j.spec.queue == queue
            ]

    # -- processes (the supervised-backend surface) --

    def register_process(
        self, process_id: str, kind: str, hostname: str, pid: int, now: float
    ) -> None:
        with self._lock:
            self._processes[process_id] = {
                "kind": kind,
                "hostname": hostname,
                "pid": pid,
                "last_heartbeat_at": now,
            }

    def heartbeat(self, process_id: str, now: float) -> None:
        with self._lock:
            if process_id in self._processes:
                self._processes[process_id]["last_heartbeat_at"] = now

    def deregister_process(self, process_id: str, now: float) -> list[str]:
        """Forget a process and give its claimed jobs back to the queue."""
        with self._lock:
            self._processes.pop(process_id, None)
            return self.release_claimed(process_id, now)

    def prune_processes(self, alive_threshold: float, now: float) -> list[str]:
        """Deregister processes silent for ``alive_threshold``; their jobs return."""
        with self._lock:
            dead = [
                pid
                for pid, info in self._processes.items()
                if now - float(info["last_heartbeat_at"]) > alive_threshold
            ]
            released: list[str] = []
            for process_id in dead:
                released += self.deregister_process(process_id, now)
            return released

    def processes(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {pid: dict(info) for pid, info in self._processes.items()}

    def enqueue_recurring(
        self, key: str, run_at: float, job: NewJob, now: float
    ) -> str | None:
        """Enqueue one recurring run; a second call for (key, run_at) does nothing."""
        with self._lock:
            if (key, run_at) in self._recurring:
                return None
            self._recurring.add((key, run_at))
            return self.enqueue([job], now)[0]

    # -- running --

    def _run_inline(self, ids: Sequence[str]) -> None:
        """Run the given jobs now, in this thread (inline mode)."""
        clock = self.clock
        env = _runner.RunEnv(backend=self, clock=clock, worker_id="inline")
        for job_id in ids:
            while True:
                with self._lock:
                    job = self._jobs.get(job_id)
                    if job is None or job.status not in ("ready", "scheduled"):
                        break
                    if job.spec.queue in self._paused:
                        break
                    if job.status == "scheduled":
                        clock.sleep(max(0.0, job.run_at - clock.now()))
                        self._make_ready(job)
                        if self._jobs[job_id].status != "ready":
                            break
                    job.status = "claimed"
                    self._set_claim(job, "inline")
                    job.executions += 1
                    record = job.snapshot()
                _runner.perform(env, record)

    def drain(self, threads: int = 1, timeout: float | None = None) -> None:
        """Run queued jobs on ``threads`` worker threads until none is left.

        Returns when no job of an unpaused queue is ready, running, blocked or
        scheduled; raises TimeoutError after ``timeout`` seconds of real time,
        leaving the rest queued. Jobs of paused queues stay where they are.
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        stop = threading.Event()
        errors: list[BaseException] = []
        workers = [
            threading.Thread(
                target=self._work,
                args=(f"drain-{n}", stop, deadline, errors),
                name=f"job-workflow-drain-{n}",
                daemon=True,
            )
            for n in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            # A worker waiting (poll, retry delay, throttle) stops at its next
            # wait once the deadline passes; one stuck inside a long task body
            # cannot be stopped from here, so it gets one more second at most.
            if deadline is None:
                worker.join()
            else:
                worker.join(max(0.0, deadline - time.monotonic()) + 1.0)
        if any(worker.is_alive() for worker in workers):
            stop.set()
            raise TimeoutError(
                f"drain did not finish within {timeout}s and a task body is still "
                "running on a worker thread; unfinished jobs stay queued"
            )
        if errors:
            raise errors[0]
        if not self._quiescent():
            raise TimeoutError(
                f"drain did not finish within {timeout}s; unfinished jobs stay queued"
            )

    def _work(
        self,
        worker_id: str,
        stop: threading.Event,
        deadline: float | None,
        errors: list[BaseException],
    ) -> None:
        clock = self.clock

        def interrupted() -> bool:
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
            return stop.is_set()

        env = _runner.RunEnv(
            backend=self, clock=clock, worker_id=worker_id, interrupted=interrupted
        )
        try:
            while not interrupted():
                self.dispatch_due(clock.now())
                jobs = self.claim(None, worker_id, clock.now())
                if jobs:
                    _runner.perform(env, jobs[0])
                    continue
                if self._idle_wait(clock, stop):
                    break
        except BaseException as exc:  # surfaced by drain(); never swallowed
            errors.append(exc)
            stop.set()
            with self._lock:
                self._notify()

    def _idle_wait(self, clock: Clock, stop: threading.Event) -> bool:
        """Wait for work; True when the queue is quiescent and the worker stops."""
        with self._lock:
            if self._quiescent():
                stop.set()
                self._notify()
                return True
            due = self.next_due_time()
            running = any(j.status == "claimed" for j in self._jobs.values())
            if due is None or running:
                self._waiting += 1
                try:
                    self._changed.wait(timeout=0.05)
                finally:
                    self._waiting -= 1
                return False
        clock.sleep(max(0.0, due - clock.now()))
        return False

    def _quiescent(self) -> bool:
        with self._lock:
            return not any(
                job.status in ("ready", "claimed", "scheduled", "blocked")
                and job.spec.queue not in self._paused
                for job in self._jobs.values()
            )
