"""Workflow classes: definition, validation at class creation, the registry.

A ``Workflow`` subclass is checked completely when its class statement ends
(options, names, dependencies, cycles, hooks), so a broken workflow never
reaches a queue. Workers find workflow classes through the registry here
and nowhere else: nothing is imported from a name read from a database.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from job_workflow.core import _arguments, _graph
from job_workflow.core._arguments import ArgumentDef
from job_workflow.core._schedule import Schedule, to_cron
from job_workflow.core._task import HookDeclaration, Task, TaskDeclaration
from job_workflow.errors import (
    CircularDependencyError,
    DuplicateTaskError,
    InvalidOptionError,
    UnknownTaskError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
)

if TYPE_CHECKING:
    from job_workflow.core._launch import Launcher


class _ClassBody(dict[str, Any]):
    """Class namespace that refuses a second task under one attribute name.

    Python would silently keep the last ``def`` of a name; for tasks that
    hides a whole step, so it is an error at definition.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, TaskDeclaration) and isinstance(
            self.get(key), TaskDeclaration
        ):
            owner = self.get("__qualname__", "?")
            raise DuplicateTaskError(value.local_name, workflow=str(owner))
        super().__setitem__(key, value)


class _DefinitionMeta(type):
    @classmethod
    def __prepare__(
        mcs, name: str, bases: tuple[type, ...], /, **kwargs: Any
    ) -> MutableMapping[str, object]:
        return _ClassBody()

    def __new__(
        mcs,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        **kwargs: Any,
    ) -> _DefinitionMeta:
        return super().__new__(mcs, name, bases, dict(namespace), **kwargs)


class Namespace(metaclass=_DefinitionMeta):
    """Groups tasks: a nested ``class payment(Namespace)`` prefixes ``payment:``."""


@dataclass(frozen=True, slots=True)
class Hooks:
    """Hook functions that apply to one task, each list in definition order."""

    before: tuple[Callable[..., Any], ...] = ()
    after: tuple[Callable[..., Any], ...] = ()
    around: tuple[Callable[..., Any], ...] = ()
    on_error: tuple[Callable[..., Any], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.before or self.after or self.around or self.on_error)


_NO_HOOKS = Hooks()


class _Registry:
    """Workflow name -> class; thread-safe because workers resolve from threads."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Workflow]] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Workflow]) -> None:
        with self._lock:
            held = self._classes.get(cls.name)
            if held is not None and _origin(held) != _origin(cls):
                raise WorkflowDefinitionError(
                    f"workflow name {cls.name!r} is already taken by "
                    f"{_origin(held)}; set name = '...' in {_origin(cls)} "
                    "to a name of its own"
                )
            self._classes[cls.name] = cls

    def get(self, name: str) -> type[Workflow]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownWorkflowError(name) from None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._classes)

    def classes(self) -> list[type[Workflow]]:
        with self._lock:
            return [self._classes[name] for name in sorted(self._classes)]


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


registry = _Registry()


class Workflow(metaclass=_DefinitionMeta):
    """Base class of every workflow; subclass it and declare tasks.

    Class attributes: ``name`` (registry key, default ``module.qualname``),
    ``queue`` (default ``"default"``), ``dry_run`` (bool or ``(ctx) -> bool``).
    """

    name: ClassVar[str] = ""
    queue: ClassVar[str] = "default"
    dry_run: ClassVar[Any] = False

    # Filled in by __init_subclass__; read-only for users.
    tasks: ClassVar[tuple[Task, ...]] = ()
    arguments: ClassVar[Mapping[str, ArgumentDef]] = {}
    schedules: ClassVar[Mapping[str, Schedule]] = {}
    _jw_task_map: ClassVar[dict[str, Task]] = {}
    _jw_hooks: ClassVar[dict[str, Hooks]] = {}
    _jw_launcher: ClassVar[Launcher | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = _origin(cls)
        elif not isinstance(cls.name, str) or not cls.name:
            raise InvalidOptionError(
                "name", f"expected a non-empty str, got {cls.name!r}"
            )
        if not isinstance(cls.queue, str) or not cls.queue:
            raise InvalidOptionError(
                "queue", f"expected a non-empty str, got {cls.queue!r}"
            )
        cls.arguments = _collect_arguments(cls)
        cls.tasks, cls._jw_task_map = _build_tasks(cls)
        cls._jw_hooks = _build_hooks(cls)
        cls.schedules = {}
        registry.register(cls)

    # -- running (delegated to the runtime so the core stays free of I/O) --

    @classmethod
    def perform_now(cls, **arguments: Any) -> Any:
        """Run the workflow in this thread and return its ``WorkflowRun``."""
        return _launcher(cls).perform_now(cls, arguments, {})

    @classmethod
    def perform_later(cls, **arguments: Any) -> Any:
        """Enqueue the workflow and return a ``JobHandle``."""
        return _launcher(cls).perform_later(cls, arguments, {})

    @classmethod
    def set(cls, **options: Any) -> Any:
        """A caller with ``queue``, ``wait``, ``priority`` or ``backend`` set."""
        return _launcher(cls).configured(cls, options)

    # -- introspection used by the runner --

    @classmethod
    def get_task(cls, name: str) -> Task:
        try:
            return cls._jw_task_map[name]
        except KeyError:
            raise _unknown(cls.name, name, cls._jw_task_map, "this workflow") from None

    @classmethod
    def hooks_for(cls, task_name: str) -> Hooks:
        return cls._jw_hooks.get(task_name, _NO_HOOKS)


def _launcher(cls: type[Workflow]) -> Launcher:
    launcher = Workflow._jw_launcher
    if launcher is None:  # pragma: no cover - installed by `import job_workflow`
        raise RuntimeError("job_workflow runtime is not installed")
    return launcher


def _collect_arguments(cls: type[Workflow]) -> dict[str, ArgumentDef]:
    found: dict[str, ArgumentDef] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, ArgumentDef):
                found[attr] = value
    return found


def _declarations(cls: type[Workflow]) -> list[TaskDeclaration | HookDeclaration]:
    """Every task and hook declaration of the class, bases first."""
    found: dict[str, TaskDeclaration | HookDeclaration] = {}
    hooks: list[HookDeclaration] = []
    for klass in reversed(cls.__mro__):
        if not issubclass(klass, Workflow):
            continue
        own: set[str] = set()  # a subclass may override a base task, not twice
        for decl in _walk(vars(klass), ""):
            if isinstance(decl, TaskDeclaration):
                if decl.full_name in own:
                    raise DuplicateTaskError(decl.full_name, workflow=cls.name)
                own.add(decl.full_name)
                found[decl.full_name] = decl
            elif decl not in hooks:
                hooks.append(decl)
    return sorted([*found.values(), *hooks], key=lambda d: d.order)


def _walk(
    body: Mapping[str, Any], prefix: str
) -> Iterator[TaskDeclaration | HookDeclaration]:
    for value in body.values():
        if isinstance(value, TaskDeclaration | HookDeclaration):
            value.namespace = prefix
            yield value
        elif isinstance(value, type) and issubclass(value, Namespace):
            yield from _walk(vars(value), f"{prefix}{value.__name__}:")


def _build_tasks(cls: type[Workflow]) -> tuple[tuple[Task, ...], dict[str, Task]]:
    decls = [d for d in _declarations(cls) if isinstance(d, TaskDeclaration)]
    by_name: dict[str, TaskDeclaration] = {}
    for decl in decls:
        if decl.full_name in by_name:
            raise DuplicateTaskError(decl.full_name, workflow=cls.name)
        by_name[decl.full_name] = decl
    edges = {
        decl.full_name: [
            _resolve(
                cls.name,
                by_name,
                dep,
                decl.namespace,
                f"depends_on of task {decl.full_name!r}",
            )
            for dep in decl.depends_on
        ]
        for decl in decls
    }
    cycle = _graph.find_cycle(edges)
    if cycle is not None:
        raise CircularDependencyError(cls.name, cycle)
    names = [decl.full_name for decl in decls]
    order = _graph.topological_order(names, edges)
    tasks = tuple(
        Task(
            name=name,
            fn=by_name[name].fn,
            depends_on=tuple(dict.fromkeys(edges[name])),
            options=by_name[name].options,
            index=names.index(name),
            declaration=by_name[name],
        )
        for name in order
    )
    return tasks, {t.name: t for t in tasks}


def _resolve(
    workflow: str,
    by_name: Mapping[str, TaskDeclaration],
    ref: Any,
    namespace: str,
    where: str,
) -> str:
    if isinstance(ref, TaskDeclaration):
        if by_name.get(ref.full_name) is ref:
            return ref.full_name
        raise _unknown(workflow, ref.full_name, by_name, where)
    if not isinstance(ref, str):
        raise InvalidOptionError(
            "depends_on", f"expected a task or a task name, got {ref!r}"
        )
    name = ref.lstrip(":")
    if name in by_name:
        return name
    if namespace and f"{namespace}{name}" in by_name:
        return f"{namespace}{name}"
    raise _unknown(workflow, name, by_name, where)


def _unknown(
    workflow: str, name: str, known: Mapping[str, Any], where: str
) -> UnknownTaskError:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return UnknownTaskError(
        name, workflow=workflow, where=where, suggestion=close[0] if close else None
    )


def _build_hooks(cls: type[Workflow]) -> dict[str, Hooks]:
    hook_decls = [d for d in _declarations(cls) if isinstance(d, HookDeclaration)]
    table: dict[str, dict[str, list[Callable[..., Any]]]] = {
        name: {"before": [], "after": [], "around": [], "on_error": []}
        for name in cls._jw_task_map
    }
    for hook in hook_decls:
        targets = [
            _resolve(
                cls.name,
                _declared(cls),
                t,
                hook.namespace,
                f"{hook.kind} hook {hook.name!r}",
            )
            for t in hook.targets
        ] or list(table)
        for target in targets:
            table[target][hook.kind].append(hook.fn)
    return {
        name: Hooks(**{kind: tuple(fns) for kind, fns in kinds.items()})
        for name, kinds in table.items()
        if any(kinds.values())
    }


def _declared(cls: type[Workflow]) -> dict[str, TaskDeclaration]:
    return {t.name: t.declaration for t in cls.tasks}


def schedule(
    expression: str,
    *,
    key: str | None = None,
    args: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    description: str | None = None,
) -> Callable[[type[Workflow]], type[Workflow]]:
    """Run the decorated workflow on a recurring schedule (cron or a phrase)."""
    if not isinstance(expression, str):
        raise InvalidOptionError("schedule", f"expected a str, got {expression!r}")
    cron = to_cron(expression)

    def decorate(cls: type[Workflow]) -> type[Workflow]:
        if not (isinstance(cls, type) and issubclass(cls, Workflow)):
            raise InvalidOptionError(
                "schedule", f"decorates Workflow classes, not {cls!r}"
            )
        entry_key = key or cls.name
        if entry_key in cls.schedules:
            raise InvalidOptionError(
                "schedule", f"key {entry_key!r} is used twice on {cls.name!r}"
            )
        given = dict(args or {})
        try:
            _arguments.validate(cls.arguments, given, cls.name)
        except Exception as exc:
            raise InvalidOptionError(
                "schedule", f"args of {entry_key!r}: {exc}"
            ) from exc
        entry = Schedule(
            entry_key, expression, cron, given, queue, priority, description
        )
        # Decorators apply bottom-up; keep the order they are written in.
        cls.schedules = {entry_key: entry, **cls.schedules}
        return cls

    return decorate


def names_of(tasks: Sequence[Task]) -> list[str]:
    return [t.name for t in tasks]
