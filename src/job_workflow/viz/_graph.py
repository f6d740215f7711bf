"""``to_networkx``: the task graph as a ``networkx.DiGraph`` with options as data.

Nodes are full task names; edges go dependency -> dependent. Option values
are plain data (numbers, strings, dicts) so the graph can be exported with
networkx's writers; ``options`` keeps the original ``TaskOptions`` object.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from job_workflow.core._codec import type_name
from job_workflow.core._task import Task
from job_workflow.core._workflow import Workflow
from job_workflow.viz._model import Drawing, Node


def to_networkx(drawing: Drawing) -> Any:
    """A DiGraph of ``drawing``; run overlays add run attributes to nodes."""
    graph = nx.DiGraph(
        name=drawing.workflow.name,
        title=drawing.title,
        subtitle=drawing.subtitle,
        queue=drawing.workflow.queue,
        kind=drawing.kind,
        **dict(drawing.data),
    )
    for node in drawing.nodes:
        graph.add_node(node.name, **_attributes(drawing.workflow, node))
    for edge in drawing.edges:
        graph.add_edge(edge.source, edge.target, waits=edge.waits)
    return graph


def _attributes(workflow: type[Workflow], node: Node) -> dict[str, Any]:
    attributes = {
        "short_name": node.short_name,
        "namespace": ":".join(node.namespace),
        "label": "\n".join(
            [node.short_name, *node.notes, *(d.text for d in node.details)]
        ),
        **option_attributes(workflow, node.task),
    }
    if node.report is not None:
        report = node.report.to_dict()
        attributes.update(
            status=report["status"],
            reason=report["reason"],
            error=node.report.error,
            iterations=report["iterations"],
            retries=report["retries"],
            sub_job_count=report["sub_jobs"]["count"] if report["sub_jobs"] else 0,
            skipped_side_effects=report["skipped_side_effects"],
            outputs=report["outputs"],
        )
    attributes.update(node.data)
    return attributes


def option_attributes(workflow: type[Workflow], task: Task) -> dict[str, Any]:
    """Every ``@task`` option of ``task`` as plain data, keyed by option name."""
    options = task.options
    enqueue = options.enqueue
    throttle = options.throttle
    wait = options.dependency_wait
    return {
        "is_map": task.is_map,
        "enqueue": None
        if not enqueue.declared
        else {
            "queue": enqueue.queue or workflow.queue,
            "concurrency": enqueue.concurrency,
            "conditional": callable(enqueue.condition),
        },
        "retry": {
            "count": options.retry.count,
            "strategy": options.retry.strategy,
            "base_delay": options.retry.base_delay,
            "jitter": options.retry.jitter,
        },
        "output": {name: type_name(tp) for name, tp in options.output.items()},
        "condition": options.condition is not None,
        "throttle": None
        if throttle is None
        else {
            "key": throttle.key or f"{workflow.name}:{task.name}",
            "limit": throttle.limit,
            "ttl": throttle.ttl,
        },
        "timeout": options.timeout,
        "dependency_wait": {
            "poll_timeout": wait.poll_timeout,
            "poll_interval": wait.poll_interval,
            "reschedule_delay": wait.reschedule_delay,
        },
        "dry_run": "conditional" if callable(options.dry_run) else options.dry_run,
        "options": options,
    }
