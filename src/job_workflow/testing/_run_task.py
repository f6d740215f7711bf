"""``run_task``: run one task of a workflow against outputs you choose.

It uses the real runner, not a copy of it: a throwaway job on an inline
:class:`MemoryBackend` gets the given upstream outputs recorded as its
progress, and the runner then executes just the chosen task's iterations,
with its hooks, retries, throttle, timeout and output checks. What the
task returns comes back through the backend, encoded and decoded as a
dependent task would read it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeAlias

from job_workflow._runtime import use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core import _arguments, _codec, _runner
from job_workflow.core._context import TaskOutput
from job_workflow.core._task import Task
from job_workflow.core._workflow import Workflow
from job_workflow.core.ports import NewJob

__all__ = ["run_task"]

OutputData: TypeAlias = Mapping[str, Any] | TaskOutput
"""One iteration's output: a dict of fields, or a ``TaskOutput``."""

GivenOutputs: TypeAlias = OutputData | Sequence[OutputData]
"""A task's outputs: a list in each_index order, or one item for a plain task."""

_WORKER = "run_task"


def run_task(
    workflow: type[Workflow],
    task_name: str,
    *,
    arguments: Mapping[str, Any] | None = None,
    outputs: Mapping[str, GivenOutputs] | None = None,
    each_value: Any = None,
    each_index: int | None = None,
    clock: ManualClock | None = None,
    dry_run: bool = False,
) -> TaskOutput | list[TaskOutput]:
    """Run one task of ``workflow`` and return what it output.

    - ``arguments``: the workflow's arguments, validated as by
      ``perform_now`` (required ones must be given).
    - ``outputs``: upstream outputs the task reads through ``ctx.output``:
      task name -> a list of dicts (or ``TaskOutput``) in each_index order,
      or one dict for a plain task. Undeclared fields are an error; missing
      declared fields are ``None``.
    - ``each_value`` / ``each_index``: for a map task, run one iteration. With
      ``each_value`` it runs on that value (at ``each_index``, default 0);
      with only ``each_index`` it runs that iteration of ``each(ctx)``; with
      neither, every iteration of ``each(ctx)`` runs. ``None`` means "not
      given": to run an iteration whose value is ``None``, pick it by index.
    - ``clock``: the ``ManualClock`` to run on (a new one by default); read
      retry delays back from ``clock.sleeps``.
    - ``dry_run``: run as in a dry run (``ctx.dry_run`` true).

    The task's hooks (before, around, after, on_error), retries, throttle,
    timeout and output checks apply; its ``condition`` and ``enqueue``
    options do not (the task runs, in this thread). Nothing else of the
    workflow runs. While it runs, an inline memory backend and the manual
    clock are the process backend and clock, so a workflow started from
    the task body runs inline on them too.

    Returns a ``TaskOutput`` for a plain task, and a list of ``TaskOutput``
    in each_index order for a map task, even for one iteration. A task
    without ``output=`` gives empty ``TaskOutput`` data. If the task fails
    for good, its error is raised. An unknown task name raises
    ``UnknownTaskError``.
    """
    task = workflow.get_task(task_name)
    clock = clock if clock is not None else ManualClock()
    backend = MemoryBackend("inline", clock=clock)
    values = _arguments.validate(
        workflow.arguments, dict(arguments or {}), workflow.name
    )
    spec = NewJob(
        workflow=workflow.name,
        arguments=_arguments.encode(values),
        queue=workflow.queue,
    )
    job = backend.start_inline(spec, _WORKER, clock.now())
    for name, given in (outputs or {}).items():
        _record_outputs(backend, job.id, workflow, name, given)
    env = _runner.RunEnv(
        backend=backend,
        clock=clock,
        worker_id=_WORKER,
        synchronous=True,
        force_dry_run=dry_run,
    )
    with use_backend(backend), use_clock(clock):
        run = _runner.JobRun(env, job)
        run._load_outputs(backend.load_state(job.id))
        iterations = _iterations(run, task, each_value, each_index)
        _runner.drive(_steps(run, task, iterations), clock)
    results = _results(backend, job.id, task, [index for index, _ in iterations])
    return results if task.is_map else results[0]


def _record_outputs(
    backend: MemoryBackend,
    job_id: str,
    workflow: type[Workflow],
    name: str,
    given: GivenOutputs,
) -> None:
    """Persist ``given`` as the outputs of task ``name``, as the runner would."""
    task = workflow.get_task(name)
    items = [given] if isinstance(given, Mapping | TaskOutput) else list(given)
    for index, item in enumerate(items):
        data = item.data if isinstance(item, TaskOutput) else item
        if not isinstance(data, Mapping):
            raise TypeError(
                f"outputs[{name!r}][{index}] must be a dict of output fields, "
                f"got {type(data).__name__} {data!r}"
            )
        encoded = _encode_output(task, index, data)
        backend.record_iteration(job_id, task.name, index, encoded)


def _encode_output(task: Task, index: int, data: Mapping[str, Any]) -> dict[str, Any]:
    declared = task.options.output
    where = f"outputs[{task.name!r}][{index}]"
    unknown = sorted(set(data) - set(declared))
    if unknown:
        fields = ", ".join(declared) or "none"
        raise ValueError(
            f"{where} has field(s) {', '.join(map(repr, unknown))} that task "
            f"{task.name!r} does not declare (declared: {fields})"
        )
    encoded: dict[str, Any] = {}
    for field, tp in declared.items():
        value = data.get(field)
        try:
            if value is not None:
                _codec.check(value, tp)
            encoded[field] = _codec.encode(value)
        except _codec.CodecError as exc:
            raise ValueError(f"{where} field {field!r}: {exc.message}") from None
    return encoded


def _iterations(
    run: _runner.JobRun, task: Task, each_value: Any, each_index: int | None
) -> list[tuple[int | None, Any]]:
    """The (each_index, each_value) pairs to run: ``(None, None)`` for a plain task."""
    if not task.is_map:
        if each_value is not None or each_index is not None:
            raise ValueError(
                f"task {task.name!r} is not a map task (it has no each=); "
                "each_value and each_index only apply to map tasks"
            )
        return [(None, None)]
    if each_index is not None and (
        isinstance(each_index, bool)
        or not isinstance(each_index, int)
        or each_index < 0
    ):
        raise ValueError(f"each_index must be an int >= 0, got {each_index!r}")
    if each_value is not None:
        return [(each_index or 0, each_value)]
    run._enter_task(task, None, None, in_map=False)
    values = run._values(task)
    if each_index is None:
        return list(enumerate(values))
    if each_index >= len(values):
        raise ValueError(
            f"each_index={each_index} but each= of task {task.name!r} gave "
            f"{len(values)} value(s)"
        )
    return [(each_index, values[each_index])]


def _steps(
    run: _runner.JobRun, task: Task, iterations: list[tuple[int | None, Any]]
) -> Generator[_runner.Effect, None, _runner.Outcome]:
    for index, value in iterations:
        yield from run._iteration(task, index, value, run.job.id)
    return _runner.FINISHED


def _results(
    backend: MemoryBackend, job_id: str, task: Task, indices: list[int | None]
) -> list[TaskOutput]:
    stored = backend.load_state(job_id, [task.name]).outputs.get(task.name, {})
    declared = task.options.output
    results = []
    for index in indices:
        position = index or 0
        data = stored.get(position)
        decoded = {} if data is None else _runner.decode_output(declared, data)
        results.append(TaskOutput(task.name, position, decoded))
    return results
