"""Per-iteration and per-task overhead of the runner.

Runs a 10,000-iteration map task and a 1,000-task chain with perform_now on
the inline memory backend, with no subscriber and with one subscriber on
every event, and prints microseconds per map iteration and per task. Task
bodies do nothing, so the figures are the library's own cost.

    .venv/bin/python benchmarks/core_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from job_workflow import Workflow, argument, events, task, use_backend
from job_workflow.backends.memory import MemoryBackend

MAP_ITERATIONS = 10_000
CHAIN_TASKS = 1_000


class MapBench(Workflow):
    name = "bench.map"
    n = argument(int)

    @task(each=lambda ctx: range(ctx.arguments.n), output={"value": int})
    def square(self, ctx: Any) -> dict[str, int]:
        return {"value": ctx.each_value}


def _chain_workflow(length: int) -> type[Workflow]:
    body: dict[str, Any] = {"name": "bench.chain", "__qualname__": "ChainBench"}
    previous: Any = None
    for i in range(length):

        def step(self: Any, ctx: Any) -> dict[str, int]:
            return {"value": 1}

        declared = task(
            name=f"t{i}",
            depends_on=[previous] if previous is not None else [],
            output={"value": int},
        )(step)
        body[f"t{i}"] = declared
        previous = declared
    return type("ChainBench", (Workflow,), body)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return min(timings), statistics.median(timings)


def _measure(label: str, subscribers: list[str], repeat: int) -> None:
    chain = _chain_workflow(CHAIN_TASKS)
    received = [0]

    def handler(event: events.Event) -> None:
        received[0] += 1

    subs = [events.subscribe(pattern, handler) for pattern in subscribers]
    try:
        with use_backend(MemoryBackend()):
            best_map, median_map = _best(
                lambda: MapBench.perform_now(n=MAP_ITERATIONS), repeat
            )
            best_chain, median_chain = _best(chain.perform_now, repeat)
    finally:
        for sub in subs:
            sub.unsubscribe()
    per_iteration = best_map / MAP_ITERATIONS * 1e6
    per_task = best_chain / CHAIN_TASKS * 1e6
    print(
        f"{label:<28} map: {per_iteration:7.2f} us/iteration "
        f"(median {median_map / MAP_ITERATIONS * 1e6:.2f})   "
        f"chain: {per_task:7.2f} us/task "
        f"(median {median_chain / CHAIN_TASKS * 1e6:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{MAP_ITERATIONS:,}-iteration map and {CHAIN_TASKS:,}-task chain, "
        f"best of {args.repeat} (target: < 30 us per map iteration, no subscriber)"
    )
    _measure("no subscriber", [], args.repeat)
    _measure("one subscriber, every event", ["*"], args.repeat)


if __name__ == "__main__":
    main()
