"""The public functions of job_workflow.viz: build text or a graph, or render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

from job_workflow.core._workflow import Workflow
from job_workflow.simulator import SimulationResult
from job_workflow.viz import _dot, _graph, _mermaid, _render, _timeline
from job_workflow.viz import _simulation as _simulation  # registers the result
from job_workflow.viz._model import drawing_of

Format = Literal["svg", "png", "dot", "mermaid"]
FORMATS: tuple[str, ...] = get_args(Format)
TIMELINE = "timeline"

WorkflowChoice = str | type[Workflow] | None


def to_networkx(obj: Any, *, workflow: WorkflowChoice = None) -> Any:
    """A ``networkx.DiGraph`` of a Workflow class, a DryRunReport or a result.

    Nodes are full task names (``"payment:charge"``) with every task option as
    an attribute; edges go from a dependency to its dependent. For a report,
    nodes also carry ``status``, ``iterations``, ``sub_job_count``, ...; for a
    SimulationResult, ``status``, ``succeeded``, ``failed``, ``skipped``,
    ``not_run``, ``unfinished``, ``iterations``, ``sub_jobs``, ``retries``,
    ``reschedules`` and ``crashes`` over the runs of the drawn class (the
    first simulated, or ``workflow=``, a name or class).
    """
    return _graph.to_networkx(drawing_of(obj, {"workflow": workflow}))


def to_dot(obj: Any, *, workflow: WorkflowChoice = None) -> str:
    """Graphviz DOT text of a Workflow class, a DryRunReport or a
    SimulationResult (deterministic); ``workflow=`` as for :func:`to_networkx`."""
    return _dot.to_dot(drawing_of(obj, {"workflow": workflow}))


def to_mermaid(obj: Any, *, workflow: WorkflowChoice = None) -> str:
    """Mermaid flowchart text of a Workflow class, a DryRunReport or a
    SimulationResult; ``workflow=`` as for :func:`to_networkx`."""
    return _mermaid.to_mermaid(drawing_of(obj, {"workflow": workflow}))


def timeline(
    result: SimulationResult,
    path: str | os.PathLike[str] | None = None,
    *,
    width: int = 1200,
) -> str:
    """The SVG timeline of a simulation: workers down, virtual time across.

    Returns the SVG text and, given ``path``, writes it there (UTF-8). One
    row per worker (a restarted worker stays on its row); bars for task
    bodies, polls, retry and throttle waits; markers for crashes, restarts,
    retries, reschedules, duplicate deliveries, lease expiries and failed
    jobs; a legend and a title with seed, workers, faults and makespan. Hand
    written, no dependency, the same bytes for the same result. ``width`` is
    in pixels (at least 480).
    """
    if not isinstance(result, SimulationResult):
        raise TypeError(
            f"timeline draws a SimulationResult, got {type(result).__name__}; "
            "for a workflow or a dry-run report use render()"
        )
    svg = _timeline.timeline_svg(result, width)
    if path is not None:
        Path(path).write_text(svg, encoding="utf-8")
    return svg


def render(
    obj: Any,
    path: str | os.PathLike[str],
    format: str = "svg",
    *,
    workflow: WorkflowChoice = None,
) -> Path:
    """Write a picture of ``obj`` to ``path`` and return the path.

    ``obj`` is a Workflow class, a DryRunReport or a SimulationResult (both
    drawn over the graph). ``format`` is ``"svg"`` or ``"png"`` (both need
    the graphviz ``dot`` program, else :class:`GraphvizNotFoundError`), or
    ``"dot"`` or ``"mermaid"`` (text, no dependency). For a SimulationResult,
    ``format="timeline"`` writes :func:`timeline`'s SVG instead of the graph.
    An unknown format raises ValueError; an object that cannot be drawn
    raises TypeError.
    """
    if format == TIMELINE:
        if workflow is not None:
            raise TypeError("workflow= does not apply to a timeline, which shows all")
        timeline(obj, path)
        return Path(path)
    if format not in FORMATS:
        raise ValueError(
            f"format={format!r} is not supported; use one of {', '.join(FORMATS)} "
            f"(or {TIMELINE} for a SimulationResult)"
        )
    drawing = drawing_of(obj, {"workflow": workflow})
    target = Path(path)
    if format == "mermaid":
        target.write_text(_mermaid.to_mermaid(drawing), encoding="utf-8")
    elif format == "dot":
        target.write_text(_dot.to_dot(drawing), encoding="utf-8")
    else:
        target.write_bytes(_render.run_dot(_dot.to_dot(drawing), format))
    return target
