"""The task graph: cycle detection and the stable run order.

Tasks run one after another in a topological order; among tasks that are
ready at the same time the one defined first runs first, so the order only
changes when the definition does.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A closed path ``[a, b, ..., a]`` following ``edges``, or None.

    ``edges[n]`` lists what ``n`` depends on; the path follows those edges.
    Iterative, so deep chains do not hit the recursion limit.
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in edges:
        if state.get(root):
            continue
        path: list[str] = [root]
        stack = [iter(edges.get(root, ()))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            mark = state.get(child)
            if mark == 1:
                return [*path[path.index(child) :], child]
            if mark is None:
                state[child] = 1
                path.append(child)
                stack.append(iter(edges.get(child, ())))
    return None


def topological_order(
    names: Sequence[str], edges: Mapping[str, Sequence[str]]
) -> list[str]:
    """Kahn's algorithm, picking the earliest-defined ready task each time.

    ``names`` is in definition order; the graph must be acyclic.
    """
    position = {name: i for i, name in enumerate(names)}
    waiting = {name: len(set(edges.get(name, ()))) for name in names}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dependency in set(edges.get(name, ())):
            dependents[dependency].append(name)
    ready = [position[name] for name in names if waiting[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, position[dependent])
    return order
