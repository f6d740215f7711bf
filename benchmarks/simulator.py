"""Speed of the deterministic simulator.

1,000 workflows, each a map task of 10 enqueued iterations followed by a
task that waits for them (a dependency wait that reschedules), on 50
simulated workers: once without faults and once with a fault plan. Prints
simulated job executions per wall second (every claim of a job by a worker,
so a rescheduled or recovered job counts each time it runs) and how many
virtual seconds pass per wall second. Each mode runs ``--repeat`` times (the
same seed, so the same simulation); the best run is reported with the
median beside it, since a shared machine only ever makes a run slower.

    .venv/bin/python benchmarks/simulator.py [--workflows 1000] [--repeat 3]
        [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from typing import Any

from job_workflow import Workflow, argument, task
from job_workflow.errors import InvariantViolation
from job_workflow.simulator import Faults, Simulation, SimulationResult

ITERATIONS = 10
WORKERS = 50
FAULTS = Faults(
    task_errors=0.05,
    crashes=0.01,
    duplicate_delivery=0.01,
    slow_tasks=0.05,
    backend_errors=0.005,
)
TARGET = 20_000  # simulated job executions per wall second


class Batch(Workflow):
    name = "bench.simulator.batch"
    items = argument(list[int])

    @task(
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 5},
        retry={"count": 3, "base_delay": 2, "jitter": True},
        output={"doubled": int},
    )
    def double(self, ctx: Any) -> dict[str, int]:
        return {"doubled": ctx.each_value * 2}

    @task(
        depends_on=["double"],
        dependency_wait={"poll_timeout": 10, "poll_interval": 2},
        retry=2,
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.doubled for o in ctx.output["double"])}


def simulate(workflows: int, faults: Faults | None) -> tuple[SimulationResult, float]:
    sim = Simulation(workers=WORKERS, seed=7, faults=faults)
    for n in range(workflows):
        sim.enqueue(Batch, items=[n + i for i in range(ITERATIONS)])
    started = time.perf_counter()
    result = sim.run_until_idle()
    return result, time.perf_counter() - started


def report(label: str, result: SimulationResult, walls: list[float]) -> int:
    executions = sum(1 for entry in result.trace if entry.event == "job.claim")
    statuses = list(result.statuses.values())
    wall = min(walls)
    rate = executions / wall
    median = executions / statistics.median(walls)
    print(
        f"{label:>12}: {executions:,} job executions "
        f"({len(result.trace):,} trace entries) in {wall:.2f} s wall = "
        f"{rate:,.0f} executions/s (median of {len(walls)}: {median:,.0f}/s); "
        f"{result.metrics.makespan:,.0f} virtual s = "
        f"{result.metrics.makespan / wall:,.0f}x wall; "
        f"{statuses.count('succeeded')}/{len(statuses)} succeeded"
    )
    return int(rate)


def verdict(result: SimulationResult) -> str:
    try:
        result.check()
    except InvariantViolation as exc:
        return f"FAILED: {str(exc).splitlines()[0]}"
    return "passed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="print cProfile's top 25 functions"
    )
    args = parser.parse_args()
    if args.workflows < 1 or args.repeat < 1:
        parser.error("--workflows and --repeat must be at least 1")
    print(
        f"{args.workflows:,} workflows x {ITERATIONS} enqueued iterations "
        f"on {WORKERS} workers (target {TARGET:,} executions/s)"
    )
    for label, faults in (("no faults", None), ("with faults", FAULTS)):
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
        walls: list[float] = []
        for _ in range(1 if args.profile else args.repeat):
            result, wall = simulate(args.workflows, faults)
            walls.append(wall)
        if args.profile:
            profiler.disable()
        rate = report(label, result, walls)
        print(f"{'':>12}  check(): {verdict(result)}")
        if rate < TARGET:
            print(f"{'':>12}  below the target of {TARGET:,} executions/s")
        if args.profile:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
