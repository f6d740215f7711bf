"""Mermaid ``flowchart`` text of a Drawing, for Markdown pages and wikis.

Nodes get short ids (``n0``, ``n1``, ... in task order) and carry the full
task name in their label; each node's look is written as an explicit
``style`` line, so the text needs no theme and stays deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from job_workflow.viz import _style
from job_workflow.viz._model import Drawing, Node
from job_workflow.viz._style import Look

_INDENT = "    "
_DASHES = {
    "solid": "",
    "dashed": ",stroke-dasharray:6 4",
    "dotted": ",stroke-dasharray:2 3",
}
_WAIT_LINK = f"stroke:{_style.WAIT_EDGE},stroke-width:2.5px"


def to_mermaid(drawing: Drawing) -> str:
    """The whole flowchart as text, ending with a newline."""
    ids = {node.name: f"n{i}" for i, node in enumerate(drawing.nodes)}
    title = drawing.title
    if drawing.kind == "simulation":  # seed, workers, faults: what replays it
        title += ": " + drawing.subtitle.splitlines()[0]
    lines = ["---", f"title: {_title(title)}", "---", "flowchart LR"]
    lines += _groups(drawing.nodes, ids, (), 1, iter(range(len(drawing.nodes))))
    waits: list[int] = []
    for number, edge in enumerate(drawing.edges):
        arrow = "==>" if edge.waits else "-->"
        lines.append(f"{_INDENT}{ids[edge.source]} {arrow} {ids[edge.target]}")
        if edge.waits:
            waits.append(number)
    legend, legend_wait = _legend(drawing, len(drawing.edges))
    lines += legend
    lines += [_style_line(ids[n.name], _style.look(n)) for n in drawing.nodes]
    if legend_wait is not None:
        waits.append(legend_wait)
    if waits:
        numbers = ",".join(str(n) for n in waits)
        lines.append(f"{_INDENT}linkStyle {numbers} {_WAIT_LINK}")
    return "\n".join(lines) + "\n"


def _groups(
    nodes: Sequence[Node],
    ids: dict[str, str],
    prefix: tuple[str, ...],
    depth: int,
    counter: Iterator[int],
) -> Iterator[str]:
    indent = _INDENT * depth
    children: dict[str, list[Node]] = {}
    for node in nodes:
        if node.namespace == prefix:
            yield indent + _node(ids[node.name], node)
        else:
            children.setdefault(node.namespace[len(prefix)], []).append(node)
    for name, members in children.items():
        path = (*prefix, name)
        label = _text(":".join(path) + ":")
        yield f'{indent}subgraph ns{next(counter)} ["{label}"]'
        yield from _groups(members, ids, path, depth + 1, counter)
        yield f"{indent}end"


def _node(node_id: str, node: Node) -> str:
    parts = [f"<b>{_text(node.short_name)}</b>"]
    if node.status is None:
        parts += [f"<small>{_text(d.text)}</small>" for d in node.details]
    else:  # a run: what happened replaces what was declared
        parts += [f"<small>{_text(note)}</small>" for note in node.notes]
    label = "<br/>".join(parts)
    if "map" in node.features:
        return f'{node_id}[["{label}"]]'
    return f'{node_id}("{label}")'


def _legend(drawing: Drawing, first_link: int) -> tuple[list[str], int | None]:
    """The legend subgraph and the number of its waiting link (for linkStyle)."""
    entries, waits = _style.legend(drawing)
    if not entries:
        return [], None
    inner = _INDENT * 2
    lines = [f'{_INDENT}subgraph legend ["legend"]']
    names = [f"legend_{entry.key}" for entry in entries]
    looks = [entry.look for entry in entries]
    for name, entry in zip(names, entries, strict=True):
        shape = ('[["', '"]]') if entry.key == "map" else ('("', '")')
        label = _text(entry.text)
        if entry.detail is not None:
            label += f"<br/><small>{_text(entry.detail.text)}</small>"
        lines.append(f"{inner}{name}{shape[0]}{label}{shape[1]}")
    if waits and "legend_enqueue" not in names:
        lines.append(f'{inner}legend_enqueued("enqueued task")')
        names.append("legend_enqueued")
        looks.append(_style.TASK)
    if len(names) > 1:
        lines.append(inner + " ~~~ ".join(names))
    wait_link = None
    if waits:
        lines.append(f'{inner}legend_waiting("dependent task")')
        wait_text = _text(_style.WAIT_LEGEND)
        lines.append(f"{inner}{names[-1]} ==>|{wait_text}| legend_waiting")
        names.append("legend_waiting")
        looks.append(_style.TASK)
        # The chain adds len(names) - 2 invisible links before this one.
        wait_link = first_link + max(len(names) - 2, 0)
    lines.append(f"{_INDENT}end")
    lines += [_style_line(n, look) for n, look in zip(names, looks, strict=True)]
    return lines, wait_link


def _style_line(node_id: str, look: Look) -> str:
    return (
        f"{_INDENT}style {node_id} fill:{look.fill},stroke:{look.border},"
        f"stroke-width:{look.penwidth:g}px,color:{look.font}{_DASHES[look.line]}"
    )


_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}


def _text(text: str) -> str:
    """Escape text for a quoted Mermaid label (entity codes, no raw HTML)."""
    return "".join(_ENTITIES.get(char, char) for char in text)


def _title(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
