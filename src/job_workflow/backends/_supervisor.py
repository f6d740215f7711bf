"""Worker processes: a supervisor, its workers, a dispatcher and a scheduler.

``job-workflow worker`` starts a :class:`Supervisor`. It registers itself,
releases the jobs of processes whose heartbeat stopped (a ``kill -9`` of a
worker, or of a whole earlier supervisor), then starts worker processes
(forked from a fork server that imported the workflows once, see
:func:`_start_method`), replaces any that dies, and runs two loops of its
own:

- the dispatcher moves due scheduled jobs to ready and expires semaphore
  leases, and periodically prunes dead processes;
- the scheduler enqueues the runs of ``@schedule`` declarations; the backend
  records each (key, time) once, so any number of schedulers enqueue a run
  once.

Each worker process claims jobs for a pool of threads and heartbeats. SIGTERM
(or a first SIGINT) asks everyone to stop: jobs that are running finish (a
job waiting in a poll or a retry delay is handed back to the queue at that
wait, its progress saved), then the processes exit 0. A second SIGINT exits
at once. Everything here talks to the backend through the queue port plus
the small :class:`SupervisedBackend` surface.

When the database goes away (a restart, a dropped connection) a worker
keeps its processes: claiming backs off and retries, a job that met the
outage is not failed but left claimed, and once the database answers the
worker gives back every job it holds but is not running
(``release_stale_claims``), so those jobs resume elsewhere from their saved
progress. Heartbeats re-register the process, so one pruned while the
database was away is known again (and its later claims released if it
dies).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from job_workflow.clock import SystemClock
from job_workflow.core import _runner
from job_workflow.core._workflow import Workflow, registry
from job_workflow.core.ports import JobRecord, NewJob, QueueBackend

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext

_log = logging.getLogger("job_workflow")

# A worker keeps a job per thread in hand while jobs take less than this (s).
SHORT_JOB = 0.1
# Jobs in hand longer than this (s) go back to the queue for others.
HAND_PATIENCE = 1.0
# How often a worker with running jobs looks whether one finished (s).
FINISH_LOOK = 0.01


class SupervisedBackend(QueueBackend, Protocol):
    """What a backend needs beyond the queue port to run worker processes."""

    def register_process(
        self, process_id: str, kind: str, hostname: str, pid: int, now: float
    ) -> None: ...

    def heartbeat(self, process_id: str, now: float) -> None: ...

    def release_stale_claims(
        self, worker_id: str, running: Collection[str], now: float
    ) -> list[str]: ...

    def finish_and_claim(
        self,
        job_ids: Sequence[str],
        now: float,
        queues: Sequence[str] | None,
        worker_id: str,
        limit: int = 1,
    ) -> list[JobRecord]:
        """Finish the jobs of ``job_ids`` that ``worker_id`` holds, then claim."""
        ...

    @property
    def waits_for_jobs(self) -> bool: ...

    def defer_current_tasks(self, wake: Callable[[], None]) -> None: ...

    def has_deferred_current_tasks(self) -> bool: ...

    def wait_for_jobs(self, timeout: float) -> bool: ...

    def deregister_process(self, process_id: str, now: float) -> list[str]: ...

    def prune_processes(self, alive_threshold: float, now: float) -> list[str]: ...

    def enqueue_recurring(
        self, key: str, run_at: float, job: NewJob, now: float
    ) -> str | None: ...


BackendFactory = Callable[[], SupervisedBackend]


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of one ``job-workflow worker`` invocation."""

    database_url: str
    imports: tuple[str, ...] = ()
    queues: tuple[str, ...] | None = None
    processes: int = 1
    threads: int = 3
    heartbeat_interval: float = 60.0
    alive_threshold: float = 300.0
    polling_interval: float = 0.1
    table_prefix: str = "jw_"
    extra: dict[str, Any] = field(default_factory=dict)

    def backend(self) -> SupervisedBackend:
        from job_workflow.backends.sql import SqlBackend

        backend: SupervisedBackend = SqlBackend(
            self.database_url, table_prefix=self.table_prefix
        )
        return backend


def import_workflows(modules: Sequence[str]) -> list[str]:
    """Import the modules that define workflows; return the registered names.

    This is the one place a worker imports code, and only the modules named
    on its command line: never a name read from the database.
    """
    for module in modules:
        importlib.import_module(module)
    return registry.names()


class _Stopping:
    """Shared stop state, set by signal handlers."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.interrupts = 0


class WorkerProcess:
    """One worker process: threads that run jobs, one loop that feeds them.

    Only the loop (:meth:`_loop`) talks to the queue. Each round trip to the
    database reports the jobs the threads finished since the previous one
    and claims enough jobs to keep every thread busy (``finish_and_claim``),
    so under load one statement settles and claims several jobs. While jobs
    are short (under ``SHORT_JOB`` seconds on average) it also keeps one
    claimed job per thread in hand, so a thread that finishes starts its
    next job at once instead of waiting for the database; jobs left in hand
    longer than ``HAND_PATIENCE`` (every thread stuck in a long job) are
    given back to the queue. With nothing to do the loop waits for the
    database to announce work (``wait_for_jobs``) or polls every
    ``polling_interval``.

    A job whose finish is not reported yet is still claimed: should the
    process die in those milliseconds, the job runs again elsewhere, which
    at-least-once delivery allows. Every settle carries the process id, so
    a process presumed dead while it was only slow settles nothing that
    another has claimed since.
    """

    def __init__(self, config: WorkerConfig, process_id: str, kind: str = "worker"):
        self.config = config
        self.process_id = process_id
        self.kind = kind
        self.stopping = _Stopping()
        self.clock = SystemClock()
        self._lock = threading.Lock()
        self._job_ready = threading.Condition(self._lock)  # threads wait here
        self._hand: deque[tuple[float, JobRecord]] = deque()  # claimed, waiting
        self._running: set[str] = set()  # started, not done
        self._finished: list[str] = []  # done, finish not reported yet
        self._average = SHORT_JOB  # seconds a job takes, a moving average
        self._thread_done = threading.Event()  # wakes the loop
        # When a claim last came back short: no claim again until the
        # database announces work or the next poll.
        self._drained_at: float | None = None
        self._local = threading.local()  # the job a thread just finished
        # Set when the backend failed us: some job may be claimed under our
        # id that we hold nowhere (a lost reply, an unsettled job).
        self._stale_claims = False

    def run(self, backend: SupervisedBackend) -> int:
        self._register(backend)
        backend.defer_current_tasks(self._thread_done.set)
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(backend,), name="jw-heartbeat", daemon=True
        )
        heartbeat.start()
        env = _runner.RunEnv(
            backend=backend,
            clock=self.clock,
            worker_id=self.process_id,
            interrupted=self.stopping.event.is_set,
            # An interrupted job stays claimed: this process is stopping and
            # releases what it holds when it deregisters, after its other
            # threads finish (releasing all claims now would hand their
            # running jobs to someone else too).
            hand_back=_leave_claimed,
            finish=self._finish_later,
        )
        threads = [
            threading.Thread(target=self._thread, args=(env,), name=f"jw-worker-{n}")
            for n in range(self.config.threads)
        ]
        for thread in threads:
            thread.start()
        try:
            self._loop(backend)
        finally:
            self.stopping.event.set()
            with self._job_ready:
                self._job_ready.notify_all()
            for thread in threads:
                thread.join()
        self._report(backend, 0)  # what finished after the loop's last look
        heartbeat.join()  # so that no late heartbeat registers us again
        backend.deregister_process(self.process_id, self.clock.now())
        _log.info(
            "worker stopped",
            extra={"event": "worker.stop", "process_id": self.process_id},
        )
        return 0

    # -- the loop --

    def _loop(self, backend: SupervisedBackend) -> None:
        failures = 0
        while True:
            stopping = self.stopping.event.is_set()
            if stopping and not self._busy():
                return
            if self._stale_claims and not stopping:
                self._release_stale_claims(backend)
            self._give_back_stuck_hand(backend)
            want = 0 if stopping or self._drained() else self._wanted()
            try:
                claimed = self._report(backend, want)
                failures = 0
            except Exception as exc:
                failures += 1
                self._stale_claims = True
                self._backend_trouble(exc, failures)
                continue
            if claimed < want:
                self._drained_at = time.monotonic()
            if claimed:
                continue  # there may be more
            self._wait(backend, stopping)

    def _drained(self) -> bool:
        drained = self._drained_at
        return (
            drained is not None
            and time.monotonic() - drained < self.config.polling_interval
        )

    def _report(self, backend: SupervisedBackend, want: int) -> int:
        """Report finished jobs and claim ``want``; how many were claimed."""
        with self._lock:
            finished, self._finished = self._finished, []
        current = backend.has_deferred_current_tasks()
        if not finished and not want and not current:
            return 0
        now = self.clock.now()
        try:
            if finished or current:
                jobs = backend.finish_and_claim(
                    finished, now, self._queues(), self.process_id, want
                )
            else:
                jobs = backend.claim(self._queues(), self.process_id, now, want)
        except Exception as exc:
            for job_id in finished:
                _settle_error(job_id, exc)
            raise
        with self._job_ready:
            self._hand.extend((time.monotonic(), job) for job in jobs)
            self._job_ready.notify(len(jobs))
        return len(jobs)

    def _queues(self) -> list[str] | None:
        return list(self.config.queues) if self.config.queues else None

    def _wanted(self) -> int:
        """How many jobs to claim now: 0 unless worth a round trip."""
        threads = self.config.threads
        with self._lock:
            held = len(self._hand) + len(self._running)
            short = self._average < SHORT_JOB
        idle = threads - held
        room = threads + (threads if short else 0) - held
        # A thread with nothing to do gets a job at once; filling the hand
        # waits for half a batch.
        return room if idle > 0 or room >= max(1, threads // 2) else 0

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._running or self._finished)

    def _wait(self, backend: SupervisedBackend, stopping: bool) -> None:
        """Until a thread finishes, work may have come, or the next poll."""
        with self._lock:
            all_idle = not self._running and not self._hand
        if stopping or not self._drained() or not backend.waits_for_jobs:
            # Threads are busy with work the queue had: the next event is
            # one of them finishing.
            self._thread_done.wait(self.config.polling_interval)
        else:
            # The queue ran dry: the database wakes us for new work, and a
            # finishing thread (which has nothing next anyway) is noticed
            # at the next short look.
            timeout = self.config.polling_interval if all_idle else FINISH_LOOK
            try:
                if backend.wait_for_jobs(timeout):
                    self._drained_at = None  # work came: claim again now
            except Exception:
                # The next claim meets the trouble, reports it, backs off.
                self._thread_done.wait(self.config.polling_interval)
        self._thread_done.clear()

    def _give_back_stuck_hand(self, backend: SupervisedBackend) -> None:
        """Jobs in hand too long (every thread busy for long) go back."""
        with self._lock:
            if not self._hand or self._hand[0][0] > time.monotonic() - HAND_PATIENCE:
                return
            self._hand.clear()
        self._stale_claims = True  # _release_stale_claims gives them back
        self._release_stale_claims(backend)

    def _release_stale_claims(self, backend: SupervisedBackend) -> None:
        with self._lock:
            ours = {job.id for _, job in self._hand}
            ours |= self._running | set(self._finished)
        try:
            released = backend.release_stale_claims(
                self.process_id, ours, self.clock.now()
            )
        except Exception:
            return  # still away; the loop backs off and we try again
        self._stale_claims = False
        if released:
            _log.warning(
                "gave back claimed jobs this worker is not running",
                extra={
                    "event": "worker.release_stale",
                    "process_id": self.process_id,
                    "released_jobs": len(released),
                },
            )

    def _backend_trouble(self, exc: Exception, failures: int) -> None:
        delay = min(5.0, self.config.polling_interval * 2**failures)
        _log.warning(
            "backend unavailable, retrying",
            extra={
                "event": "worker.backend_error",
                "error_class": type(exc).__name__,
                "error_message": str(exc).splitlines()[0] if str(exc) else "",
                "retry_in": delay,
            },
        )
        self.stopping.event.wait(delay)

    # -- the threads --

    def _thread(self, env: _runner.RunEnv) -> None:
        while (job := self._next_job()) is not None:
            self._local.finished = None
            started = time.monotonic()
            settled = _settle_safely(env, job)
            took = time.monotonic() - started
            with self._lock:
                self._running.discard(job.id)
                if self._local.finished is not None:
                    self._finished.append(self._local.finished)
                if not settled:
                    self._stale_claims = True
                self._average += (took - self._average) * 0.1
            self._thread_done.set()

    def _next_job(self) -> JobRecord | None:
        with self._job_ready:
            while not self._hand:
                if self.stopping.event.is_set():
                    return None
                self._job_ready.wait(self.config.polling_interval)
            if self.stopping.event.is_set():
                return None  # jobs in hand go back when we deregister
            _, job = self._hand.popleft()
            self._running.add(job.id)
        self._thread_done.set()  # the loop may refill the hand
        return job

    def _finish_later(self, job_id: str, now: float) -> None:
        """``RunEnv.finish``: the loop reports it with its next round trip."""
        self._local.finished = job_id

    # -- liveness --

    def _register(self, backend: SupervisedBackend) -> None:
        backend.register_process(
            self.process_id,
            self.kind,
            socket.gethostname(),
            os.getpid(),
            self.clock.now(),
        )

    def _heartbeat(self, backend: SupervisedBackend) -> None:
        # Registering again (an upsert) rather than touching the row: a
        # process pruned while the database was away comes back.
        while not self.stopping.event.wait(self.config.heartbeat_interval):
            try:
                self._register(backend)
            except Exception as exc:
                _log.warning(
                    "heartbeat failed",
                    extra={
                        "event": "worker.heartbeat_error",
                        "error_class": type(exc).__name__,
                    },
                )


def _settle_error(job_id: str, exc: Exception) -> None:
    _log.error(
        "could not settle job",
        extra={
            "event": "worker.settle_error",
            "job_id": job_id,
            "error_class": type(exc).__name__,
            "error_message": str(exc).splitlines()[0] if str(exc) else "",
        },
    )


def _leave_claimed(job: JobRecord) -> None:
    """``RunEnv.hand_back`` of a worker process: see :meth:`WorkerProcess.run`."""


def _settle_safely(env: _runner.RunEnv, job: JobRecord) -> bool:
    """Run a job; False when the backend failed and the job is left claimed.

    The worker then gives it back with ``release_stale_claims`` once the
    database answers (or the dead-process pruning does, should the worker
    die first), so it is retried rather than lost.
    """
    try:
        _runner.perform(env, job)
    except Exception as exc:
        _settle_error(job.id, exc)
        return False
    return True


def _worker_entry(config: WorkerConfig, process_id: str) -> None:
    """Entry point of a spawned worker process."""
    stopping_process = WorkerProcess(config, process_id)
    _install_handlers(stopping_process.stopping, child=True)
    import_workflows(config.imports)
    backend = config.backend()
    try:
        code = stopping_process.run(backend)
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    sys.exit(code)


def _install_handlers(
    stopping: _Stopping, *, child: bool, on_abort: Callable[[], None] | None = None
) -> None:
    """SIGTERM and a first SIGINT stop gracefully; a second SIGINT aborts.

    Workers ignore SIGINT: a Ctrl-C in a terminal reaches the whole process
    group, and the supervisor decides what the workers do.
    """

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.event.set()

    def on_int(signum: int, frame: FrameType | None) -> None:
        stopping.interrupts += 1
        stopping.event.set()
        if stopping.interrupts >= 2:
            if on_abort is not None:
                on_abort()
            os._exit(130)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN if child else on_int)


class Supervisor:
    """Starts and watches worker processes; dispatches and schedules."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.process_id = f"supervisor-{uuid.uuid4().hex[:12]}"
        self.clock = SystemClock()
        self.stopping = _Stopping()
        self._children: dict[str, multiprocessing.process.BaseProcess] = {}
        self._context = _start_method(config.imports)
        self._next_fire: dict[tuple[str, str], float] = {}

    def run(self, backend: SupervisedBackend) -> int:
        _install_handlers(self.stopping, child=False, on_abort=self._kill_children)
        self._register(backend)
        self._prune(backend)
        for _ in range(self.config.processes):
            self._spawn()
        _log.info(
            "supervisor started",
            extra={
                "event": "supervisor.start",
                "process_id": self.process_id,
                "processes": self.config.processes,
                "threads": self.config.threads,
            },
        )
        try:
            self._loop(backend)
        finally:
            self._stop_children()
            backend.deregister_process(self.process_id, self.clock.now())
        return 0

    def _register(self, backend: SupervisedBackend) -> None:
        # An upsert, also as the heartbeat: see WorkerProcess._heartbeat.
        backend.register_process(
            self.process_id,
            "supervisor",
            socket.gethostname(),
            os.getpid(),
            self.clock.now(),
        )

    def _spawn(self) -> None:
        process_id = f"worker-{uuid.uuid4().hex[:12]}"
        child = self._context.Process(
            target=_worker_entry,
            args=(self.config, process_id),
            name=f"job-workflow {process_id}",
            daemon=False,
        )
        child.start()
        self._children[process_id] = child

    def _loop(self, backend: SupervisedBackend) -> None:
        last_heartbeat = last_prune = self.clock.monotonic()
        while not self.stopping.event.is_set():
            try:
                backend.dispatch_due(self.clock.now())
                self._schedule(backend)
                if (
                    self.clock.monotonic() - last_heartbeat
                    >= self.config.heartbeat_interval
                ):
                    self._register(backend)
                    last_heartbeat = self.clock.monotonic()
                if self.clock.monotonic() - last_prune >= min(
                    self.config.alive_threshold, self.config.heartbeat_interval
                ):
                    self._prune(backend)
                    last_prune = self.clock.monotonic()
                self._replace_dead_children(backend)
            except Exception as exc:
                _log.warning(
                    "supervisor step failed; retrying",
                    extra={
                        "event": "supervisor.error",
                        "error_class": type(exc).__name__,
                    },
                )
            self.stopping.event.wait(self.config.polling_interval)

    def _replace_dead_children(self, backend: SupervisedBackend) -> None:
        for process_id, child in list(self._children.items()):
            if child.is_alive() or self.stopping.event.is_set():
                continue
            released = backend.deregister_process(process_id, self.clock.now())
            _log.warning(
                "worker process died; its jobs are back in the queue",
                extra={
                    "event": "worker.died",
                    "process_id": process_id,
                    "exit_code": child.exitcode,
                    "released_jobs": len(released),
                },
            )
            del self._children[process_id]
            self._spawn()

    def _prune(self, backend: SupervisedBackend) -> None:
        released = backend.prune_processes(
            self.config.alive_threshold, self.clock.now()
        )
        if released:
            _log.warning(
                "released jobs of dead processes",
                extra={"event": "supervisor.prune", "released_jobs": len(released)},
            )

    def _schedule(self, backend: SupervisedBackend) -> None:
        now = self.clock.now()
        for cls in registry.classes():
            for key, entry in cls.schedules.items():
                slot = (cls.name, key)
                fire = self._next_fire.get(slot)
                if fire is None:
                    fire = _next_fire(entry.cron, now)
                    self._next_fire[slot] = fire
                if fire > now:
                    continue
                job = NewJob(
                    workflow=cls.name,
                    arguments=_encoded_args(cls, dict(entry.args)),
                    queue=entry.queue or cls.queue,
                    priority=entry.priority or 0,
                )
                # Keys are unique per workflow, not across workflows: two
                # workflows may both call a schedule "daily".
                backend.enqueue_recurring(f"{cls.name}/{key}", fire, job, now)
                self._next_fire[slot] = _next_fire(entry.cron, now)

    def _kill_children(self) -> None:
        for child in self._children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)

    def _stop_children(self) -> None:
        for child in self._children.values():
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        for child in self._children.values():
            child.join()


def _start_method(imports: Sequence[str]) -> SpawnContext | ForkServerContext:
    """How worker processes start: from a fork server where there is one.

    The fork server is a fresh interpreter (it inherits nothing from the
    supervisor: no threads, no connections) that imports the library and
    the ``--import`` modules once; each worker is then forked from it, so
    starting or replacing a worker costs milliseconds instead of a second
    of imports. Where there is no fork server (Windows), workers are
    spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["job_workflow.backends._supervisor", "job_workflow.backends.sql", *imports]
    )
    return context


def _next_fire(cron: str, now: float) -> float:
    from croniter import croniter

    start = _dt.datetime.fromtimestamp(now, _dt.UTC)
    fire: _dt.datetime = croniter(cron, start).get_next(_dt.datetime)
    return fire.timestamp()


def _encoded_args(cls: type[Workflow], args: dict[str, Any]) -> dict[str, Any]:
    from job_workflow.core import _arguments

    return _arguments.encode(_arguments.validate(cls.arguments, args, cls.name))
