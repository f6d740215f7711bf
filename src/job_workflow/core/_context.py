"""What a task sees: ``ctx`` with arguments, outputs, iteration and helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from job_workflow.core._arguments import Arguments
from job_workflow.core._events import bus
from job_workflow.errors import ContextError

if TYPE_CHECKING:
    from job_workflow.core._runner import JobRun
    from job_workflow.core._task import Task
    from job_workflow.core._workflow import Workflow

T = TypeVar("T")


class TaskOutput:
    """One iteration's output: declared fields as attributes, all in ``data``."""

    __slots__ = ("data", "each_index", "task_name")

    def __init__(self, task_name: str, each_index: int, data: dict[str, Any]) -> None:
        self.task_name = task_name
        self.each_index = each_index
        self.data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(
                f"task {self.task_name!r} has no output field {name!r} "
                f"(declared: {', '.join(self.data) or 'none'})"
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskOutput):
            return NotImplemented
        return (self.task_name, self.each_index, self.data) == (
            other.task_name,
            other.each_index,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TaskOutput({self.task_name!r}, {self.each_index}, {self.data!r})"


class Output(Mapping[str, list[TaskOutput]]):
    """Task name -> outputs in each_index order, for every task of a workflow.

    A task that has not run (or declares no ``output``) maps to ``[]``; a
    name that is not a task of the workflow raises UnknownTaskError.
    """

    __slots__ = ("_outputs", "_workflow")

    def __init__(
        self, workflow: type[Workflow], outputs: dict[str, dict[int, TaskOutput]]
    ) -> None:
        self._workflow = workflow
        self._outputs = outputs

    def __getitem__(self, task_name: str) -> list[TaskOutput]:
        by_index = self._outputs.get(task_name)
        if by_index is None:
            self._workflow.get_task(task_name)  # raises UnknownTaskError
            return []
        return [by_index[i] for i in sorted(by_index)]

    def __iter__(self) -> Iterator[str]:
        return iter(t.name for t in self._workflow.tasks)

    def __len__(self) -> int:
        return len(self._workflow.tasks)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """Plain data: task name -> list of output dicts (declared tasks only)."""
        return {
            name: [o.data for o in self[name]]
            for name in self
            if self._workflow.get_task(name).options.output
        }

    def __repr__(self) -> str:
        return f"Output({self.to_dict()!r})"


class Context:
    """The task's view of its run. One object per job, moved between iterations."""

    __slots__ = (
        "_dry_run_index",
        "_each_index",
        "_each_value",
        "_in_map",
        "_run",
        "_task",
        "_throttle_index",
        "arguments",
        "dry_run",
        "retry_count",
    )

    def __init__(self, run: JobRun, arguments: Arguments) -> None:
        self._run = run
        self.arguments = arguments
        self._task: Task | None = None
        self._in_map = False
        self._each_value: Any = None
        self._each_index: int | None = None
        self.retry_count = 0
        self.dry_run = False
        self._throttle_index = 0
        self._dry_run_index = 0

    # -- what tasks read --

    @property
    def job_id(self) -> str:
        """The id of the job running this code (a sub-job has its own id)."""
        return self._run.job.id

    @property
    def output(self) -> Output:
        return Output(self._run.workflow, self._run.outputs)

    @property
    def task_name(self) -> str | None:
        return self._task.name if self._task else None

    @property
    def each_value(self) -> Any:
        if not self._in_map:
            raise ContextError(self._outside_map("each_value"))
        return self._each_value

    @property
    def each_index(self) -> int:
        if not self._in_map or self._each_index is None:
            raise ContextError(self._outside_map("each_index"))
        return self._each_index

    def _outside_map(self, what: str) -> str:
        where = f"task {self._task.name!r}" if self._task else "this place"
        return (
            f"ctx.{what} is only available inside a map task (one with each=); "
            f"{where} is not one"
        )

    # -- helpers --

    def skip_in_dry_run(
        self, action: Callable[[], T], name: str | None = None, fallback: Any = None
    ) -> T | Any:
        """Call ``action()`` for real, or return ``fallback`` in a dry run."""
        index = self._dry_run_index
        self._dry_run_index += 1
        if not self.dry_run:
            return action()
        if bus.wants("dry_run.skip"):
            bus.emit(
                "dry_run.skip",
                {
                    **self._run.base_payload(),
                    "task_name": self.task_name,
                    "each_index": self._each_index,
                    "dry_run_name": name,
                    "dry_run_index": index,
                    "dry_run": True,
                },
            )
        self._run.note_dry_run_skip(self.task_name, name)
        return fallback

    @contextmanager
    def throttle(
        self, limit: int, key: str | None = None, ttl: float = 180
    ) -> Iterator[None]:
        """Hold a backend semaphore of ``limit`` holders around the block."""
        if self._task is None:
            raise ContextError("ctx.throttle() can only be used inside a task")
        if key is None:
            key = f"{self._run.workflow.name}:{self._task.name}:{self._throttle_index}"
        self._throttle_index += 1
        with self._run.hold_semaphore(key, limit, ttl, self._each_index):
            yield

    @contextmanager
    def instrument(self, operation: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Report a custom span named ``operation``; the yielded dict is its payload."""
        payload = {
            **self._run.base_payload(),
            "task_name": self.task_name,
            "each_index": self._each_index,
            **fields,
        }
        payload["operation"] = operation
        bus.emit(f"{operation}.start", payload, shared=True)
        clock = self._run.env.clock
        started = clock.monotonic()
        try:
            yield payload
        except BaseException as exc:
            payload["error_class"] = type(exc).__name__
            payload["error_message"] = str(exc)
            raise
        finally:
            bus.emit(operation, payload, (clock.monotonic() - started) * 1000)

    def __repr__(self) -> str:
        return (
            f"<Context job_id={self.job_id!r} task={self.task_name!r} "
            f"each_index={self._each_index!r}>"
        )
