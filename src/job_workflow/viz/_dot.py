"""DOT text of a Drawing: deterministic, so the same input gives the same bytes.

Everything is written in task order (the workflow's stable topological
order) with attributes in a fixed order; nothing depends on ids, hashes or
set iteration. Namespaces become clusters labelled ``payment:``; a legend
cluster explains the shapes and colours used.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence

from job_workflow.viz import _style
from job_workflow.viz._model import Detail, Drawing, Edge, Node
from job_workflow.viz._style import LegendEntry, Look

_INDENT = "  "


def to_dot(drawing: Drawing) -> str:
    """The whole ``digraph`` as text, ending with a newline."""
    lines = [f"digraph {_quote(drawing.title)} {{", *_defaults(drawing)]
    # Written first, the legend ends up below the graph in dot's layout.
    lines += _legend(drawing)
    lines += _clusters(drawing.nodes)
    lines += [_edge(edge) for edge in drawing.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _defaults(drawing: Drawing) -> list[str]:
    graph = _attrs(
        rankdir="LR",
        label=_graph_label(drawing),
        labelloc="t",
        labeljust="l",
        fontname=_style.FONT,
        fontsize="16",
        fontcolor=_style.TEXT,
        nodesep="0.35",
        ranksep="0.55",
        pad="0.3",
    )
    node = _attrs(
        fontname=_style.FONT,
        fontsize="11",
        shape="box",
        style="rounded,filled",
        margin="0.16,0.08",
    )
    edge = _attrs(
        color=_style.EDGE, arrowsize="0.7", penwidth="1.2", fontname=_style.FONT
    )
    return [
        f"{_INDENT}graph {graph};",
        f"{_INDENT}node {node};",
        f"{_INDENT}edge {edge};",
    ]


def _graph_label(drawing: Drawing) -> str:
    if not drawing.subtitle:
        return drawing.title
    lines = [_esc(drawing.title)]
    lines += [_small(line, _style.MUTED, 11) for line in drawing.subtitle.splitlines()]
    return _Html("".join(f'{line}<BR ALIGN="LEFT"/>' for line in lines))


# -- nodes, grouped into namespace clusters --


def _clusters(nodes: Sequence[Node]) -> list[str]:
    counter = iter(range(1, len(nodes) + 1))
    return list(_group(nodes, (), 1, counter))


def _group(
    nodes: Sequence[Node], prefix: tuple[str, ...], depth: int, counter: Iterator[int]
) -> Iterator[str]:
    """Nodes directly in ``prefix`` and, in first-seen order, nested clusters."""
    indent = _INDENT * depth
    children: dict[str, list[Node]] = {}
    for node in nodes:
        if node.namespace == prefix:
            yield indent + _node(node)
        else:
            children.setdefault(node.namespace[len(prefix)], []).append(node)
    for name, members in children.items():
        path = (*prefix, name)
        yield f"{indent}subgraph cluster_{next(counter)} {{"
        yield f"{indent}{_INDENT}{_cluster_attrs(path)};"
        yield from _group(members, path, depth + 1, counter)
        yield f"{indent}}}"


def _cluster_attrs(path: tuple[str, ...]) -> str:
    attrs = _attrs(
        label=":".join(path) + ":",
        style="rounded,dashed",
        color=_style.CLUSTER,
        fontcolor=_style.MUTED,
        fontsize="12",
        labeljust="l",
    )
    return f"graph {attrs}"


def _node(node: Node) -> str:
    look = _style.look(node)
    label = _attrs(label=_html_label(node), tooltip=node.name, **_look_attrs(look))
    return f"{_quote(node.name)} {label};"


def _look_attrs(look: Look) -> dict[str, str]:
    style = ["filled"] if look.shape == "box3d" else ["rounded", "filled"]
    if look.line != "solid":
        style.append(look.line)
    return {
        "shape": look.shape,
        "style": ",".join(style),
        "fillcolor": look.fill,
        "color": look.border,
        "penwidth": f"{look.penwidth:g}",
        "fontcolor": look.font,
    }


def _html_label(node: Node) -> str:
    parts = [f"<B>{_esc(node.short_name)}</B>"]
    if node.status is None:
        parts += [_detail(detail) for detail in node.details]
    else:  # a run: what happened replaces what was declared
        colour = _style.STATUS_TEXT[node.status]
        parts += [_small(note, colour) for note in node.notes]
    return _Html("<BR/>".join(parts))


def _detail(detail: Detail) -> str:
    return _small(detail.text, _style.DETAIL_TEXT[detail.feature])


def _small(text: str, colour: str, size: int = 9) -> str:
    return f'<FONT POINT-SIZE="{size}" COLOR="{colour}">{_esc(text)}</FONT>'


# -- edges --


def _edge(edge: Edge) -> str:
    line = f"{_INDENT}{_quote(edge.source)} -> {_quote(edge.target)}"
    if not edge.waits:
        return line + ";"
    attrs = _attrs(color=_style.WAIT_EDGE, penwidth="2.2", tooltip=_style.WAIT_LEGEND)
    return f"{line} {attrs};"


# -- legend --


def _legend(drawing: Drawing) -> list[str]:
    """A cluster of sample nodes in one row, ending with a waiting edge."""
    entries, waits = _style.legend(drawing)
    if not entries:
        return []
    inner = _INDENT * 2
    cluster = _attrs(
        label="legend",
        style="rounded",
        color=_style.CLUSTER,
        fontcolor=_style.MUTED,
        fontsize="12",
        labeljust="l",
    )
    lines = [
        f"{_INDENT}subgraph cluster_legend {{",
        f"{inner}graph {cluster};",
        f"{inner}node {_attrs(fontsize='10', margin='0.1,0.05')};",
    ]
    names = [f"legend_{entry.key}" for entry in entries]
    lines += [inner + _legend_node(n, e) for n, e in zip(names, entries, strict=True)]
    if waits and "legend_enqueue" not in names:
        source = LegendEntry("enqueued", "enqueued task", _style.TASK)
        lines.append(inner + _legend_node("legend_enqueued", source))
        names.append("legend_enqueued")
    if len(names) > 1:  # invisible edges keep the samples in one row
        chain = " -> ".join(_quote(n) for n in names)
        lines.append(f"{inner}{chain} {_attrs(style='invis')};")
    if waits:
        waiting = LegendEntry("waiting", "dependent task", _style.TASK)
        lines.append(inner + _legend_node("legend_waiting", waiting))
        lines.append(inner + _wait_edge(names[-1], "legend_waiting"))
    lines.append(f"{_INDENT}}}")
    return lines


def _legend_node(name: str, entry: LegendEntry) -> str:
    label: str = entry.text
    if entry.detail is not None:
        label = _Html(f"{_esc(entry.text)}<BR/>{_detail(entry.detail)}")
    return f"{_quote(name)} " + _attrs(label=label, **_look_attrs(entry.look)) + ";"


def _wait_edge(source: str, target: str) -> str:
    attrs = _attrs(
        label=_style.WAIT_LEGEND,
        color=_style.WAIT_EDGE,
        penwidth="2.2",
        fontsize="9",
        fontcolor=_style.WAIT_EDGE,
    )
    return f"{_quote(source)} -> {_quote(target)} {attrs};"


# -- quoting --


class _Html(str):
    """An HTML-like label, already escaped: written as ``<...>``, not quoted."""


def _attrs(**values: str) -> str:
    return "[" + ", ".join(f"{k}={_value(v)}" for k, v in values.items()) + "]"


def _value(value: str) -> str:
    return f"<{value}>" if isinstance(value, _Html) else _quote(value)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
