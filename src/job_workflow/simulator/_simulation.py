"""The deterministic simulation: simulated workers on a virtual clock.

One thread runs everything. Each simulated worker holds the generator of
the job it runs (:meth:`JobRun.execute`); the loop steps every worker that
can move at the current virtual time, and when none can, jumps the clock to
the next moment something happens (a sleep ending, a scheduled job coming
due, a crashed worker restarting, a cron schedule firing). Decisions that
could differ between runs (which fault strikes, how long a task takes, retry
jitter) all draw from one ``random.Random(seed)``, and workers are always
visited in the same order, so one seed gives one trace.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import gc
import heapq
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

from job_workflow.backends.memory import MemoryBackend
from job_workflow.core import _arguments
from job_workflow.core._events import bus
from job_workflow.core._runner import (
    Checkpoint,
    Effect,
    JobRun,
    Outcome,
    Rescheduled,
    RunEnv,
    Sleep,
    error_of,
)
from job_workflow.core._workflow import Workflow
from job_workflow.core.ports import JobRecord, NewJob, QueueBackend, SubJobProgress
from job_workflow.errors import TaskTimeoutError
from job_workflow.simulator._clock import VirtualClock
from job_workflow.simulator._faults import Faults, InjectedTaskError
from job_workflow.simulator._result import (
    Metrics,
    Row,
    SimulationResult,
    Span,
    Trace,
)

Duration = float | Callable[[Any, random.Random], float]
RunFactory = Callable[[RunEnv, JobRecord], JobRun]

DEFAULT_START = 1_700_000_000.0
_GC_THRESHOLD = 20_000  # see _collector_relaxed
_PENDING_CHANGES = ("restart", "recover", "late_finish")  # timers that may unblock
# Spans from their fields without the named tuple's Python-level __new__
# (the simulation records one per body and wait); the tests read every
# field, so a field added or dropped shows there.
_new_span = cast(
    Callable[[tuple[str, float, float, str, str | None, str | None, int | None]], Span],
    functools.partial(tuple.__new__, Span),
)
# The payload fields a trace entry keeps.
_TRACE_KEYS = frozenset(
    {
        "task_name",
        "each_index",
        "attempt",
        "reason",
        "sub_job_count",
        "dependent_task_name",
        "error_class",
        "concurrency_key",
        "dry_run_name",
    }
)


@dataclass(slots=True)
class _Worker:
    """One simulated worker and what it is doing."""

    name: str
    index: int
    incarnation: int = 0
    status: str = "idle"  # idle | running | crashed
    run: JobRun | None = None
    job: JobRecord | None = None
    # Of ``job``, asked at every body and wait: the job's id, and the job
    # whose progress it records (a sub-job's parent, else itself).
    job_id: str | None = None
    owner: str = ""
    gen: Generator[Effect, None, Outcome] | None = None
    wake_at: float = 0.0
    wait: Sleep | None = None
    wait_started: float = 0.0
    throw: BaseException | None = None
    body: tuple[str | None, int | None] | None = None
    body_key: str | None = None
    body_started: float = 0.0
    recording: tuple[str, int] | None = None
    counted: bool = False
    idle_polls: int = 0
    poll_epoch: int = 0  # the simulation's change count idle_polls counts from
    stamp: int = 0  # tells this worker's live entry in the wake-up heap
    env: RunEnv | None = None  # one per incarnation, shared by its jobs
    duration: float = 0.0  # drawn for the attempt under way, charged at its end
    timeout: float | None = None  # of the task whose body is open

    id: str = ""  # the name, then name#incarnation after each restart

    def __post_init__(self) -> None:
        self.id = self.name


@dataclass(order=True, slots=True)
class _Timer:
    at: float
    seq: int
    kind: str = field(compare=False)
    data: Any = field(compare=False)


class Simulation:
    """Run workflows on simulated workers and a virtual clock.

    ``durations`` gives each task's virtual duration: one number for every
    task, or a dict of task name (full name) to a number or a callable
    ``(ctx, rng) -> seconds``; tasks not listed take ``default_duration``.
    Task bodies run for real, once per attempt, in this thread.
    """

    def __init__(
        self,
        workers: int = 4,
        seed: int = 0,
        faults: Faults | None = None,
        durations: float | Mapping[str, Duration] | None = None,
        *,
        default_duration: float = 1.0,
        start: float = DEFAULT_START,
        compare_outputs: bool = True,
        backend: QueueBackend | None = None,
        run_factory: RunFactory | None = None,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self.seed = seed
        self.faults = faults or Faults()
        # Asked several times per job: a dict lookup, not a getattr.
        self._odds: dict[str, float] = {
            f.name: getattr(self.faults, f.name)
            for f in fields(self.faults)
            if f.name not in ("crash_points", "slow_factor")
        }
        self.rng = random.Random(seed)
        self.clock = VirtualClock(start, self.rng)
        ids = itertools.count(1)
        self.backend: QueueBackend = backend or MemoryBackend(
            "queued", clock=self.clock, id_factory=lambda: f"job-{next(ids):06d}"
        )
        self._durations = durations
        self._default_duration = default_duration
        self._compare_outputs = compare_outputs
        self._run_factory: RunFactory = run_factory or JobRun
        # What runs see: the backend, or its lagging view under stale_reads.
        self._run_backend: QueueBackend = self.backend
        if self.faults.stale_reads > 0:
            self._run_backend = cast(QueueBackend, _StaleReads(self))
        self._workers = [_Worker(f"w{i}", i) for i in range(workers)]
        # Running workers by wake-up time, (wake_at, index, stamp); an entry
        # whose stamp is not its worker's current one is stale and skipped.
        self._wakeups: list[tuple[float, int, int]] = []
        self._idle: set[int] = set(range(workers))
        # Nothing became ready since a claim found the queue empty: idle
        # workers need not try again (MemoryBackend counts what became
        # ready; another backend is always tried).
        self._dry_at: int | None = None
        self._epoch = 0  # counts changes that may end a poll
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        # The trace as rows and details (see Trace: what the collector
        # need not track).
        self._rows: list[Row] = []
        self._details: list[dict[str, Any]] = []
        self._spans: list[Span] = []
        self._enqueued: list[tuple[str, str, dict[str, Any]]] = []
        self._current: _Worker | None = None
        self._deadlocked = False
        self._metrics = _MetricsRecorder()
        self._limits: dict[str, int] = {}
        self._recorded: set[tuple[str, str, int]] = set()
        self._reruns: list[tuple[str, str, int]] = []
        self._touched: set[str] = set()  # jobs delivered to two workers at once
        self._start = start
        self._elapsed_at, self._elapsed_value = start, 0.0

    # -- setting up --

    @property
    def now(self) -> float:
        return self.clock.now()

    def enqueue(self, workflow: type[Workflow], **arguments: Any) -> str:
        """Enqueue a workflow now (virtual time); returns its job id."""
        values = _arguments.validate(workflow.arguments, arguments, workflow.name)
        spec = NewJob(workflow.name, _arguments.encode(values), queue=workflow.queue)
        [job_id] = self.backend.enqueue([spec], self.clock.now())
        self._enqueued.append((job_id, workflow.name, dict(arguments)))
        self._record(None, "job.enqueue", job_id, {"workflow": workflow.name})
        return job_id

    def schedule(self, workflow: type[Workflow]) -> None:
        """Fire the workflow's ``@schedule`` entries in virtual time."""
        for key in sorted(workflow.schedules):
            self._add_cron(workflow, key)

    def run(
        self, workflow: type[Workflow], until: float | None = None, **arguments: Any
    ) -> SimulationResult:
        """Enqueue one workflow and run until idle (or virtual time ``until``)."""
        self.enqueue(workflow, **arguments)
        return self.run_until_idle(until=until)

    def run_until_idle(self, until: float | None = None) -> SimulationResult:
        """Run until no work is left, a deadlock, or absolute virtual ``until``."""
        with _collector_relaxed():
            self._loop(until)
            return self.result()

    def run_until(self, moment: float) -> SimulationResult:
        """Run up to absolute virtual time ``moment`` (to place races)."""
        with _collector_relaxed():
            self._loop(moment)
            self.clock.advance_to(moment)
            return self.result()

    def advance(self, seconds: float) -> SimulationResult:
        """Run for ``seconds`` more of virtual time."""
        return self.run_until(self.clock.now() + seconds)

    # -- the loop --

    def _loop(self, until: float | None) -> None:
        detach = bus._tap(self._on_event)
        try:
            keep_cron = until is not None
            clock, timers = self.clock, self._timers
            dispatch = self.backend.dispatch_due
            step = self._step_workers
            dispatched_at: float | None = None
            while not self._deadlocked:
                now = clock._now
                if timers and timers[0].at <= now:
                    self._fire_timers()
                if now != dispatched_at:
                    # Once per instant: what comes due depends on the time
                    # alone. A job that comes due at this very instant (a
                    # zero delay) is dispatched once the passes here are done.
                    dispatch(now)
                    dispatched_at = now
                if step(now):
                    continue
                moment = self._next_moment(keep_cron)
                if self._starved():
                    self._deadlocked = True
                    self._record(None, "simulation.deadlock", None, {})
                    break
                if moment is None:
                    if self._unfinished():
                        self._deadlocked = True
                        self._record(None, "simulation.deadlock", None, {})
                    break
                if until is not None and moment > until:
                    break
                if moment <= now:
                    dispatched_at = None
                clock.advance_to(moment)
        finally:
            detach()

    def _step_workers(self, now: float) -> bool:
        """Pass over the workers that can move at ``now`` until none can.

        A pass steps, in worker order, every idle worker and every one now
        due; only those are visited (a heap of wake-up times, the set of
        idle workers), so a pass costs what moves, not the number of
        workers. What moved may let more move at this instant (a worker
        gone idle claims, a claimed job starts), so passes repeat while one
        moves. True when the loop must pass again itself: a timer came due
        or a body moved time, which the loop handles before the next pass.
        """
        workers, heap, idle, timers = (
            self._workers,
            self._wakeups,
            self._idle,
            self._timers,
        )
        clock = self.clock  # read at each worker: a body may move time
        push, pop = heapq.heappush, heapq.heappop
        may_claim = self._may_claim
        while True:
            due: list[int] = []
            while heap and heap[0][0] <= now:
                _, index, stamp = pop(heap)
                worker = workers[index]
                if worker.stamp == stamp and worker.status == "running":
                    due.append(index)
            if idle and may_claim():
                due.extend(idle)
            if not due:
                return False
            if len(due) > 1:
                due.sort()
            progressed = False
            for index in due:
                worker = workers[index]
                status = worker.status
                if status == "idle":
                    if not (may_claim() and self._claim(worker)):
                        continue
                    progressed = True
                elif status == "running" and worker.wake_at <= clock._now:
                    self._advance(worker)
                    progressed = True
                if worker.status == "running":  # _wake_later, inline
                    worker.stamp += 1
                    push(heap, (worker.wake_at, index, worker.stamp))
            if not progressed:
                return False
            if clock._now != now or (timers and timers[0].at <= now):
                return True

    def _wake_later(self, worker: _Worker) -> None:
        worker.stamp += 1
        heapq.heappush(self._wakeups, (worker.wake_at, worker.index, worker.stamp))

    def _may_claim(self) -> bool:
        dry = self._dry_at
        return dry is None or getattr(self.backend, "_ready_version", None) != dry

    def _next_moment(self, keep_cron: bool) -> float | None:
        heap, workers = self._wakeups, self._workers
        while heap:
            _, index, stamp = heap[0]
            worker = workers[index]
            if worker.stamp == stamp and worker.status == "running":
                break
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        due = self.backend.next_due_time()
        if due is not None and (best is None or due < best):
            best = due
        timers = self._timers
        if timers:
            if keep_cron or timers[0].kind != "cron":
                at: float | None = timers[0].at  # the heap's first is the earliest
            else:
                # Without cron (running until idle), the earliest other timer;
                # the heap orders only its first entry, so look at each.
                at = min((t.at for t in timers if t.kind != "cron"), default=None)
            if at is not None and (best is None or at < best):
                best = at
        return best

    def _unfinished(self) -> bool:
        backend = self.backend
        if isinstance(backend, MemoryBackend):
            return not backend._all_settled()
        return any(job.status not in ("finished", "failed") for job in backend.jobs())

    def _starved(self) -> bool:
        """No progress is possible: the only running jobs poll forever.

        Called when no worker could move at this instant, so idle workers
        just found nothing to claim. If every running job is in a poll that
        never reschedules and has polled twice with nothing changing, and no
        scheduled job, restart or recovery is pending, nothing will change.
        """
        running = False
        for w in self._workers:  # stops at the first worker that can move
            if w.status != "running":
                continue
            if (
                w.wait is None
                or w.wait.reason != "poll_only"
                or w.poll_epoch != self._epoch
                or w.idle_polls < 2
            ):
                return False
            running = True
        if not running or self.backend.next_due_time() is not None:
            return False
        return not any(t.kind in _PENDING_CHANGES for t in self._timers)

    # -- workers --

    def _claim(self, worker: _Worker) -> bool:
        version = getattr(self.backend, "_ready_version", None)
        claimed = self.backend.claim(None, worker.id, self.clock._now)
        if not claimed:
            self._dry_at = version
            return False
        self._dry_at = None
        job = claimed[0]
        self._record(worker, "job.claim", job.id, {"executions": job.executions})
        self._epoch += 1  # a change that may end a poll
        if self._strikes("crashes") and "claimed" in self.faults.crash_points:
            self._crash(worker, "claimed", job, job.task_name)
            return True
        self._start_job(worker, job)
        if self._strikes("duplicate_delivery"):
            twin = next((w for w in self._workers if w.status == "idle"), None)
            if twin is not None:
                self._touch(job)
                self._record(twin, "fault.duplicate_delivery", job.id, {})
                self._start_job(twin, job, twin=True)
                if twin.status == "running":
                    self._wake_later(twin)
        return True

    def _start_job(
        self, worker: _Worker, job: JobRecord, *, twin: bool = False
    ) -> None:
        worker.status, worker.job, worker.job_id = "running", job, job.id
        worker.owner = job.parent_id or job.id
        self._idle.discard(worker.index)
        worker.wake_at, worker.wait, worker.throw = self.clock._now, None, None
        worker.body, worker.recording, worker.idle_polls = None, None, 0
        # A duplicate copy does not take a second concurrency slot: the
        # backend granted one claim, so only that one counts against limits.
        worker.counted = not twin
        if worker.counted and job.concurrency_key is not None:
            self._metrics.start(job)
        env = worker.env
        if env is None or env.worker_id != worker.id:
            env = worker.env = RunEnv(
                backend=self._run_backend,
                clock=self.clock,
                worker_id=worker.id,
                checkpoints=True,
            )
        try:
            worker.run = self._run_factory(env, job)
            worker.gen = worker.run.execute()
        except Exception as exc:
            self._fail(worker, exc)

    def _advance(self, worker: _Worker) -> None:
        """Step one worker until it waits, finishes or crashes."""
        self._current = worker
        odds, draw = self._odds["backend_errors"], self.rng.random
        gen = worker.gen
        assert gen is not None
        try:
            if worker.wait is not None:
                self._close_wait(worker)
            while worker.status == "running":
                if odds > 0 and draw() < odds:  # _strikes("backend_errors"), inline
                    self._crash(worker, "backend_error", worker.job, _task_of(worker))
                    return
                try:
                    if worker.throw is not None:
                        exc, worker.throw = worker.throw, None
                        effect = gen.throw(exc)
                    else:
                        effect = gen.send(None)
                        if worker.recording is not None:
                            self._mark_recorded(worker)
                except StopIteration as stop:
                    self._mark_recorded(worker)
                    self._close_body(worker)
                    self._settle(worker, stop.value)
                    return
                except Exception as failure:
                    self._close_body(worker)
                    self._fail(worker, failure)
                    return
                if isinstance(effect, Sleep):
                    self._sleep(worker, effect)
                    return
                if not self._checkpoint(worker, effect):
                    return
        finally:
            self._current = None

    def _sleep(self, worker: _Worker, effect: Sleep) -> None:
        """The worker waits: it wakes ``effect.seconds`` from now."""
        if worker.body is not None:
            self._close_body(worker)
        now = self.clock._now
        worker.wait, worker.wait_started = effect, now
        worker.wake_at = now + effect.seconds
        if effect.reason in ("poll", "poll_only"):
            if worker.poll_epoch != self._epoch:
                worker.poll_epoch, worker.idle_polls = self._epoch, 0
            worker.idle_polls += 1

    def _checkpoint(self, worker: _Worker, point: Checkpoint) -> bool:
        kind = point.point
        if kind == "after_body" or kind == "body_failed":
            return self._charge(worker)
        if worker.body is not None:
            self._close_body(worker)
        odds = self._odds["crashes"]  # _strikes("crashes"), inline
        if odds > 0 and self.rng.random() < odds and kind in self.faults.crash_points:
            self._crash(worker, kind, worker.job, point.task)
            return False
        if kind == "before_body":
            return self._before_body(worker, point)
        if kind == "before_record" and point.task is not None:
            worker.recording = (point.task, point.each_index or 0)
        return True

    def _before_body(self, worker: _Worker, point: Checkpoint) -> bool:
        """Open the body and draw how long this attempt takes.

        An attempt that fails on purpose, or would outrun its task's
        ``timeout``, does not run its body: it takes its time (the timeout,
        at most) and then raises, as the real attempt would have.
        """
        self._open_body(worker, point)
        worker.duration = self._duration(worker, point.task)
        timeout = worker.timeout
        if self._strikes("task_errors"):
            self._record(
                worker, "fault.task_error", worker.job_id, {"task_name": point.task}
            )
            worker.throw = InjectedTaskError(
                f"injected failure in {point.task!r} (seed {self.seed})"
            )
        elif timeout is not None and worker.duration > timeout:
            worker.throw = TaskTimeoutError(point.task or "", timeout, worker.duration)
            worker.duration = timeout
        if worker.body_key is not None:
            self._maybe_expire_lease(worker, worker.body_key)
        if worker.throw is None:
            return True
        return self._charge(worker)

    def _charge(self, worker: _Worker) -> bool:
        """The attempt's virtual time passes; True if it took none."""
        duration, worker.duration = worker.duration, 0.0
        worker.wake_at = self.clock._now + duration
        busy = self._metrics.busy_seconds
        busy[worker.name] = busy.get(worker.name, 0.0) + duration
        return duration <= 0

    def _open_body(self, worker: _Worker, point: Checkpoint) -> None:
        run = worker.run
        assert run is not None
        assert point.task is not None
        options = run.workflow.get_task(point.task).options
        throttle, worker.timeout = options.throttle, options.timeout
        key = None
        if throttle is not None:
            key = throttle.key or f"{run.workflow.name}:{point.task}"
            self._limits[key] = throttle.limit
        owner = worker.owner
        index = point.each_index or 0
        if (owner, point.task, index) in self._recorded and owner not in self._touched:
            self._reruns.append((owner, point.task, index))
        worker.body = (point.task, point.each_index)
        worker.body_key, worker.body_started = key, self.clock._now
        if key is not None:
            self._metrics.open_body(key)

    def _close_body(self, worker: _Worker) -> None:
        if worker.body is None:
            return
        task, index = worker.body
        self._spans.append(
            _new_span(
                (
                    worker.name,
                    worker.body_started,
                    self.clock._now,
                    "task",
                    worker.job_id,
                    task,
                    index,
                )
            )
        )
        if worker.body_key is not None:
            self._metrics.close_body(worker.body_key)
        worker.body, worker.body_key = None, None

    def _mark_recorded(self, worker: _Worker) -> None:
        """The step after ``before_record`` wrote the iteration: remember it."""
        if worker.recording is None:
            return
        task, index = worker.recording
        worker.recording = None
        self._recorded.add((worker.owner, task, index))
        self._epoch += 1  # a change that may end a poll

    def _close_wait(self, worker: _Worker) -> None:
        wait = worker.wait
        if wait is None:
            return
        kind = _wait_kind(wait)
        now = self.clock._now
        self._spans.append(
            _new_span(
                (worker.name, worker.wait_started, now, kind, worker.job_id, None, None)
            )
        )
        if kind == "poll":
            polling = self._metrics.polling_seconds
            polling[worker.name] = (
                polling.get(worker.name, 0.0) + now - worker.wait_started
            )
        worker.wait = None

    def _maybe_expire_lease(self, worker: _Worker, key: str) -> None:
        """The ``lease_expiry`` fault: the open body's lease ends early."""
        if not self._strikes("lease_expiry"):
            return
        run = worker.run
        assert run is not None
        assert worker.body is not None
        holder = run._holder(key, worker.body[1])
        if self.backend.semaphore_release(key, holder, self.clock._now):
            self._record(
                worker, "fault.lease_expiry", worker.job_id, {"concurrency_key": key}
            )

    def _duration(self, worker: _Worker, task: str | None) -> float:
        spec: Any = self._durations
        if spec is None:
            spec = self._default_duration
        elif isinstance(spec, Mapping):
            spec = spec.get(task or "", self._default_duration)
            if spec is None:
                spec = self._default_duration
        if callable(spec):
            assert worker.run is not None
            value = float(spec(worker.run.ctx, self.rng))
        else:
            value = float(spec)
        if self._strikes("slow_tasks"):
            self._record(worker, "fault.slow_task", worker.job_id, {"task_name": task})
            value *= self.faults.slow_factor
        return max(0.0, value)

    # -- endings --

    def _touch(self, job: JobRecord) -> None:
        """Two copies of this job run at once: an iteration may legitimately rerun."""
        self._touched.add(job.id)
        if job.parent_id:
            self._touched.add(job.parent_id)

    def _settle(self, worker: _Worker, outcome: Outcome) -> None:
        job = worker.job
        assert job is not None
        backend, now = self.backend, self.clock.now()
        # The settle names its worker: when another copy (a duplicate
        # delivery, a recovered job) settled the job or holds it now, the
        # backend refuses a stale worker's outcome.
        if isinstance(outcome, Rescheduled):
            if backend.reschedule(job.id, outcome.run_at, now, worker_id=worker.id):
                self._metrics.reschedules += 1
                self._record(
                    worker, "job.reschedule", job.id, {"task_name": outcome.task}
                )
                self._maybe_finish_late(worker, job, outcome.run_at)
            else:
                self._record(worker, "job.stale_outcome", job.id, {})
        elif backend.finish(job.id, now, worker_id=worker.id):
            self._record(worker, "job.finish", job.id, {})
        else:
            self._record(worker, "job.stale_outcome", job.id, {})
        self._release(worker)

    def _fail(self, worker: _Worker, exc: BaseException) -> None:
        job = worker.job
        assert job is not None
        now = self.clock.now()
        if self.backend.fail(job.id, error_of(exc), now, worker_id=worker.id):
            self._record(
                worker, "job.fail", job.id, {"error_class": type(exc).__name__}
            )
        else:
            self._record(worker, "job.stale_outcome", job.id, {})
        self._release(worker)

    def _maybe_finish_late(
        self, worker: _Worker, job: JobRecord, run_at: float
    ) -> None:
        """The ``late_finish`` fault: a finish for this run arrives later."""
        if not self._strikes("late_finish"):
            return
        now = self.clock.now()
        moment = now + self.rng.uniform(0.0, max(0.0, run_at - now))
        self._add_timer(moment, "late_finish", (job.id, worker.id))

    def _release(self, worker: _Worker) -> None:
        job = worker.job
        if job is not None and worker.counted and job.concurrency_key is not None:
            self._metrics.stop(job)
        if worker.run is not None:
            worker.run.dispose()
        worker.status, worker.job, worker.run, worker.gen = "idle", None, None, None
        worker.job_id = None
        worker.wait = None
        self._idle.add(worker.index)
        self._epoch += 1  # a change that may end a poll

    def _crash(
        self, worker: _Worker, point: str, job: JobRecord | None, task: str | None
    ) -> None:
        self._close_body(worker)
        detail = (
            {"reason": point} if task is None else {"reason": point, "task_name": task}
        )
        self._record(worker, "worker.crash", job.id if job else None, detail)
        # No _touch: a job resumed after a crash must skip every iteration it
        # recorded, so a rerun there is a bug the invariant reports.
        if job is not None and worker.counted and job.concurrency_key is not None:
            self._metrics.stop(job)
        # A dead process cleans nothing up: its run is abandoned first, so
        # closing the generator now releases no throttle (the lease expires
        # on its own). Closed here, not by the collector at some later
        # moment, where its events would land in whatever run is current.
        if worker.run is not None:
            worker.run.abandon()
        if worker.gen is not None:
            worker.gen.close()
        if worker.run is not None:
            worker.run.dispose()
        dead = worker.id
        self._idle.discard(worker.index)
        worker.status, worker.gen, worker.run, worker.job = "crashed", None, None, None
        worker.job_id = None
        worker.wait, worker.throw, worker.recording = None, None, None
        self._add_timer(self.clock.now() + self.faults.alive_threshold, "recover", dead)
        self._add_timer(
            self.clock.now() + self.faults.restart_delay, "restart", worker.name
        )

    # -- timers --

    def _add_timer(self, at: float, kind: str, data: Any) -> None:
        heapq.heappush(self._timers, _Timer(at, next(self._seq), kind, data))

    def _fire_timers(self) -> None:
        while self._timers and self._timers[0].at <= self.clock.now():
            timer = heapq.heappop(self._timers)
            if timer.kind == "restart":
                worker = next(w for w in self._workers if w.name == timer.data)
                worker.incarnation += 1
                worker.id = f"{worker.name}#{worker.incarnation}"
                worker.status = "idle"
                self._idle.add(worker.index)
                self._record(worker, "worker.restart", None, {})
            elif timer.kind == "recover":
                released = self.backend.release_claimed(timer.data, self.clock.now())
                self._record(
                    None,
                    "worker.recover",
                    None,
                    {"reason": timer.data, "sub_job_count": len(released)},
                )
                self._epoch += 1  # a change that may end a poll
            elif timer.kind == "late_finish":
                job_id, worker_id = timer.data
                now = self.clock.now()
                applied = self.backend.finish(job_id, now, worker_id=worker_id)
                self._record(
                    None,
                    "fault.late_finish",
                    job_id,
                    {"reason": "applied" if applied else "refused"},
                )
                if applied:
                    self._epoch += 1  # a change that may end a poll
            elif timer.kind == "cron":
                workflow, key = timer.data
                entry = workflow.schedules[key]
                job_id = self.enqueue(workflow, **dict(entry.args))
                self._record(None, "schedule.fire", job_id, {"reason": key})
                self._add_cron(workflow, key)

    def _add_cron(self, workflow: type[Workflow], key: str) -> None:
        moment = _dt.datetime.fromtimestamp(self.clock.now(), _dt.UTC)
        fire = workflow.schedules[key].next_after(moment)
        self._add_timer(fire.timestamp(), "cron", (workflow, key))

    # -- randomness, trace, metrics --

    def _strikes(self, fault: str) -> bool:
        probability = self._odds[fault]
        return probability > 0 and self.rng.random() < probability

    def _on_event(
        self, name: str, payload: dict[str, Any], duration_ms: float | None
    ) -> None:
        if name == "task.retry":
            self._metrics.retries += 1
        elif name == "throttle.acquire.complete":
            self._limits[str(payload["concurrency_key"])] = int(
                payload["concurrency_limit"]
            )
        keys = _TRACE_KEYS
        self._record(
            self._current,
            name,
            payload.get("job_id"),
            {k: v for k, v in payload.items() if k in keys and v is not None},
        )

    def _record(
        self,
        worker: _Worker | None,
        name: str,
        job_id: str | None,
        detail: dict[str, Any],
    ) -> None:
        """Add a trace entry; ``detail`` is kept as is."""
        now = self.clock._now
        if now != self._elapsed_at:  # rounded once per instant, not per entry
            self._elapsed_at = now
            self._elapsed_value = round(now - self._start, 9)
        self._rows.append(
            (self._elapsed_value, None if worker is None else worker.id, name, job_id)
        )
        self._details.append(detail)

    def result(self) -> SimulationResult:
        """The outcome so far (the simulation may go on afterwards)."""
        from job_workflow._status import aggregate, aggregate_status

        statuses: dict[str, str] = {}
        outputs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        backend = self.backend
        memory = backend if isinstance(backend, MemoryBackend) else None
        for job_id, _, _ in self._enqueued:
            if memory is not None:  # no record per job: a run has thousands
                tree = memory._tree_statuses(job_id)
                assert tree is not None, "the simulation's backend lost a job"
                statuses[job_id] = aggregate(*tree)
            else:
                job = backend.get_job(job_id)
                assert job is not None, "the simulation's backend lost a job"
                statuses[job_id] = aggregate_status(job, backend.sub_jobs(job_id))
            state = backend.load_state(job_id)
            outputs[job_id] = {
                task: [by_index[i] for i in sorted(by_index)]
                for task, by_index in sorted(state.outputs.items())
            }
        return SimulationResult(
            seed=self.seed,
            workers=len(self._workers),
            faults=self.faults,
            statuses=statuses,
            outputs=outputs,
            trace=Trace(list(self._rows), list(self._details)),
            spans=[*self._spans, *self._open_spans()],
            deadlocked=self._deadlocked,
            metrics=self._metrics.freeze(self.clock.now() - self._start, self._workers),
            workflows=[
                (job_id, name, dict(args)) for job_id, name, args in self._enqueued
            ],
            limits=dict(self._limits),
            reruns=list(self._reruns),
            backend=self.backend,
            compare_outputs=self._compare_outputs,
            start=self._start,
        )

    def _open_spans(self) -> list[Span]:
        """The stretches still under way, cut at the current virtual time.

        A result taken mid-run (``until``, ``advance``) or at a deadlock shows
        what each worker is doing now: a body or a wait that has not ended.
        """
        spans: list[Span] = []
        for worker in self._workers:
            if worker.status != "running":
                continue
            if worker.body is not None:
                task, index = worker.body
                start, kind = worker.body_started, "task"
            elif worker.wait is not None:
                task, index = None, None
                start, kind = worker.wait_started, _wait_kind(worker.wait)
            else:
                continue
            spans.append(
                Span(
                    worker.name,
                    start,
                    self.clock.now(),
                    kind,
                    worker.job_id,
                    task,
                    index,
                )
            )
        return spans


@contextlib.contextmanager
def _collector_relaxed() -> Iterator[None]:
    """A larger first threshold for the cycle collector while a run goes on.

    Each job allocates many containers, and a result copies every
    workflow's outputs: with the default first threshold (700 allocations)
    the collector's passes fire constantly and rescan what the run keeps.
    Runs unlink their own cycles (JobRun.dispose), so little garbage waits
    for the larger threshold; the previous setting comes back after.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], _GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


class _StaleReads:
    """The backend as jobs see it under the ``stale_reads`` fault.

    A read of sub-job progress may return what the previous read of the
    same sub-jobs returned (one read behind, never ahead of the truth): a
    job must wait on, not run ahead. Everything else goes to the backend.
    """

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self._backend = sim.backend
        self._last: dict[tuple[str, str], SubJobProgress] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def sub_job_progress(self, parent_id: str, task_name: str) -> SubJobProgress:
        fresh = self._backend.sub_job_progress(parent_id, task_name)
        key = (parent_id, task_name)
        last = self._last.get(key)
        sim = self._sim
        self._last[key] = fresh  # the lag is one read: the next may be fresh
        if last is not None and last != fresh and sim._strikes("stale_reads"):
            sim._record(
                sim._current, "fault.stale_read", parent_id, {"task_name": task_name}
            )
            return last
        return fresh


def _task_of(worker: _Worker) -> str | None:
    """The task a worker is in: its open body, else its sub-job's task."""
    if worker.body is not None:
        return worker.body[0]
    return worker.job.task_name if worker.job else None


def _wait_kind(wait: Sleep) -> str:
    return "poll" if wait.reason.startswith("poll") else wait.reason


class _MetricsRecorder:
    def __init__(self) -> None:
        self.busy_seconds: dict[str, float] = {}
        self.polling_seconds: dict[str, float] = {}
        self.reschedules = 0
        self.retries = 0
        self.holders: Counter[str] = Counter()
        self.peak_holders: dict[str, int] = {}
        self.running: Counter[str] = Counter()
        self.peak_concurrency: dict[str, int] = {}
        self.limits: dict[str, int] = {}

    # Busy and polling seconds are added by the simulation itself, inline:
    # it does so at every body and every poll.

    def open_body(self, key: str) -> None:
        self.holders[key] += 1
        self.peak_holders[key] = max(self.peak_holders.get(key, 0), self.holders[key])

    def close_body(self, key: str) -> None:
        self.holders[key] -= 1

    def start(self, job: JobRecord) -> None:
        """A job holding a concurrency slot (its key is set) starts."""
        key = job.concurrency_key
        assert key is not None
        self.running[key] += 1
        self.peak_concurrency[key] = max(
            self.peak_concurrency.get(key, 0), self.running[key]
        )
        if job.concurrency_limit is not None:
            self.limits[key] = job.concurrency_limit

    def stop(self, job: JobRecord) -> None:
        assert job.concurrency_key is not None
        self.running[job.concurrency_key] -= 1

    def freeze(self, makespan: float, workers: list[_Worker]) -> Metrics:
        return Metrics(
            makespan=makespan,
            worker_busy={w.name: self.busy_seconds.get(w.name, 0.0) for w in workers},
            worker_polling={
                w.name: self.polling_seconds.get(w.name, 0.0) for w in workers
            },
            reschedules=self.reschedules,
            retries=self.retries,
            peak_holders=dict(sorted(self.peak_holders.items())),
            peak_concurrency=dict(sorted(self.peak_concurrency.items())),
            concurrency_limits=dict(sorted(self.limits.items())),
        )


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
