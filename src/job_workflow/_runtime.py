"""Process-wide configuration and the launcher behind ``perform_now``/``later``.

The process backend is, in order: the one given to :func:`configure` (or
installed by :func:`use_backend`), the SQL backend named by the environment
variable ``JOB_WORKFLOW_DATABASE_URL``, or an inline :class:`MemoryBackend`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from job_workflow._status import JobHandle
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import SystemClock
from job_workflow.core import _arguments, _runner
from job_workflow.core._context import Output
from job_workflow.core._events import collect_carried
from job_workflow.core._workflow import Workflow
from job_workflow.core.ports import Clock, NewJob, QueueBackend
from job_workflow.errors import InvalidOptionError

DATABASE_URL_ENV = "JOB_WORKFLOW_DATABASE_URL"

_lock = threading.Lock()
_backend: QueueBackend | None = None
_clock: Clock = SystemClock()


def configure(
    *, backend: QueueBackend | None = None, clock: Clock | None = None
) -> None:
    """Set the process-wide backend and/or clock."""
    global _backend, _clock
    with _lock:
        if backend is not None:
            _backend = backend
        if clock is not None:
            _clock = clock


def current_backend() -> QueueBackend:
    """The process backend, created on first use."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = _backend_from_environment()
        return _backend


def current_clock() -> Clock:
    return _clock


def _backend_from_environment() -> QueueBackend:
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        return MemoryBackend()
    try:
        from job_workflow.backends.sql import SqlBackend
    except ImportError as exc:
        raise RuntimeError(
            f"{DATABASE_URL_ENV} is set, but the SQL backend cannot be loaded "
            f"({exc}); install job-workflow[sql] or unset the variable"
        ) from exc
    backend: QueueBackend = SqlBackend(url)
    return backend


@contextmanager
def use_backend(backend: QueueBackend) -> Iterator[QueueBackend]:
    """Install ``backend`` as the process backend inside the block."""
    global _backend
    with _lock:
        previous, _backend = _backend, backend
    try:
        yield backend
    finally:
        with _lock:
            _backend = previous


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` as the process clock inside the block."""
    global _clock
    with _lock:
        previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        with _lock:
            _clock = previous


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """The result of ``perform_now``: job id, final status and outputs."""

    job_id: str
    status: str
    output: Output


_SET_OPTIONS = frozenset({"queue", "wait", "priority", "backend"})
# The claimer of a perform_now job: the caller's thread, not a worker.
_INLINE = "inline"


class _Launcher:
    """Starts runs; installed on Workflow when the package is imported."""

    def perform_now(
        self,
        cls: type[Workflow],
        arguments: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> WorkflowRun:
        backend = options.get("backend") or current_backend()
        # ``clock`` is internal, like ``force_dry_run``: dry_run() passes a
        # ManualClock so it never waits and leaves the process clock alone.
        clock = options.get("clock") or current_clock()
        values = _arguments.validate(cls.arguments, arguments, cls.name)
        spec = NewJob(
            workflow=cls.name,
            arguments=_arguments.encode(values),
            queue=options.get("queue") or cls.queue,
            priority=options.get("priority") or 0,
        )
        job = backend.start_inline(spec, _INLINE, clock.now())
        env = _runner.RunEnv(
            backend=backend,
            clock=clock,
            worker_id=_INLINE,
            synchronous=True,
            force_dry_run=bool(options.get("force_dry_run")),
        )
        run = _runner.JobRun(env, job)
        try:
            _runner.drive(run.execute(), clock)
        except BaseException as exc:
            error = _runner.error_of(exc)
            backend.fail(job.id, error, clock.now(), worker_id=_INLINE)
            raise
        finally:
            run.dispose()
        backend.finish(job.id, clock.now(), worker_id=_INLINE)
        return WorkflowRun(job.id, "succeeded", Output(cls, run.outputs))

    def perform_later(
        self,
        cls: type[Workflow],
        arguments: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> JobHandle:
        backend = options.get("backend") or current_backend()
        clock = current_clock()
        values = _arguments.validate(cls.arguments, arguments, cls.name)
        wait = options.get("wait")
        now = clock.now()
        spec = NewJob(
            workflow=cls.name,
            arguments=_arguments.encode(values),
            queue=options.get("queue") or cls.queue,
            priority=options.get("priority") or 0,
            run_at=None if not wait else now + float(wait),
            metadata=_carried(),
        )
        [job_id] = backend.enqueue([spec], now)
        return JobHandle(job_id, backend, clock)

    def configured(
        self, cls: type[Workflow], options: Mapping[str, Any]
    ) -> ConfiguredCall:
        unknown = sorted(set(options) - _SET_OPTIONS)
        if unknown:
            raise InvalidOptionError(
                "set", f"unknown option(s) {unknown}; allowed: {sorted(_SET_OPTIONS)}"
            )
        wait = options.get("wait")
        if wait is not None and (
            isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0
        ):
            raise InvalidOptionError("set.wait", f"expected seconds >= 0, got {wait!r}")
        return ConfiguredCall(self, cls, dict(options))


def _carried() -> dict[str, Any]:
    carried = collect_carried()
    return {"trace_context": carried} if carried else {}


class ConfiguredCall:
    """What ``Workflow.set(...)`` returns: perform_now / perform_later with options."""

    def __init__(
        self, launcher: _Launcher, cls: type[Workflow], options: dict[str, Any]
    ):
        self._launcher = launcher
        self._cls = cls
        self._options = options

    def perform_now(self, **arguments: Any) -> WorkflowRun:
        return self._launcher.perform_now(self._cls, arguments, self._options)

    def perform_later(self, **arguments: Any) -> JobHandle:
        return self._launcher.perform_later(self._cls, arguments, self._options)


Workflow._jw_launcher = _Launcher()
