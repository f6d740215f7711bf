"""How a node looks: one table of shapes and colours shared by DOT and Mermaid.

A workflow graph encodes the task options: a 3-D box is a map task, a blue
fill means the task runs as sub-jobs, an orange border a throttle, a dashed
border a condition, a bold blue arrow a dependency that waits for sub-jobs.
A report overlay replaces the fill and border with the run's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from job_workflow.viz._model import Detail, Drawing, Feature, Node, Status

Line = Literal["solid", "dashed", "dotted"]

FONT = "Helvetica,Arial,sans-serif"
TEXT = "#111827"
MUTED = "#4B5563"
EDGE = "#6B7280"
WAIT_EDGE = "#1D4ED8"
CLUSTER = "#9CA3AF"


@dataclass(frozen=True, slots=True)
class Look:
    """Shape and colours of one node."""

    shape: Literal["box", "box3d"] = "box"
    fill: str = "#FFFFFF"
    border: str = "#374151"
    penwidth: float = 1.2
    line: Line = "solid"
    font: str = TEXT


TASK = Look()
MAP = Look(shape="box3d")
ENQUEUE = Look(fill="#DBEAFE", border="#1D4ED8")
THROTTLE = Look(border="#C2410C", penwidth=2.6)
CONDITION = Look(line="dashed")

STATUS: dict[Status, Look] = {
    "ran": Look(fill="#D1FAE5", border="#047857", penwidth=1.6),
    "skipped": Look(fill="#F3F4F6", border="#6B7280", line="dashed", font=MUTED),
    "failed": Look(fill="#FEE2E2", border="#B91C1C", penwidth=2.6),
    "not_run": Look(fill="#FFFFFF", border="#9CA3AF", line="dotted", font=MUTED),
}

# Text colour of the status line in an overlay (darker than the fill).
STATUS_TEXT: dict[Status, str] = {
    "ran": "#065F46",
    "skipped": "#374151",
    "failed": "#991B1B",
    "not_run": "#6B7280",
}

STATUS_LABEL: dict[Status, str] = {
    "ran": "ran",
    "skipped": "skipped (condition not met)",
    "failed": "failed",
    "not_run": "not run (an earlier task failed)",
}


def look(node: Node) -> Look:
    """The look of ``node``: its options, or its status in an overlay."""
    shape: Literal["box", "box3d"] = "box3d" if "map" in node.features else "box"
    if node.status is not None:
        base = STATUS[node.status]
        return Look(shape, base.fill, base.border, base.penwidth, base.line, base.font)
    fill = ENQUEUE.fill if "enqueue" in node.features else TASK.fill
    border, penwidth = TASK.border, TASK.penwidth
    if "enqueue" in node.features:
        border = ENQUEUE.border
    if "throttle" in node.features:
        border, penwidth = THROTTLE.border, THROTTLE.penwidth
    line: Line = "dashed" if "condition" in node.features else "solid"
    return Look(shape, fill, border, penwidth, line, TEXT)


# Each detail line is written in the colour of the feature it describes, so
# "throttle 10" matches the orange border and "waits 30s" the blue arrow.
DETAIL_TEXT: dict[Feature | None, str] = {
    None: MUTED,
    "map": MUTED,
    "condition": MUTED,
    "enqueue": "#1D4ED8",
    "wait": "#1D4ED8",
    "throttle": "#C2410C",
    "retry": "#7C3AED",
}


@dataclass(frozen=True, slots=True)
class LegendEntry:
    key: str
    text: str
    look: Look
    detail: Detail | None = None


WORKFLOW_LEGEND = (
    LegendEntry("task", "task", TASK),
    LegendEntry("map", "map task (each)", MAP),
    LegendEntry("retry", "retried", TASK, Detail("retry 3 (exponential)", "retry")),
    LegendEntry("throttle", "throttled", THROTTLE, Detail("throttle 10", "throttle")),
    LegendEntry("condition", "has a condition", CONDITION),
    LegendEntry(
        "enqueue",
        "enqueued",
        ENQUEUE,
        Detail("sub-jobs on a queue, max 5", "enqueue"),
    ),
)

MAP_ENTRY = LegendEntry("map", "map task (each)", MAP)
WAIT_LEGEND = "waits for sub-jobs"


def legend(drawing: Drawing) -> tuple[tuple[LegendEntry, ...], bool]:
    """The legend entries for what ``drawing`` shows, and whether it has waits.

    Only what appears is explained, so a small graph gets a small legend.
    """
    waits = any(edge.waits for edge in drawing.edges)
    if drawing.overlay:
        statuses = {node.status for node in drawing.nodes}
        labels = {**STATUS_LABEL, **dict(drawing.status_labels)}
        entries = [
            LegendEntry(status, labels[status], STATUS[status])
            for status in STATUS
            if status in statuses
        ]
        if any("map" in node.features for node in drawing.nodes):
            entries.append(MAP_ENTRY)
        return tuple(entries), waits
    features: set[str] = set()
    for node in drawing.nodes:
        features |= node.features
    shown = [e for e in WORKFLOW_LEGEND if e.key == "task" or e.key in features]
    return tuple(shown), waits
