"""Worker processes: a supervisor, its workers, a dispatcher and a scheduler.

``job-workflow worker`` starts a :class:`Supervisor`. It registers itself,
releases the jobs of processes whose heartbeat stopped (a ``kill -9`` of a
worker, or of a whole earlier supervisor), then spawns worker processes and
runs two loops of its own:

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
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from job_workflow.clock import SystemClock
from job_workflow.core import _runner
from job_workflow.core._workflow import Workflow, registry
from job_workflow.core.ports import JobRecord, NewJob, QueueBackend

_log = logging.getLogger("job_workflow")


class SupervisedBackend(QueueBackend, Protocol):
    """What a backend needs beyond the queue port to run worker processes."""

    def register_process(
        self, process_id: str, kind: str, hostname: str, pid: int, now: float
    ) -> None: ...

    def heartbeat(self, process_id: str, now: float) -> None: ...

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
    """One worker process: a claiming loop feeding a pool of threads."""

    def __init__(self, config: WorkerConfig, process_id: str, kind: str = "worker"):
        self.config = config
        self.process_id = process_id
        self.kind = kind
        self.stopping = _Stopping()
        self.clock = SystemClock()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._work_done = threading.Event()

    def run(self, backend: SupervisedBackend) -> int:
        backend.register_process(
            self.process_id,
            self.kind,
            socket.gethostname(),
            os.getpid(),
            self.clock.now(),
        )
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(backend,), name="jw-heartbeat", daemon=True
        )
        heartbeat.start()
        env = _runner.RunEnv(
            backend=backend,
            clock=self.clock,
            worker_id=self.process_id,
            interrupted=self.stopping.event.is_set,
        )
        with ThreadPoolExecutor(
            max_workers=self.config.threads, thread_name_prefix="jw-worker"
        ) as pool:
            self._claim_loop(backend, env, pool)
        backend.deregister_process(self.process_id, self.clock.now())
        _log.info(
            "worker stopped",
            extra={"event": "worker.stop", "process_id": self.process_id},
        )
        return 0

    def _claim_loop(
        self, backend: SupervisedBackend, env: _runner.RunEnv, pool: ThreadPoolExecutor
    ) -> None:
        queues = list(self.config.queues) if self.config.queues else None
        failures = 0
        while not self.stopping.event.is_set():
            free = self.config.threads - self._busy
            if free <= 0:
                self._wait_for_work()
                continue
            try:
                jobs = backend.claim(queues, self.process_id, self.clock.now(), free)
                failures = 0
            except Exception as exc:
                failures += 1
                self._backend_trouble(exc, failures)
                continue
            for job in jobs:
                self._started()
                pool.submit(self._perform, env, job)
            if not jobs:
                self.stopping.event.wait(self.config.polling_interval)

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

    def _started(self) -> None:
        with self._busy_lock:
            self._busy += 1
            self._work_done.clear()

    def _wait_for_work(self) -> None:
        self._work_done.wait(self.config.polling_interval)

    def _perform(self, env: _runner.RunEnv, job: JobRecord) -> None:
        try:
            _settle_safely(env, job)
        finally:
            with self._busy_lock:
                self._busy -= 1
                self._work_done.set()

    def _heartbeat(self, backend: SupervisedBackend) -> None:
        while not self.stopping.event.wait(self.config.heartbeat_interval):
            try:
                backend.heartbeat(self.process_id, self.clock.now())
            except Exception as exc:
                _log.warning(
                    "heartbeat failed",
                    extra={
                        "event": "worker.heartbeat_error",
                        "error_class": type(exc).__name__,
                    },
                )


def _settle_safely(env: _runner.RunEnv, job: JobRecord) -> None:
    """Run a job; a backend failure while settling it leaves it claimed.

    A claimed job whose worker cannot report back is released later by the
    dead-process pruning, so it is retried rather than lost.
    """
    try:
        _runner.perform(env, job)
    except Exception as exc:
        _log.error(
            "could not settle job",
            extra={
                "event": "worker.settle_error",
                "job_id": job.id,
                "error_class": type(exc).__name__,
                "error_message": str(exc).splitlines()[0] if str(exc) else "",
            },
        )


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
        self._context = multiprocessing.get_context("spawn")
        self._next_fire: dict[tuple[str, str], float] = {}

    def run(self, backend: SupervisedBackend) -> int:
        _install_handlers(self.stopping, child=False, on_abort=self._kill_children)
        now = self.clock.now()
        backend.register_process(
            self.process_id, "supervisor", socket.gethostname(), os.getpid(), now
        )
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
                    backend.heartbeat(self.process_id, self.clock.now())
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
                backend.enqueue_recurring(key, fire, job, now)
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


def _next_fire(cron: str, now: float) -> float:
    from croniter import croniter

    start = _dt.datetime.fromtimestamp(now, _dt.UTC)
    fire: _dt.datetime = croniter(cron, start).get_next(_dt.datetime)
    return fire.timestamp()


def _encoded_args(cls: type[Workflow], args: dict[str, Any]) -> dict[str, Any]:
    from job_workflow.core import _arguments

    return _arguments.encode(_arguments.validate(cls.arguments, args, cls.name))
