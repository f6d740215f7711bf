"""A simulation result drawn over the graph of one of its workflow classes.

Per task of the chosen class (the first simulated one unless ``workflow=``
names another), over every run of that class in the result: how many runs
the task succeeded, failed, was skipped or did not run in; the iterations
that completed; the sub-jobs it enqueued; and the retries, reschedules and
worker crashes that touched it. Colours are those of the dry-run overlay
(green succeeded, red failed, grey skipped, dotted not run), so the two
pictures read alike. The title carries what decides the run: seed, workers,
faults and makespan (see :func:`headline`, which the timeline shares).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import astuple, dataclass, field, fields
from typing import Any

from job_workflow.core._workflow import Workflow, registry
from job_workflow.core.ports import JobRecord
from job_workflow.errors import UnknownWorkflowError
from job_workflow.simulator import Faults, SimulationResult, TraceEntry
from job_workflow.viz._model import (
    Drawing,
    Node,
    Status,
    clip,
    count,
    register_source,
    workflow_drawing,
)

STATUS_LABELS: tuple[tuple[Status, str], ...] = (
    ("ran", "succeeded"),
    ("failed", "failed (in at least one run)"),
    ("skipped", "skipped (condition not met)"),
    ("not_run", "not run, or not finished"),
)
_RUN_ORDER = ("succeeded", "failed", "running", "pending", "scheduled")


@dataclass(slots=True)
class TaskTally:
    """What happened to one task over the runs of its workflow class."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    not_run: int = 0
    unfinished: int = 0
    iterations: int = 0
    sub_jobs: int = 0
    retries: int = 0
    reschedules: int = 0
    crashes: int = 0
    errors: list[str] = field(default_factory=list)  # error classes, sorted

    def status(self) -> Status:
        if self.failed:
            return "failed"
        if self.succeeded:
            return "ran"
        if self.skipped:
            return "skipped"
        return "not_run"


def simulation_drawing(
    result: SimulationResult, workflow: str | type[Workflow] | None = None
) -> Drawing:
    """The graph of the chosen workflow class with the result's counts on it."""
    cls = chosen_workflow(result, workflow)
    runs = [job_id for job_id, name, _ in result.workflows if name == cls.name]
    tallies = tally(result, cls, runs)
    base = workflow_drawing(cls)
    nodes = tuple(_overlaid(node, tallies[node.name], len(runs)) for node in base.nodes)
    return Drawing(
        title=f"simulation of {cls.name}",
        workflow=cls,
        nodes=nodes,
        edges=base.edges,
        overlay=True,
        subtitle=f"{headline(result)}\n{clip(_subtitle(result, cls, runs), 160)}",
        kind="simulation",
        status_labels=STATUS_LABELS,
        data=(
            ("seed", result.seed),
            ("workers", result.workers),
            ("faults", faults_text(result.faults)),
            ("makespan", result.metrics.makespan),
            ("deadlocked", result.deadlocked),
            ("runs", {job_id: result.statuses.get(job_id) for job_id in runs}),
        ),
    )


def chosen_workflow(
    result: SimulationResult, workflow: str | type[Workflow] | None
) -> type[Workflow]:
    """The class to draw: ``workflow`` (a name or class), else the first run's."""
    names = list(dict.fromkeys(name for _, name, _ in result.workflows))
    if not names:
        raise ValueError("the simulation ran no workflow: there is nothing to draw")
    if workflow is None:
        wanted = names[0]
    else:
        wanted = workflow if isinstance(workflow, str) else workflow.name
    if wanted not in names:
        raise ValueError(
            f"workflow={wanted!r} was not simulated in this result; "
            f"it ran {', '.join(map(repr, names))}"
        )
    try:
        cls: type[Workflow] = registry.get(wanted)
    except UnknownWorkflowError as exc:
        raise ValueError(
            f"workflow {wanted!r} is no longer registered, so its graph is unknown"
        ) from exc
    return cls


# -- counting --


def tally(
    result: SimulationResult, cls: type[Workflow], runs: list[str]
) -> dict[str, TaskTally]:
    """One :class:`TaskTally` per task of ``cls`` over the jobs ``runs``."""
    tallies = {task.name: TaskTally() for task in cls.tasks}
    records = {job.id: job for job in result.backend.jobs()}
    owners = set(runs)
    _count_outcomes(result, cls, runs, records, tallies)
    completed: set[tuple[str, str, int]] = set()
    for entry in result.trace:
        owner = _owner(records, entry.job_id)
        task = entry.detail.get("task_name")
        if owner not in owners or task not in tallies:
            continue
        assert owner is not None
        assert isinstance(task, str)
        if entry.event == "task.complete":
            completed.add((owner, task, int(entry.detail.get("each_index") or 0)))
        _count_event(entry, tallies[task])
    for _, task, _ in completed:
        tallies[task].iterations += 1
    for record in records.values():
        if record.parent_id in owners and record.task_name in tallies:
            tallies[record.task_name].sub_jobs += 1
    return tallies


def _count_outcomes(
    result: SimulationResult,
    cls: type[Workflow],
    runs: list[str],
    records: dict[str, JobRecord],
    tallies: dict[str, TaskTally],
) -> None:
    errors: set[tuple[str | None, Any]] = set()
    for entry in result.trace:
        if entry.event == "task.error":
            task = entry.detail.get("task_name")
            errors.add((_owner(records, entry.job_id), task))
            error_class = str(entry.detail.get("error_class", "?"))
            one = tallies.get(str(task))
            if one is not None and error_class not in one.errors:
                one.errors = sorted([*one.errors, error_class])
    for job_id in runs:
        tasks = result.backend.load_state(job_id, ()).tasks
        settled = result.statuses.get(job_id) in ("succeeded", "failed")
        for task in cls.tasks:
            outcome: str | None = tasks.get(task.name)
            if outcome == "enqueued":
                outcome = _sub_job_outcome(result, job_id, task.name)
            one = tallies[task.name]
            if (job_id, task.name) in errors or outcome == "failed":
                one.failed += 1
            elif outcome == "done":
                one.succeeded += 1
            elif outcome == "skipped":
                one.skipped += 1
            elif settled:
                one.not_run += 1
            else:
                one.unfinished += 1


def _sub_job_outcome(result: SimulationResult, job_id: str, task: str) -> str:
    statuses = {job.status for job in result.backend.sub_jobs(job_id, task)}
    if "failed" in statuses:
        return "failed"
    return "done" if statuses <= {"finished"} else "unfinished"


def _count_event(entry: TraceEntry, one: TaskTally) -> None:
    if entry.event == "task.retry":
        one.retries += 1
    elif entry.event == "job.reschedule":
        one.reschedules += 1
    elif entry.event == "worker.crash":
        one.crashes += 1


def _owner(records: dict[str, JobRecord], job_id: str | None) -> str | None:
    record = records.get(job_id or "")
    if record is None:
        return None
    return record.parent_id or record.id


# -- text --


def _overlaid(node: Node, one: TaskTally, runs: int) -> Node:
    return Node(
        name=node.name,
        short_name=node.short_name,
        namespace=node.namespace,
        features=node.features,
        details=node.details,
        task=node.task,
        status=one.status(),
        notes=_notes(node, one, runs),
        data=(
            *zip((f.name for f in fields(one)), astuple(one), strict=True),
            ("status", one.status()),
            ("sub_job_count", one.sub_jobs),
        ),
    )


def _notes(node: Node, one: TaskTally, runs: int) -> tuple[str, ...]:
    outcomes = [
        (one.succeeded, "succeeded"),
        (one.failed, "failed"),
        (one.skipped, "skipped"),
        (one.not_run, "not run"),
        (one.unfinished, "not finished"),
    ]
    if runs == 1:
        notes = [next((word for n, word in outcomes if n), "not run")]
        if one.errors:
            notes[0] += ": " + ", ".join(one.errors)
    else:
        said = ", ".join(f"{n} {word}" for n, word in outcomes if n)
        notes = [f"{runs} runs: {said}"]
        if one.errors:
            notes.append(clip("errors: " + ", ".join(one.errors), 48))
    if node.task.is_map and one.iterations:
        notes.append(count(one.iterations, "iteration"))
    if one.sub_jobs:
        notes.append(count(one.sub_jobs, "sub-job"))
    touched = [
        count(one.retries, "retry", "retries") if one.retries else "",
        count(one.reschedules, "reschedule") if one.reschedules else "",
        count(one.crashes, "crash", "crashes") if one.crashes else "",
    ]
    if any(touched):
        notes.append(", ".join(filter(None, touched)))
    return tuple(notes)


def headline(result: SimulationResult) -> str:
    """``seed 3, 4 workers, faults: crashes=0.05, makespan 63 s``."""
    return (
        f"seed {result.seed}, {count(result.workers, 'worker')}, "
        f"{faults_text(result.faults)}, makespan {seconds(result.metrics.makespan)} s"
    )


def outcome_text(result: SimulationResult, runs: list[str] | None = None) -> str:
    """``3 runs: 2 succeeded, 1 failed`` (of ``runs``, else every workflow)."""
    chosen = list(result.statuses) if runs is None else runs
    counted = Counter(result.statuses.get(job_id, "unknown") for job_id in chosen)
    order = [*_RUN_ORDER, *sorted(set(counted) - set(_RUN_ORDER))]
    said = ", ".join(f"{counted[s]} {s}" for s in order if counted[s])
    return f"{count(len(chosen), 'run')}: {said or 'none'}"


def events_text(result: SimulationResult) -> str:
    """``2 retries, 1 reschedule, 1 crash`` over the whole simulation."""
    crashes = sum(1 for e in result.trace if e.event == "worker.crash")
    parts = [
        count(result.metrics.retries, "retry", "retries"),
        count(result.metrics.reschedules, "reschedule"),
        count(crashes, "crash", "crashes"),
    ]
    return ", ".join(parts)


def _subtitle(result: SimulationResult, cls: type[Workflow], runs: list[str]) -> str:
    parts = [outcome_text(result, runs), events_text(result)]
    if result.deadlocked:
        parts.append("DEADLOCKED")
    others = [
        n for n in dict.fromkeys(n for _, n, _ in result.workflows) if n != cls.name
    ]
    if others:
        parts.append(f"also simulated: {', '.join(others)} (draw with workflow=...)")
    return "; ".join(parts)


def faults_text(faults: Faults) -> str:
    """``no faults`` or ``faults: crashes=0.05, task_errors=0.1`` (non-defaults)."""
    default = Faults()
    changed = []
    for one in fields(faults):
        value = getattr(faults, one.name)
        if value == getattr(default, one.name):
            continue
        if isinstance(value, tuple):
            value = "+".join(value)
        changed.append(f"{one.name}={value}")
    return f"faults: {', '.join(changed)}" if changed else "no faults"


def seconds(value: float) -> str:
    """A number of seconds, at most 3 decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


register_source(SimulationResult, simulation_drawing, ("workflow",))
