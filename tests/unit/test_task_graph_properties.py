"""Property tests for the task graph (guide topic: DSL basics, task dependencies).

Random dependency graphs are turned into `Workflow` classes at run time. For
acyclic graphs the tasks must run in a stable topological order in which, among
the tasks whose dependencies are done, the one defined first runs first; the
same order is reported by `Workflow.tasks` without running anything. A graph
with a cycle must be refused when the class is defined, with
`CircularDependencyError.cycle` naming a closed path of real dependency edges.
"""

import itertools
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job_workflow import Workflow, task, use_backend
from job_workflow.backends.memory import MemoryBackend
from job_workflow.errors import CircularDependencyError

# Names in an order unrelated to the alphabet, so that sorting by name and
# running in definition order give different results.
NAME_POOL = (
    "mike",
    "alpha",
    "zulu",
    "delta",
    "kilo",
    "bravo",
    "yankee",
    "echo",
    "hotel",
    "charlie",
)

_class_ids = itertools.count()


@dataclass(frozen=True)
class Graph:
    """Tasks in definition order and, per task, the names it depends on."""

    names: tuple[str, ...]
    deps: dict[str, tuple[str, ...]]
    # Per (dependent, dependency) edge: pass the task object instead of its name.
    by_object: frozenset[tuple[str, str]] = frozenset()

    def edges(self) -> set[tuple[str, str]]:
        """Every (dependent, dependency) pair."""
        return {(name, dep) for name, deps in self.deps.items() for dep in deps}


@st.composite
def dags(draw, min_tasks: int = 1) -> Graph:
    """A random acyclic graph whose definition order is not a topological one."""
    count = draw(st.integers(min_value=min_tasks, max_value=8))
    names = tuple(draw(st.permutations(NAME_POOL))[:count])
    topo = draw(st.permutations(names))
    deps: dict[str, list[str]] = {name: [] for name in names}
    for earlier, later in itertools.combinations(range(count), 2):
        if draw(st.booleans()):
            deps[topo[later]].append(topo[earlier])
    by_object = _draw_object_references(draw, names, deps)
    return Graph(
        names=names,
        deps={name: tuple(dep_list) for name, dep_list in deps.items()},
        by_object=by_object,
    )


def _draw_object_references(draw, names, deps) -> frozenset[tuple[str, str]]:
    """Pick edges to a task defined earlier to be passed as the task object."""
    position = {name: index for index, name in enumerate(names)}
    chosen = set()
    for name, dep_list in deps.items():
        for dep in dep_list:
            if position[dep] < position[name] and draw(st.booleans()):
                chosen.add((name, dep))
    return frozenset(chosen)


@st.composite
def cyclic_graphs(draw) -> tuple[Graph, tuple[str, str]]:
    """A random DAG plus one back edge; returns the graph and that edge."""
    graph = draw(dags(min_tasks=2))
    deps = {name: list(dep_list) for name, dep_list in graph.deps.items()}
    if not any(deps.values()):
        deps[graph.names[0]].append(graph.names[1])
    pairs = sorted(_ancestor_pairs(deps))
    ancestor, descendant = draw(st.sampled_from(pairs))
    # `descendant` depends (transitively) on `ancestor`; closing the loop.
    deps[ancestor].append(descendant)
    back_edge = (ancestor, descendant)
    cyclic = Graph(
        names=graph.names,
        deps={name: tuple(dep_list) for name, dep_list in deps.items()},
    )
    return cyclic, back_edge


def _ancestor_pairs(deps: dict[str, list[str]]) -> set[tuple[str, str]]:
    """(ancestor, descendant) pairs: descendant depends on ancestor via a path."""
    pairs = set()
    for start in deps:
        stack = list(deps[start])
        seen: set[str] = set()
        while stack:
            dep = stack.pop()
            if dep in seen:
                continue
            seen.add(dep)
            pairs.add((dep, start))
            stack.extend(deps[dep])
    return pairs


def build_workflow(graph: Graph, record: list[str]) -> type[Workflow]:
    """Define a fresh Workflow class for `graph`; bodies append their name."""
    serial = next(_class_ids)
    namespace: dict[str, object] = {
        "__module__": __name__,
        "__qualname__": f"GraphProperty{serial}",
        "name": f"tests.task_graph_properties.Graph{serial}",
    }
    defined: dict[str, object] = {}
    for name in graph.names:
        depends_on = [
            defined[dep] if (name, dep) in graph.by_object else dep
            for dep in graph.deps[name]
        ]
        defined[name] = task(depends_on=depends_on, name=name)(_recorder(name, record))
        namespace[name] = defined[name]
    return type(f"GraphProperty{serial}", (Workflow,), namespace)


def _recorder(name: str, record: list[str]):
    def body(self, ctx):
        record.append(name)

    body.__name__ = name
    body.__qualname__ = name
    return body


def kahn_lowest_index_first(graph: Graph) -> list[str]:
    """Topological order picking the earliest-defined ready task each time."""
    done: set[str] = set()
    order: list[str] = []
    while len(order) < len(graph.names):
        ready = [
            name
            for name in graph.names
            if name not in done and all(dep in done for dep in graph.deps[name])
        ]
        order.append(ready[0])
        done.add(ready[0])
    return order


def run_order(workflow: type[Workflow], record: list[str]) -> list[str]:
    """Run `workflow` synchronously and return the order its bodies ran in."""
    record.clear()
    with use_backend(MemoryBackend(mode="inline")):
        run = workflow.perform_now()
    assert run.status == "succeeded"
    return list(record)


def names_path(cycle: list[str], message: str) -> bool:
    """Whether `message` shows the cycle as "a -> b -> a" (names may be quoted)."""
    pattern = r"\s*->\s*".join(f"['\"]?{re.escape(name)}['\"]?" for name in cycle)
    return re.search(pattern, message) is not None


# --- acyclic graphs ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(dags())
def test_every_dependency_runs_before_its_dependent(graph):
    record: list[str] = []
    order = run_order(build_workflow(graph, record), record)

    assert sorted(order) == sorted(graph.names)
    position = {name: index for index, name in enumerate(order)}
    for dependent, dependency in graph.edges():
        assert position[dependency] < position[dependent]


@settings(max_examples=60, deadline=None)
@given(dags())
def test_run_order_is_stable_across_runs_and_redefinitions(graph):
    record: list[str] = []
    workflow = build_workflow(graph, record)
    first = run_order(workflow, record)
    second = run_order(workflow, record)

    redefined_record: list[str] = []
    redefined = build_workflow(graph, redefined_record)
    third = run_order(redefined, redefined_record)

    assert first == second == third


@settings(max_examples=60, deadline=None)
@given(dags())
def test_definition_order_wins_among_ready_tasks(graph):
    record: list[str] = []
    order = run_order(build_workflow(graph, record), record)

    assert order == kahn_lowest_index_first(graph)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_workflow_tasks_lists_the_run_order_without_running(graph):
    record: list[str] = []
    workflow = build_workflow(graph, record)

    listed = [t.name for t in workflow.tasks]

    assert isinstance(workflow.tasks, tuple)
    assert record == []
    assert listed == kahn_lowest_index_first(graph)


# --- graphs with a cycle ----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(cyclic_graphs())
def test_cycle_is_refused_at_class_definition_with_a_closed_path(case):
    graph, back_edge = case
    record: list[str] = []

    with pytest.raises(CircularDependencyError) as raised:
        build_workflow(graph, record)

    cycle = list(raised.value.cycle)
    assert len(cycle) >= 3
    assert cycle[0] == cycle[-1]
    pairs = list(itertools.pairwise(cycle))
    edges = graph.edges()
    forward = all(pair in edges for pair in pairs)
    backward = all((b, a) in edges for a, b in pairs)
    assert forward or backward, f"{cycle} is not a path of {sorted(edges)}"
    # Every cycle of a DAG plus one edge runs through that edge.
    if forward:
        assert back_edge in pairs
    else:
        assert (back_edge[1], back_edge[0]) in pairs
    assert names_path(cycle, str(raised.value))
    assert record == []


def test_task_depending_on_itself_is_a_cycle():
    graph = Graph(names=("alpha", "bravo"), deps={"alpha": (), "bravo": ("bravo",)})

    with pytest.raises(CircularDependencyError) as raised:
        build_workflow(graph, [])

    assert list(raised.value.cycle) == ["bravo", "bravo"]
    assert names_path(["bravo", "bravo"], str(raised.value))
