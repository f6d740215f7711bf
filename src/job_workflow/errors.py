"""Errors users can catch.

One tree, rooted at :class:`WorkflowError`::

    WorkflowError
    ├── WorkflowDefinitionError          (raised when a class is defined)
    │   ├── CircularDependencyError
    │   ├── UnknownTaskError             (also LookupError)
    │   ├── DuplicateTaskError
    │   └── InvalidOptionError           (also ValueError)
    ├── ArgumentValidationError          (also TypeError)
    ├── FrozenArgumentsError             (also AttributeError)
    ├── ContextError                     (also RuntimeError)
    ├── OutputError
    ├── TaskTimeoutError                 (also TimeoutError)
    ├── NotCalledError
    ├── AlreadyCalledError
    ├── DependencyFailedError
    ├── UnknownWorkflowError
    ├── WorkflowNotFoundError
    └── InvariantViolation

Builtin mix-ins let callers that expect ``TypeError`` for bad arguments (and
so on) keep working. Every message names the thing that is wrong and, where
one exists, the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AlreadyCalledError",
    "ArgumentValidationError",
    "CircularDependencyError",
    "ContextError",
    "DependencyFailedError",
    "DuplicateTaskError",
    "FrozenArgumentsError",
    "InvalidOptionError",
    "InvariantViolation",
    "NotCalledError",
    "OutputError",
    "TaskTimeoutError",
    "UnknownTaskError",
    "UnknownWorkflowError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowNotFoundError",
]


class WorkflowError(Exception):
    """Base of every error this library raises on purpose."""


class WorkflowDefinitionError(WorkflowError):
    """A workflow class is wrong; raised when the class is defined."""


class CircularDependencyError(WorkflowDefinitionError):
    """Tasks depend on each other in a cycle; ``cycle`` is the closed path."""

    def __init__(self, workflow: str, cycle: Sequence[str]) -> None:
        self.workflow = workflow
        self.cycle = list(cycle)
        path = " -> ".join(repr(name) for name in self.cycle)
        super().__init__(
            f"circular dependency in workflow {workflow!r}: {path}; "
            "remove one of these depends_on edges"
        )


class UnknownTaskError(WorkflowDefinitionError, LookupError):
    """A name does not match any task of the workflow."""

    def __init__(
        self, name: str, *, workflow: str, where: str, suggestion: str | None = None
    ) -> None:
        self.name = name
        self.workflow = workflow
        self.suggestion = suggestion
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"unknown task {name!r} in {where} of {workflow!r}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateTaskError(WorkflowDefinitionError):
    """Two tasks of one workflow share a name."""

    def __init__(self, name: str, *, workflow: str) -> None:
        self.name = name
        self.workflow = workflow
        super().__init__(
            f"task {name!r} is defined twice in workflow {workflow!r}; "
            "rename one of them (or pass task(name=...))"
        )


class InvalidOptionError(WorkflowDefinitionError, ValueError):
    """An option has a value of the wrong kind or range."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"invalid {option}: {message}")


class ArgumentValidationError(WorkflowError, TypeError):
    """Workflow arguments are unknown, missing or of the wrong type."""

    def __init__(self, argument: str, message: str, *, workflow: str = "") -> None:
        self.argument = argument
        self.workflow = workflow
        where = f" of {workflow!r}" if workflow else ""
        super().__init__(f"argument {argument!r}{where}: {message}")


class FrozenArgumentsError(WorkflowError, AttributeError):
    """Arguments are immutable; tasks pass data on through outputs."""

    def __init__(self, argument: str) -> None:
        self.argument = argument
        super().__init__(
            f"cannot set argument {argument!r}: arguments are read-only; "
            "return the value as a task output instead"
        )


class ContextError(WorkflowError, RuntimeError):
    """A context feature was used where it does not apply."""


class OutputError(WorkflowError):
    """A task's return value does not fit its ``output`` declaration."""

    def __init__(self, task: str, field: str | None, message: str) -> None:
        self.task = task
        self.field = field
        where = f"output field {field!r} of task {task!r}" if field else repr(task)
        super().__init__(f"{where}: {message}")


class TaskTimeoutError(WorkflowError, TimeoutError):
    """One attempt of a task took longer than its ``timeout``."""

    def __init__(self, task: str, timeout: float, elapsed: float) -> None:
        self.task = task
        self.timeout = timeout
        self.elapsed = elapsed
        super().__init__(
            f"task {task!r} attempt took {elapsed:.3f}s, over its timeout of "
            f"{timeout:g}s"
        )


class NotCalledError(WorkflowError):
    """An ``around`` hook returned without calling ``call()``."""

    def __init__(self, task: str, hook: str) -> None:
        self.task = task
        self.hook = hook
        super().__init__(
            f"around hook {hook!r} for task {task!r} did not call call(); "
            "the task never ran"
        )


class AlreadyCalledError(WorkflowError):
    """An ``around`` hook called ``call()`` more than once."""

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"call() for task {task!r} was called more than once")


class DependencyFailedError(WorkflowError):
    """Sub-jobs a task waited for failed for good."""

    def __init__(self, task: str, dependency: str, failed_job_ids: Sequence[str]):
        self.task = task
        self.dependency = dependency
        self.failed_job_ids = list(failed_job_ids)
        super().__init__(
            f"task {task!r} cannot run: {len(self.failed_job_ids)} sub-job(s) of "
            f"{dependency!r} failed: {', '.join(self.failed_job_ids)}"
        )


class UnknownWorkflowError(WorkflowError):
    """A job names a workflow that this process has not registered."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown workflow {name!r}: no Workflow class with this name is "
            "registered in this process; import the module that defines it "
            "(job-workflow worker --import ...)"
        )


class WorkflowNotFoundError(WorkflowError, LookupError):
    """No job with this id exists on the backend."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no workflow job with id {job_id!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class InvariantViolation(WorkflowError, AssertionError):
    """A simulation broke one of the invariants ``check()`` verifies."""
