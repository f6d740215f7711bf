"""The public functions of job_workflow.viz: build text or a graph, or render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

from job_workflow.viz import _dot, _graph, _mermaid, _render
from job_workflow.viz._model import drawing_of

Format = Literal["svg", "png", "dot", "mermaid"]
FORMATS: tuple[str, ...] = get_args(Format)


def to_networkx(obj: Any) -> Any:
    """A ``networkx.DiGraph`` of a Workflow class or a DryRunReport.

    Nodes are full task names (``"payment:charge"``) with every task option as
    an attribute; edges go from a dependency to its dependent. For a report,
    nodes also carry ``status``, ``iterations``, ``sub_job_count``, ...
    """
    return _graph.to_networkx(drawing_of(obj))


def to_dot(obj: Any) -> str:
    """Graphviz DOT text of a Workflow class or a DryRunReport (deterministic)."""
    return _dot.to_dot(drawing_of(obj))


def to_mermaid(obj: Any) -> str:
    """Mermaid flowchart text of a Workflow class or a DryRunReport."""
    return _mermaid.to_mermaid(drawing_of(obj))


def render(obj: Any, path: str | os.PathLike[str], format: str = "svg") -> Path:
    """Write a picture of ``obj`` to ``path`` and return the path.

    ``obj`` is a Workflow class or a DryRunReport (drawn over the graph).
    ``format`` is ``"svg"`` or ``"png"`` (both need the graphviz ``dot``
    program, else :class:`GraphvizNotFoundError`), or ``"dot"`` or
    ``"mermaid"`` (text, no dependency). An unknown format raises ValueError;
    an object that cannot be drawn raises TypeError.
    """
    if format not in FORMATS:
        raise ValueError(
            f"format={format!r} is not supported; use one of {', '.join(FORMATS)}"
        )
    drawing = drawing_of(obj)
    target = Path(path)
    if format == "mermaid":
        target.write_text(_mermaid.to_mermaid(drawing), encoding="utf-8")
    elif format == "dot":
        target.write_text(_dot.to_dot(drawing), encoding="utf-8")
    else:
        target.write_bytes(_render.run_dot(_dot.to_dot(drawing), format))
    return target
