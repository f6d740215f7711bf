"""The runner: executes one job of a workflow, step by step.

:meth:`JobRun.execute` is a generator. It yields an *effect* whenever it must
wait (:class:`Sleep`) or reaches a point where a worker could crash
(:class:`Checkpoint`), and returns an :class:`Outcome`. A real worker answers
``Sleep`` with ``clock.sleep``; the simulator answers it by moving virtual
time and running other workers meanwhile. That is how one runner serves
threads, processes and a single-threaded deterministic simulation.

Progress is written through the backend after every iteration and task, so a
job that is claimed again (after a reschedule, a retry or a crash) continues
at its first unfinished iteration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, cast

from job_workflow.core import _arguments, _codec
from job_workflow.core._arguments import Arguments
from job_workflow.core._context import Context, TaskOutput
from job_workflow.core._events import bus, collect_carried
from job_workflow.core._task import Task
from job_workflow.core._workflow import Hooks, Workflow, registry
from job_workflow.core.ports import (
    BackendUnavailableError,
    Clock,
    JobError,
    JobRecord,
    JobState,
    NewJob,
    QueueBackend,
)
from job_workflow.errors import (
    AlreadyCalledError,
    DependencyFailedError,
    NotCalledError,
    OutputError,
    TaskTimeoutError,
)


class Sleep(NamedTuple):
    """Wait ``seconds`` before going on.

    Effects are named tuples: a simulated job yields several, and a tuple
    is built in a fraction of a frozen dataclass's time.

    ``reason`` is ``retry``, ``throttle``, ``poll`` (a dependency wait that
    will reschedule after its poll_timeout) or ``poll_only`` (one that holds
    its worker until the dependency finishes: the simulator's deadlock
    detector needs to tell the two apart).
    """

    seconds: float
    reason: str


class Checkpoint(NamedTuple):
    """A point where a crash would leave a distinct state (for fault tests)."""

    point: str
    task: str | None = None
    each_index: int | None = None


Effect = Sleep | Checkpoint

# A simulated job passes several checkpoints: build them from their fields
# without the named tuple's Python-level __new__.
_checkpoint = cast(
    Callable[[tuple[str, str | None, int | None]], Checkpoint],
    functools.partial(tuple.__new__, Checkpoint),
)


@dataclass(frozen=True, slots=True)
class Finished:
    """The job did all its work."""


@dataclass(frozen=True, slots=True)
class Rescheduled:
    """The job gave its worker back and wants to run again at ``run_at``."""

    run_at: float
    task: str
    dependency: str


Outcome = Finished | Rescheduled
FINISHED: Final = Finished()


@dataclass(slots=True)
class RunEnv:
    """What one job run talks to.

    ``synchronous`` is perform_now: enqueued tasks run their iterations here
    and nothing reschedules. ``interrupted`` is asked before every wait; when
    it says yes the job stops there and goes back to the queue (its progress
    is already persisted), which is how a worker shuts down or a drain times
    out without waiting for a job that polls forever. ``hand_back`` returns
    such an interrupted job to the queue; without it the runner releases
    every job claimed under ``worker_id``, which is right only when a worker
    id runs one job at a time (a process running several passes its own).
    ``finish`` settles a job that did all its work instead of
    ``backend.finish`` (a worker process sends it with its next claim,
    under ``worker_id``). ``worker_id`` must be the id the job was claimed
    under: the settles carry it, and a backend ignores a settle of a job
    another worker holds.
    ``checkpoints`` makes the runner yield :class:`Checkpoint` effects (only
    the simulator wants them).
    """

    backend: QueueBackend
    clock: Clock
    worker_id: str = "inline"
    synchronous: bool = False
    checkpoints: bool = False
    force_dry_run: bool = False
    throttle_poll_interval: float = 0.5
    interrupted: Callable[[], bool] | None = None
    hand_back: Callable[[JobRecord], None] | None = None
    finish: Callable[[str, float], None] | None = None
    observer: Callable[[str, dict[str, Any]], None] | None = field(default=None)


class JobRun:
    """One execution of one job (a workflow job or a sub-job)."""

    def __init__(self, env: RunEnv, job: JobRecord) -> None:
        self.env = env
        self.job = job
        self.workflow: type[Workflow] = registry.get(job.workflow)
        self.instance = self.workflow()
        self.outputs: dict[str, dict[int, TaskOutput]] = {}
        values = _arguments.decode(self.workflow.arguments, job.arguments, job.workflow)
        self.ctx = Context(self, Arguments(values))
        self._payload: dict[str, Any] = {
            "job_name": self.workflow.name,
            "job_id": job.id,
        }
        if job.parent_id is not None:
            self._payload["parent_job_id"] = job.parent_id
        if "trace_context" in job.metadata:
            self._payload["trace_context"] = job.metadata["trace_context"]
        self._attempt_started = 0.0
        self._workflow_dry_run = _workflow_dry_run(self.workflow)
        self._abandoned = False
        self._unread: set[str] = set()

    def abandon(self) -> None:
        """The worker running this job died: it cleans nothing up.

        Closing the job's generator afterwards runs its ``finally`` blocks,
        which then release no throttle lease (a dead process's lease
        expires with its ttl). For the simulator's crashed workers.
        """
        self._abandoned = True

    def dispose(self) -> None:
        """The run is over and its context will not be asked again.

        The context points back at its run, a reference cycle that only the
        cycle collector would free; unlinking it lets both go at once. A
        worker runs thousands of jobs, and collecting their cycles was a
        sixth of a simulation's time. A context a task kept elsewhere still
        works: only the run's link to it goes, and nothing the context asks
        of its run reads that link.
        """
        self.__dict__.pop("ctx", None)

    # -- helpers used by Context --

    def base_payload(self) -> dict[str, Any]:
        return dict(self._payload)

    def note_dry_run_skip(self, task: str | None, name: str | None) -> None:
        if self.env.observer is not None:
            self.env.observer("dry_run.skip", {"task_name": task, "dry_run_name": name})

    @contextmanager
    def hold_semaphore(
        self, key: str, limit: int, ttl: float, each_index: int | None
    ) -> Iterator[None]:
        """Blocking acquire for ``ctx.throttle`` inside a task body."""
        holder = self._holder(key, each_index)
        acquire = self._acquire(key, limit, ttl, holder)
        for effect in acquire:
            if isinstance(effect, Sleep):
                self.env.clock.sleep(effect.seconds)
        try:
            yield
        finally:
            self._release(key, limit, holder)

    # -- the job --

    def execute(self) -> Generator[Effect, None, Outcome]:
        """Run the job; raises the error of a task that failed for good."""
        if self.job.task_name is not None:
            yield from self._run_sub_job(self.job.task_name)
            return FINISHED
        return (yield from self._run_workflow())

    def _run_workflow(self) -> Generator[Effect, None, Outcome]:
        backend = self.env.backend
        # Resumed at a task (after a reschedule or a crash), the job reads
        # that task's dependencies' outputs when it gets to them: after the
        # wait, for those it enqueued, whose sub-jobs may still be adding
        # outputs. Read here as well, they would be read twice.
        self._unread = _dependencies(self.workflow, self.job.current_task)
        if self._unread:
            wanted = [t.name for t in self.workflow.tasks if t.name not in self._unread]
            state = backend.load_state(self.job.id, wanted)
        else:
            state = backend.load_state(self.job.id)
        self._load_outputs(state)
        self._emit("workflow.start", self._payload)
        started = self.env.clock.monotonic()
        try:
            for task in self.workflow.tasks:
                if task.name in state.tasks:
                    continue
                backend.set_current_task(self.job.id, task.name)
                outcome = yield from self._wait_for_dependencies(task, state)
                if outcome is not None:
                    return outcome
                yield from self._run_task(task, state)
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._emit_failure("workflow", self._payload, exc, started)
            raise
        # No set_current_task(None): finishing the job clears it (one write
        # fewer per job, which is most of a small job's cost on a database).
        self._emit_span("workflow", self._payload, started)
        self._emit("workflow.complete", self._payload)
        return FINISHED

    def _run_task(self, task: Task, state: JobState) -> Generator[Effect, None, None]:
        ctx = self.ctx
        self._enter_task(task, None, None, in_map=False)
        if task.options.condition is not None and not task.options.condition(ctx):
            self._emit(
                "task.skip",
                {
                    **self._payload,
                    "task_name": task.name,
                    "reason": "condition_not_met",
                },
            )
            self._record_task(task.name, "skipped", state)
            return
        if not self.env.synchronous and task.options.enqueue.enabled(ctx):
            yield from self._enqueue(task, state)
            return
        values = self._values(task)
        if self.env.synchronous and task.options.enqueue.enabled(ctx):
            self._emit_enqueue(task, len(values) if task.is_map else 1)
        done = state.iterations.get(task.name, set())
        if (yield from self._run_iterations(task, done, values)):
            state.tasks[task.name] = "done"  # written with its last iteration
        else:
            self._record_task(task.name, "done", state)

    def _record_task(
        self, name: str, outcome: Any, state: JobState, ids: list[str] | None = None
    ) -> None:
        self.env.backend.record_task(self.job.id, name, outcome, ids or ())
        state.tasks[name] = outcome
        if ids is not None:
            state.sub_jobs[name] = ids

    def _values(self, task: Task) -> list[Any]:
        each = task.options.each
        return [] if each is None else list(each(self.ctx))

    def _run_iterations(
        self, task: Task, done: set[int], values: list[Any]
    ) -> Generator[Effect, None, bool]:
        """Run the unfinished iterations; True if the last one recorded the task.

        The task's last iteration records the task as done in the same write
        (one database round trip fewer per task); a task whose last
        iteration had already run is recorded by the caller.
        """
        if not task.is_map:
            if 0 in done:
                return False
            yield from self._iteration(task, None, None, self.job.id, last=True)
            return True
        last = len(values) - 1
        for index, value in enumerate(values):
            if index not in done:
                yield from self._iteration(
                    task, index, value, self.job.id, last=index == last
                )
        return last >= 0 and last not in done

    # -- sub-jobs --

    def _enqueue(self, task: Task, state: JobState) -> Generator[Effect, None, None]:
        backend = self.env.backend
        spec = task.options.enqueue
        # A crash after enqueueing but before recording would enqueue twice
        # on resume; the backend already knows the sub-jobs, so reuse them.
        existing = backend.sub_jobs(self.job.id, task.name)
        if existing:
            ids = [job.id for job in sorted(existing, key=_by_index)]
        else:
            values = self._values(task) if task.is_map else [None]
            if self.env.checkpoints:
                yield Checkpoint("before_enqueue", task.name)
            key = f"{self.job.id}:{task.name}" if spec.concurrency else None
            carried = collect_carried()
            new_jobs = [
                NewJob(
                    workflow=self.workflow.name,
                    arguments=self.job.arguments,
                    queue=spec.queue or self.job.queue,
                    priority=self.job.priority,
                    parent_id=self.job.id,
                    task_name=task.name,
                    each_index=index if task.is_map else None,
                    concurrency_key=key,
                    concurrency_limit=spec.concurrency,
                    metadata=_metadata(_encode_each(task, index, value), carried),
                )
                for index, value in enumerate(values)
            ]
            ids = backend.enqueue(new_jobs, self.env.clock.now())
        self._record_task(task.name, "enqueued", state, ids)
        self._emit_enqueue(task, len(ids))

    def _emit_enqueue(self, task: Task, count: int) -> None:
        self._emit(
            "task.enqueue",
            {**self._payload, "task_name": task.name, "sub_job_count": count},
        )

    def _run_sub_job(self, task_name: str) -> Generator[Effect, None, None]:
        parent_id = self.job.parent_id
        assert parent_id is not None, "a sub-job always has a parent"
        # Read the parent's outputs now, not from the payload: they were
        # persisted before this sub-job was enqueued, so nothing is stale.
        task = self.workflow.get_task(task_name)
        earlier = _earlier_tasks(self.workflow, task_name)
        if earlier:
            self._load_outputs(self.env.backend.load_state(parent_id, earlier))
        value = self.job.metadata.get("each_value")
        yield from self._iteration(task, self.job.each_index, value, parent_id)

    def _wait_for_dependencies(
        self, task: Task, state: JobState
    ) -> Generator[Effect, None, Outcome | None]:
        for dependency in task.depends_on:
            if state.tasks.get(dependency) == "enqueued":
                outcome = yield from self._wait_for(task, dependency, state)
                if outcome is not None:
                    return outcome
            elif dependency in self._unread:
                self._load_outputs(
                    self.env.backend.load_state(self.job.id, [dependency])
                )
            self._unread.discard(dependency)
        return None

    def _wait_for(
        self, task: Task, dependency: str, state: JobState
    ) -> Generator[Effect, None, Outcome | None]:
        policy = task.options.dependency_wait
        clock, backend = self.env.clock, self.env.backend
        payload = {
            **self._payload,
            "task_name": task.name,
            "dependent_task_name": dependency,
        }
        started, polls = clock.monotonic(), 0
        forever = self.env.synchronous or policy.polling_only
        poll = Sleep(policy.poll_interval, "poll_only" if forever else "poll")
        self._emit("dependent.wait.start", payload)
        while True:
            progress = backend.sub_job_progress(self.job.id, dependency)
            if progress.failed:
                raise DependencyFailedError(task.name, dependency, progress.failed)
            if not progress.pending:
                break
            if not forever and clock.monotonic() - started >= policy.poll_timeout:
                run_at = clock.now() + policy.reschedule_delay
                self._emit(
                    "dependent.reschedule",
                    {
                        **payload,
                        "reschedule_delay": policy.reschedule_delay,
                        "poll_count": polls,
                    },
                )
                return Rescheduled(run_at, task.name, dependency)
            polls += 1
            yield poll
        self._emit_span("dependent.wait", payload, started)
        self._emit("dependent.wait.complete", payload)
        # Each sub-job records its output before it settles: outputs read
        # already for every sub-job are final. Fewer means some were stored
        # since (or none read yet), and they are read now.
        if len(self.outputs.get(dependency, ())) < progress.total:
            self._load_outputs(backend.load_state(self.job.id, [dependency]))
        return None

    # -- one iteration: retries around throttle, hooks, body --

    def _enter_task(
        self, task: Task, index: int | None, value: Any, *, in_map: bool
    ) -> None:
        ctx = self.ctx
        ctx._task = task
        ctx._in_map = in_map
        ctx._each_index = index
        ctx._each_value = value
        ctx.retry_count = 0
        ctx._throttle_index = 0
        ctx._dry_run_index = 0
        ctx.dry_run = self._dry_run_for(task)

    def _iteration(
        self,
        task: Task,
        index: int | None,
        value: Any,
        owner_id: str,
        *,
        last: bool = False,
    ) -> Generator[Effect, None, None]:
        self._enter_task(task, index, value, in_map=index is not None)
        policy = task.options.retry
        hooks = self.workflow.hooks_for(task.name)
        attempt = 0
        while True:
            self._attempt_started = self.env.clock.monotonic()
            try:
                data = yield from self._attempt(task, hooks, index)
                break
            except Exception as exc:
                if attempt < policy.count:
                    attempt += 1
                    yield self._retry_wait(task, index, attempt, exc)
                    continue
                for hook in hooks.on_error:
                    hook(self.instance, self.ctx, exc, task)
                self._emit_task_failure(task, index, exc, "task.error", {})
                raise
        if self.env.checkpoints:
            yield _checkpoint(("before_record", task.name, index))
        backend, each_index = self.env.backend, index or 0
        if last:
            backend.record_iteration(
                owner_id, task.name, each_index, data, task_outcome="done"
            )
        else:
            backend.record_iteration(owner_id, task.name, each_index, data)

    def _emit_task_failure(
        self,
        task: Task,
        index: int | None,
        exc: BaseException,
        name: str,
        extra: dict[str, Any],
    ) -> None:
        if not bus._listening:
            return
        payload = {
            **self._task_payload(task, index, self.ctx.retry_count),
            "error_class": type(exc).__name__,
            "error_message": str(exc),
        }
        bus.emit(name, {**payload, **extra})
        self._emit_span("task", payload, self._attempt_started)

    def _retry_wait(
        self, task: Task, index: int | None, attempt: int, exc: Exception
    ) -> Sleep:
        policy = task.options.retry
        delay = policy.delay(attempt, self.env.clock.random)
        extra = {
            "attempt": attempt,
            "max_attempts": policy.max_attempts,
            "delay_seconds": round(delay, 3),
        }
        self._emit_task_failure(task, index, exc, "task.retry", extra)
        self.ctx.retry_count = attempt
        self.ctx._throttle_index = 0
        self.ctx._dry_run_index = 0
        return Sleep(delay, "retry")

    def _attempt(
        self, task: Task, hooks: Hooks, index: int | None
    ) -> Generator[Effect, None, dict[str, Any] | None]:
        throttle = task.options.throttle
        holder = key = ""
        if throttle is not None:
            key = throttle.key or f"{self.workflow.name}:{task.name}"
            holder = self._holder(key, index)
            yield from self._acquire(key, throttle.limit, throttle.ttl, holder)
        try:
            if not self.env.checkpoints:
                return self._call(task, hooks, index)
            yield _checkpoint(("before_body", task.name, index))
            try:
                data = self._call(task, hooks, index)
            except Exception:
                # A failed attempt took its time too (charged here).
                yield _checkpoint(("body_failed", task.name, index))
                raise
            # The body's virtual duration is charged here, while the throttle
            # is still held, as a real body would hold it.
            yield _checkpoint(("after_body", task.name, index))
            return data
        finally:
            if throttle is not None and not self._abandoned:
                self._release(key, throttle.limit, holder)

    def _call(
        self, task: Task, hooks: Hooks, index: int | None
    ) -> dict[str, Any] | None:
        """Hooks and body of one attempt, with its start and success events."""
        payload = None
        if bus._listening:
            payload = self._task_payload(task, index, self.ctx.retry_count)
            bus.emit("task.start", payload, shared=True)
        started = self.env.clock.monotonic()
        data = self._hooks_and_body(task, hooks, index, started)
        if payload is not None:
            self._emit_span("task", payload, started)
            bus.emit("task.complete", payload)
        return data

    def _hooks_and_body(
        self, task: Task, hooks: Hooks, index: int | None, started: float
    ) -> dict[str, Any] | None:
        instance, ctx = self.instance, self.ctx
        if hooks.empty:
            data = self._body(task, index, started)
        else:
            for hook in hooks.before:
                hook(instance, ctx)
            data = self._around(task, hooks.around, index, started)
            for hook in hooks.after:
                hook(instance, ctx)
        return data

    def _around(
        self,
        task: Task,
        chain: tuple[Callable[..., Any], ...],
        index: int | None,
        started: float,
    ) -> dict[str, Any] | None:
        if not chain:
            return self._body(task, index, started)
        result: list[dict[str, Any] | None] = []

        def call() -> Any:
            if result:
                raise AlreadyCalledError(task.name)
            result.append(self._around(task, chain[1:], index, started))
            return result[0]

        hook = chain[0]
        hook(self.instance, self.ctx, call)
        if not result:
            raise NotCalledError(task.name, getattr(hook, "__qualname__", repr(hook)))
        return result[0]

    def _body(
        self, task: Task, index: int | None, started: float
    ) -> dict[str, Any] | None:
        returned = task.fn(self.instance, self.ctx)
        timeout = task.options.timeout
        if timeout is not None:
            elapsed = self.env.clock.monotonic() - started
            if elapsed > timeout:
                raise TaskTimeoutError(task.name, timeout, elapsed)
        if not task.options.output:
            return None
        data, encoded = _normalise(task, returned)
        self.outputs.setdefault(task.name, {})[index or 0] = TaskOutput(
            task.name, index or 0, data
        )
        return encoded

    # -- throttles --

    def _holder(self, key: str, each_index: int | None) -> str:
        # The worker is part of the holder: if a job is ever delivered twice,
        # each copy needs a lease of its own, not a renewal of the other's.
        where = each_index if each_index is not None else "-"
        return f"{self.job.id}@{self.env.worker_id}:{key}:{where}"

    def _acquire(
        self, key: str, limit: int, ttl: float, holder: str
    ) -> Generator[Effect, None, None]:
        backend, clock = self.env.backend, self.env.clock
        payload = {**self._payload, "concurrency_key": key, "concurrency_limit": limit}
        self._emit("throttle.acquire.start", payload)
        started = clock.monotonic()
        while not backend.semaphore_acquire(key, limit, ttl, holder, clock.now()):
            yield Sleep(self.env.throttle_poll_interval, "throttle")
        self._emit_span("throttle.acquire", payload, started)
        self._emit("throttle.acquire.complete", payload)

    def _release(self, key: str, limit: int, holder: str) -> None:
        self.env.backend.semaphore_release(key, holder, self.env.clock.now())
        self._emit(
            "throttle.release",
            {**self._payload, "concurrency_key": key, "concurrency_limit": limit},
        )

    # -- state and events --

    def _load_outputs(self, state: JobState) -> None:
        for name, by_index in state.outputs.items():
            options = self.workflow.get_task(name).options
            declared, plain = options.output, options.plain_output
            # The port's copy is the caller's own, and plain JSON is the
            # value: it is kept as it is when it has the declared fields.
            self.outputs[name] = {
                i: TaskOutput(
                    name,
                    i,
                    data
                    if plain and data.keys() == declared.keys()
                    else _decode_owned(declared, data),
                )
                for i, data in by_index.items()
            }

    def _dry_run_for(self, task: Task) -> bool:
        if self.env.force_dry_run:
            return True
        setting = self._workflow_dry_run
        if setting is True or (callable(setting) and setting(self.ctx)):
            return True
        own = task.options.dry_run
        return bool(own(self.ctx)) if callable(own) else own

    def _task_payload(
        self, task: Task, index: int | None, retry_count: int
    ) -> dict[str, Any]:
        return {
            **self._payload,
            "task_name": task.name,
            "each_index": index,
            "retry_count": retry_count,
        }

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        if bus._listening:
            bus.emit(name, payload, shared=True)

    def _emit_span(self, name: str, payload: dict[str, Any], started: float) -> None:
        if bus._listening:
            elapsed = (self.env.clock.monotonic() - started) * 1000
            bus.emit(name, payload, max(elapsed, 0.0), shared=True)

    def _emit_failure(
        self,
        name: str,
        payload: dict[str, Any],
        exc: BaseException,
        started: float,
        *,
        final: bool = True,
    ) -> None:
        if not bus._listening:
            return
        failed = {
            **payload,
            "error_class": type(exc).__name__,
            "error_message": str(exc),
        }
        if final:
            bus.emit(f"{name}.error", failed)
        self._emit_span(name, failed, started)


def _metadata(each_value: Any, carried: dict[str, str]) -> dict[str, Any]:
    if carried:
        return {"each_value": each_value, "trace_context": carried}
    return {"each_value": each_value}


def _by_index(job: JobRecord) -> int:
    return job.each_index or 0


def _dependencies(cls: type[Workflow], task_name: str | None) -> set[str]:
    """The dependencies of the task a job stopped at (none for a new job, or
    for a task a later version of the workflow no longer has)."""
    if task_name is None or task_name not in cls._jw_task_map:
        return set()
    return set(cls._jw_task_map[task_name].depends_on)


@functools.lru_cache(maxsize=512)
def _earlier_tasks(cls: type[Workflow], task_name: str) -> tuple[str, ...]:
    """The tasks whose outputs a sub-job of ``task_name`` reads.

    Those its parent runs before it: their outputs were stored when the
    sub-job was enqueued. A later task may be running while the sub-job
    waits in the queue; leaving its outputs out keeps what a sub-job sees
    independent of when a worker picks it up, as under ``perform_now``.
    """
    names = [t.name for t in cls.tasks]
    return tuple(names[: names.index(task_name)])


def _workflow_dry_run(cls: type[Workflow]) -> Any:
    # Read through the class: a staticmethod comes back as its function.
    return getattr(cls, "dry_run", False)


def _encode_each(task: Task, index: int, value: Any) -> Any:
    try:
        return _codec.encode(value)
    except _codec.CodecError as exc:
        raise OutputError(
            task.name, None, f"each value #{index} cannot be sent to a sub-job: {exc}"
        ) from None


def _normalise(task: Task, returned: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    declared = task.options.output
    if not isinstance(returned, dict):
        raise OutputError(
            task.name,
            None,
            f"must return a dict with fields {', '.join(declared)}, "
            f"got {type(returned).__name__} {returned!r}",
        )
    data: dict[str, Any] = {}
    encoded: dict[str, Any] = {}
    for name, tp in declared.items():
        value = returned.get(name)
        try:
            if value is not None:
                _codec.check(value, tp)
            encoded[name] = _codec.encode(value)
        except _codec.CodecError as exc:
            raise OutputError(task.name, name, exc.message) from None
        data[name] = value
    return data, encoded


def decode_output(declared: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _codec.decode(data.get(name), declared.get(name, Any))
        for name in declared
    }


def _decode_owned(declared: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """:func:`decode_output` of data fresh from ``load_state``.

    The port hands the caller its own copy, so values of JSON-native types
    are kept as they are instead of copied again (a waiting parent loads
    every iteration's output).
    """
    decoded: dict[str, Any] = {}
    for name, tp in declared.items():
        value = data.get(name)
        if value is None or _codec.is_plain(tp):
            decoded[name] = value
        else:
            decoded[name] = _codec.decode(value, tp)
    return decoded


class Interrupted(Exception):
    """The worker stopped the job at a wait; it goes back to the queue."""


def drive(
    run: Generator[Effect, None, Outcome],
    clock: Clock,
    interrupted: Callable[[], bool] | None = None,
) -> Outcome:
    """Run a job generator to the end on a clock: sleeps sleep, checkpoints pass."""
    try:
        effect = next(run)
        while True:
            if type(effect) is Sleep:
                if interrupted is not None and interrupted():
                    run.close()
                    raise Interrupted
                clock.sleep(effect.seconds)
            effect = run.send(None)
    except StopIteration as stop:
        outcome: Outcome = stop.value
        return outcome


def perform(env: RunEnv, job: JobRecord) -> Outcome | BaseException:
    """Run a claimed job and settle it on the backend: finish, fail or reschedule.

    Returns the outcome, or the exception the job failed with. A job whose
    workflow is not registered fails with UnknownWorkflowError. An
    interrupted job is handed back to the queue unfinished. A
    :class:`BackendUnavailableError` is raised, not recorded: the job is not
    at fault, and the worker gives it back once the backend answers.
    """
    backend, clock = env.backend, env.clock
    run: JobRun | None = None
    try:
        # Inside the try: an unknown workflow or a broken payload fails
        # the job here, when the run is built.
        run = JobRun(env, job)
        outcome = drive(run.execute(), clock, env.interrupted)
    except Interrupted as exc:
        if env.hand_back is not None:
            env.hand_back(job)
        else:
            backend.release_claimed(env.worker_id, clock.now())
        return exc
    except BackendUnavailableError:
        raise
    except Exception as exc:
        backend.fail(job.id, error_of(exc), clock.now(), worker_id=env.worker_id)
        return exc
    finally:
        if run is not None:
            run.dispose()
    # Settled under the claimer's id: should this worker have been presumed
    # dead and the job claimed again, the backend ignores the late settle.
    if isinstance(outcome, Rescheduled):
        backend.reschedule(job.id, outcome.run_at, clock.now(), worker_id=env.worker_id)
    elif env.finish is not None:
        env.finish(job.id, clock.now())
    else:
        backend.finish(job.id, clock.now(), worker_id=env.worker_id)
    return outcome


def error_of(exc: BaseException) -> JobError:
    return JobError(type(exc).__name__, str(exc))
