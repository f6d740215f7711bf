"""Time to build DOT and Mermaid text for a generated 2,000-task workflow.

The workflow mixes every option the pictures show (map tasks, sub-jobs with
concurrency limits, throttles, conditions, retries, dependency waits) over
20 namespaces, each task depending on the previous one and on one further
back. Only text is built (no graphviz), so the figures are the library's
own cost; the aim is under one second each.

    .venv/bin/python benchmarks/render.py [--tasks 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from job_workflow import Namespace, Workflow, task
from job_workflow.viz import to_dot, to_mermaid, to_networkx

NAMESPACES = 20


def _options(i: int) -> dict[str, Any]:
    """A deterministic mix of options for task number ``i``."""
    options: dict[str, Any] = {}
    if i % 5 == 1:
        options["each"] = lambda ctx: [1, 2, 3]
        options["enqueue"] = {"queue": f"q{i % 3}", "concurrency": 1 + i % 7}
    if i % 7 == 2:
        options["throttle"] = 1 + i % 10
    if i % 11 == 3:
        options["condition"] = lambda ctx: True
    if i % 13 == 4:
        options["retry"] = {"count": 3, "strategy": "linear"}
    if i % 5 == 2:
        options["dependency_wait"] = {"poll_timeout": 30}
    return options


def _name(i: int, per_namespace: int) -> tuple[str, str]:
    """(namespace, full name) of task ``i``; the first block is at the root."""
    block = i // per_namespace
    namespace = "" if block == 0 else f"ns{block}"
    return namespace, f"{namespace}:t{i}" if namespace else f"t{i}"


def generated_workflow(size: int) -> type[Workflow]:
    per_namespace = max(1, size // NAMESPACES)
    root: dict[str, Any] = {"name": "bench.render", "__qualname__": "RenderBench"}
    spaces: dict[str, dict[str, Any]] = {}
    for i in range(size):

        def step(self: Any, ctx: Any) -> None:
            return None

        depends = [_name(j, per_namespace)[1] for j in (i - 1, i - 7) if j >= 0]
        namespace, _ = _name(i, per_namespace)
        declared = task(name=f"t{i}", depends_on=depends, **_options(i))(step)
        (spaces.setdefault(namespace, {}) if namespace else root)[f"t{i}"] = declared
    for namespace, body in spaces.items():
        root[namespace] = type(namespace, (Namespace,), body)
    return type("RenderBench", (Workflow,), root)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return min(timings), statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    workflow = generated_workflow(args.tasks)
    defined = time.perf_counter() - started
    edges = sum(len(t.depends_on) for t in workflow.tasks)
    dot, mermaid = to_dot(workflow), to_mermaid(workflow)
    print(
        f"workflow: {len(workflow.tasks)} tasks, {edges} dependencies, "
        f"{NAMESPACES - 1} namespaces (class defined in {defined * 1000:.0f} ms)"
    )
    print(
        f"output size: DOT {len(dot) / 1e6:.2f} MB, Mermaid {len(mermaid) / 1e6:.2f} MB"
    )
    for label, fn in [
        ("to_dot", lambda: to_dot(workflow)),
        ("to_mermaid", lambda: to_mermaid(workflow)),
        ("to_networkx", lambda: to_networkx(workflow)),
    ]:
        best, median = _best(fn, args.repeat)
        verdict = "ok" if best < 1.0 else "SLOWER THAN 1 s"
        print(
            f"{label:<12} best {best * 1000:7.1f} ms   median {median * 1000:7.1f} ms"
            f"   ({verdict})"
        )


if __name__ == "__main__":
    main()
