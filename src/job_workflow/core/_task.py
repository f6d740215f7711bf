"""The ``@task`` and hook decorators and the task objects they produce.

A decorator returns a *declaration*: what the class body said, options
already validated. When the workflow class is complete, each declaration is
resolved into a :class:`Task` with its full name and resolved dependencies.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from job_workflow.core import _codec
from job_workflow.core._options import (
    DependencyWait,
    EnqueueSpec,
    Predicate,
    RetryPolicy,
    ThrottleSpec,
    bool_or_callable,
    optional_callable,
    output_option,
    timeout_option,
)
from job_workflow.errors import InvalidOptionError

TaskFunction = Callable[[Any, Any], Any]
HookKind = Literal["before", "after", "around", "on_error"]

# Declarations remember the order they were written in; namespaces nest class
# bodies, so one global counter gives source order across all of them.
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Validated options of one task (the ``@task`` keyword arguments)."""

    each: Callable[[Any], Iterable[Any]] | None = None
    enqueue: EnqueueSpec = field(default_factory=EnqueueSpec)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    output: dict[str, Any] = field(default_factory=dict)
    condition: Predicate | None = None
    throttle: ThrottleSpec | None = None
    timeout: float | None = None
    dependency_wait: DependencyWait = field(default_factory=DependencyWait)
    dry_run: bool | Predicate = False
    # Whether every output field's JSON is its value: outputs read back
    # from the backend then need no decoding (a waiting parent reads every
    # iteration's output each time it resumes).
    plain_output: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plain = all(_codec.is_plain(tp) for tp in self.output.values())
        object.__setattr__(self, "plain_output", plain)


class TaskDeclaration:
    """What ``@task`` returns in a class body; resolved per workflow later."""

    def __init__(
        self,
        fn: TaskFunction,
        name: str | None,
        depends_on: Sequence[Any],
        options: TaskOptions,
    ) -> None:
        self.fn = fn
        self.local_name: str = name or str(getattr(fn, "__name__", ""))
        self.explicit_name = name is not None
        self.depends_on = tuple(depends_on)
        self.options = options
        self.order = next(_counter)
        self.namespace = ""  # set by the namespace or workflow that owns it

    def __set_name__(self, owner: type, attr: str) -> None:
        if not self.explicit_name:
            self.local_name = attr

    @property
    def full_name(self) -> str:
        return f"{self.namespace}{self.local_name}"

    def __repr__(self) -> str:
        return f"<task {self.full_name!r}>"


@dataclass(frozen=True, slots=True, eq=False)
class Task:
    """A task of one workflow class, with its full name and dependencies."""

    name: str
    fn: TaskFunction
    depends_on: tuple[str, ...]
    options: TaskOptions
    index: int
    declaration: TaskDeclaration

    @property
    def is_map(self) -> bool:
        return self.options.each is not None

    @property
    def short_name(self) -> str:
        return self.name.rsplit(":", 1)[-1]

    def __repr__(self) -> str:
        return f"<Task {self.name!r}>"


@overload
def task(fn: TaskFunction, /) -> Any: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    depends_on: Sequence[Any] = (),
    each: Callable[[Any], Iterable[Any]] | None = None,
    enqueue: Any = None,
    retry: Any = None,
    output: Any = None,
    condition: Any = None,
    throttle: Any = None,
    timeout: Any = None,
    dependency_wait: Any = None,
    dry_run: Any = False,
) -> Callable[[TaskFunction], Any]: ...


def task(
    fn: TaskFunction | None = None,
    /,
    *,
    name: str | None = None,
    depends_on: Sequence[Any] = (),
    each: Callable[[Any], Iterable[Any]] | None = None,
    enqueue: Any = None,
    retry: Any = None,
    output: Any = None,
    condition: Any = None,
    throttle: Any = None,
    timeout: Any = None,
    dependency_wait: Any = None,
    dry_run: Any = False,
) -> Any:
    """Declare a method ``(self, ctx)`` as a task; usable bare or with options.

    Options are validated here, so a bad value fails where it is written.
    """
    if name is not None and (not isinstance(name, str) or not name or ":" in name):
        raise InvalidOptionError(
            "name", f"expected a non-empty str without ':', got {name!r}"
        )
    if isinstance(depends_on, str) or not isinstance(depends_on, Sequence | set):
        raise InvalidOptionError(
            "depends_on", f"expected a list of tasks or task names, got {depends_on!r}"
        )
    options = TaskOptions(
        each=optional_callable("each", each),
        enqueue=EnqueueSpec.from_option(enqueue),
        retry=RetryPolicy.from_option(retry),
        output=output_option(output),
        condition=optional_callable("condition", condition),
        throttle=ThrottleSpec.from_option(throttle),
        timeout=timeout_option(timeout),
        dependency_wait=DependencyWait.from_option(dependency_wait),
        dry_run=bool_or_callable("dry_run", dry_run),
    )

    def decorate(function: TaskFunction) -> Any:
        if not callable(function):
            raise InvalidOptionError("task", f"expected a function, got {function!r}")
        return TaskDeclaration(function, name, list(depends_on), options)

    return decorate if fn is None else decorate(fn)


class HookDeclaration:
    """What a hook decorator returns in a class body."""

    def __init__(
        self, kind: HookKind, targets: tuple[Any, ...], fn: Callable[..., Any]
    ):
        self.kind = kind
        self.targets = targets
        self.fn = fn
        self.order = next(_counter)
        self.namespace = ""

    @property
    def name(self) -> str:
        return getattr(self.fn, "__qualname__", repr(self.fn))


def _hook(
    kind: HookKind, targets: tuple[Any, ...]
) -> Callable[[Callable[..., Any]], Any]:
    for target in targets:
        if not isinstance(target, str | TaskDeclaration):
            raise InvalidOptionError(
                kind, f"expected task names or tasks, got {target!r}"
            )

    def decorate(fn: Callable[..., Any]) -> Any:
        return HookDeclaration(kind, targets, fn)

    return decorate


def before(*tasks: Any) -> Callable[[Callable[..., Any]], Any]:
    """Run ``(self, ctx)`` before each iteration of the named tasks (all if none)."""
    return _hook("before", tasks)


def after(*tasks: Any) -> Callable[[Callable[..., Any]], Any]:
    """Run ``(self, ctx)`` after each successful iteration of the named tasks."""
    return _hook("after", tasks)


def around(*tasks: Any) -> Callable[[Callable[..., Any]], Any]:
    """Wrap each iteration as ``(self, ctx, call)``; ``call()`` runs the rest once."""
    return _hook("around", tasks)


def on_error(*tasks: Any) -> Callable[[Callable[..., Any]], Any]:
    """Observe ``(self, ctx, error, task)`` when an iteration fails for good."""
    return _hook("on_error", tasks)
