"""What a picture shows, independent of the output format.

Every drawable object (a workflow class, a dry-run report, a simulation
result) is first turned into a :class:`Drawing`: nodes with the text lines
and flags that matter, edges, and for a run an overlay status per node. DOT,
Mermaid and networkx output are then plain functions of a Drawing, so they
agree with each other and stay deterministic.

Extension point: :func:`register_source` maps a type to a builder and names
the keyword options the builder takes (``workflow=`` for a simulation
result, see ``_simulation.py``); nothing else needs to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from job_workflow._dry_run import DryRunReport, TaskReport, summarize_side_effects
from job_workflow.core._task import Task
from job_workflow.core._workflow import Workflow

Status = Literal["ran", "skipped", "failed", "not_run"]
Kind = Literal["workflow", "dry_run", "simulation"]
Feature = Literal["map", "enqueue", "throttle", "condition", "wait", "retry"]


@dataclass(frozen=True, slots=True)
class Detail:
    """One line under a task's name: an option, tagged with its feature."""

    text: str
    feature: Feature | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """One task as drawn: its name, what it declares, and how its run went."""

    name: str
    short_name: str
    namespace: tuple[str, ...]
    features: frozenset[Feature]
    details: tuple[Detail, ...]
    task: Task
    status: Status | None = None
    notes: tuple[str, ...] = ()
    report: TaskReport | None = None
    data: tuple[tuple[str, Any], ...] = ()  # run attributes for networkx


@dataclass(frozen=True, slots=True)
class Edge:
    """Dependency -> dependent; ``waits`` when the dependency enqueues sub-jobs."""

    source: str
    target: str
    waits: bool


@dataclass(frozen=True, slots=True)
class Drawing:
    """A workflow graph ready to be written in any format."""

    title: str
    workflow: type[Workflow]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    overlay: bool = False
    subtitle: str = ""
    kind: Kind = "workflow"
    # For an overlay: what each status colour means in this kind of run.
    status_labels: tuple[tuple[Status, str], ...] = ()
    data: tuple[tuple[str, Any], ...] = ()  # graph attributes for networkx


Builder = Callable[..., Drawing]
_SOURCES: dict[type, tuple[Builder, frozenset[str]]] = {}


def register_source(
    kind: type, builder: Builder, options: tuple[str, ...] = ()
) -> None:
    """Teach viz to draw objects of ``kind`` (see the module docstring).

    ``builder(obj, **options)`` returns the Drawing; ``options`` names the
    keyword arguments it accepts (given ``None``, they take their default).
    """
    _SOURCES[kind] = (builder, frozenset(options))


def drawing_of(obj: Any, options: Mapping[str, Any] | None = None) -> Drawing:
    """The Drawing of a Workflow class or of any registered kind of object.

    ``options`` with a ``None`` value are left out; any other option must be
    one the object's builder accepts, else TypeError names who takes it.
    """
    given = {k: v for k, v in (options or {}).items() if v is not None}
    if isinstance(obj, type) and issubclass(obj, Workflow) and obj is not Workflow:
        _check_options(given, frozenset(), "a Workflow class")
        return workflow_drawing(obj)
    for kind, (builder, accepted) in _SOURCES.items():
        if isinstance(obj, kind):
            _check_options(given, accepted, f"a {kind.__name__}")
            return builder(obj, **given)
    drawable = ", ".join(["a Workflow subclass", *(k.__name__ for k in _SOURCES)])
    raise TypeError(
        f"cannot draw an object of type {type(obj).__name__}; "
        f"job_workflow.viz draws {drawable}"
    )


def _check_options(
    given: Mapping[str, Any], accepted: frozenset[str], what: str
) -> None:
    unknown = sorted(set(given) - accepted)
    if not unknown:
        return
    takers = sorted(
        kind.__name__ for kind, (_, names) in _SOURCES.items() if unknown[0] in names
    )
    hint = f"; it applies to a {' or a '.join(takers)}" if takers else ""
    raise TypeError(f"{unknown[0]}= cannot be used to draw {what}{hint}")


# -- a workflow class --


def workflow_drawing(workflow: type[Workflow], title: str | None = None) -> Drawing:
    enqueued = {t.name for t in workflow.tasks if t.options.enqueue.declared}
    nodes = tuple(_node(workflow, task, enqueued) for task in workflow.tasks)
    edges = tuple(
        Edge(dependency, task.name, dependency in enqueued)
        for task in workflow.tasks
        for dependency in task.depends_on
    )
    return Drawing(title or workflow.name, workflow, nodes, edges)


def _node(workflow: type[Workflow], task: Task, enqueued: set[str]) -> Node:
    waits = any(d in enqueued for d in task.depends_on)
    features, details = _features(workflow, task, waits)
    *namespace, short = task.name.split(":")
    return Node(task.name, short, tuple(namespace), features, details, task)


def _features(
    workflow: type[Workflow], task: Task, waits: bool
) -> tuple[frozenset[Feature], tuple[Detail, ...]]:
    options = task.options
    details: list[Detail] = []
    if task.is_map:
        details.append(Detail("each (map task)", "map"))
    if options.enqueue.declared:
        details.append(Detail(_enqueue_text(workflow, task), "enqueue"))
    if options.throttle is not None:
        key = f" ({options.throttle.key})" if options.throttle.key else ""
        details.append(Detail(f"throttle {options.throttle.limit}{key}", "throttle"))
    if options.condition is not None:
        details.append(Detail("only if condition", "condition"))
    if waits or not options.dependency_wait.polling_only:
        details.append(Detail(_wait_text(task), "wait"))
    if options.retry.count:
        retry = options.retry
        details.append(Detail(f"retry {retry.count} ({retry.strategy})", "retry"))
    if options.timeout is not None:
        details.append(Detail(f"timeout {options.timeout:g}s"))
    if options.dry_run is not False:
        text = "dry run" if options.dry_run is True else "dry run if ..."
        details.append(Detail(text))
    features = frozenset(d.feature for d in details if d.feature is not None)
    return features, tuple(details)


def _enqueue_text(workflow: type[Workflow], task: Task) -> str:
    spec = task.options.enqueue
    text = f"sub-jobs on {spec.queue or workflow.queue}"
    if spec.concurrency is not None:
        text += f", max {spec.concurrency}"
    if callable(spec.condition):
        text += " (if enabled)"
    return text


def _wait_text(task: Task) -> str:
    policy = task.options.dependency_wait
    if policy.polling_only:
        return f"waits, polls every {policy.poll_interval:g}s"
    return (
        f"waits {policy.poll_timeout:g}s, "
        f"then reschedules +{policy.reschedule_delay:g}s"
    )


# -- a dry-run report --


def report_drawing(report: DryRunReport) -> Drawing:
    base = workflow_drawing(report.workflow)
    by_name = {t.name: t for t in report.tasks}
    nodes = tuple(_overlaid(node, by_name.get(node.name)) for node in base.nodes)
    title = f"dry run of {report.workflow_name}: {report.status}"
    arguments = ", ".join(f"{k}={v!r}" for k, v in report.arguments.items())
    subtitle = clip(f"arguments: {arguments or '(none)'}", 120)
    return Drawing(
        title,
        report.workflow,
        nodes,
        base.edges,
        overlay=True,
        subtitle=subtitle,
        kind="dry_run",
    )


def _overlaid(node: Node, report: TaskReport | None) -> Node:
    if report is None:  # pragma: no cover - a report covers every task
        return node
    return Node(
        name=node.name,
        short_name=node.short_name,
        namespace=node.namespace,
        features=node.features,
        details=node.details,
        task=node.task,
        status=report.status,
        notes=_notes(report),
        report=report,
    )


def _notes(report: TaskReport) -> tuple[str, ...]:
    notes = [_status_text(report)]
    if report.status == "failed" and report.iterations:
        notes.append(f"{count(report.iterations, 'iteration')} completed")
    if report.sub_jobs is not None:
        sub_jobs = report.sub_jobs
        limit = f", max {sub_jobs.concurrency}" if sub_jobs.concurrency else ""
        notes.append(f"{count(sub_jobs.count, 'sub-job')} on {sub_jobs.queue}{limit}")
    if report.retries:
        notes.append(count(report.retries, "retry", "retries"))
    if report.skipped_side_effects:
        names = summarize_side_effects(report.skipped_side_effects)
        notes.append(f"skipped side effects: {names}")
    return tuple(notes)


def _status_text(report: TaskReport) -> str:
    if report.status == "ran":
        return f"ran, {count(report.iterations, 'iteration')}"
    if report.status == "skipped":
        return f"skipped: {report.reason}"
    if report.status == "failed":
        first = (report.error_message or "").splitlines()[:1]
        return clip("failed: " + ": ".join([str(report.error_class), *first]), 48)
    return "not run"


def count(number: int, singular: str, plural: str | None = None) -> str:
    """``"1 retry"``, ``"2 retries"``: a number and its noun."""
    word = singular if number == 1 else plural or singular + "s"
    return f"{number} {word}"


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending with ``...`` when cut."""
    return text if len(text) <= width else text[: width - 3] + "..."


register_source(DryRunReport, report_drawing)
