"""Throughput of the queued in-memory backend.

One workflow whose map task enqueues 10,000 sub-jobs, drained by 1 and by 4
worker threads; prints jobs per second (sub-jobs plus the parent).

    .venv/bin/python benchmarks/memory_queue.py [--iterations 10000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from job_workflow import Workflow, argument, task, use_backend
from job_workflow.backends.memory import MemoryBackend


class FanOut(Workflow):
    name = "bench.fan_out"
    n = argument(int)

    @task(
        each=lambda ctx: range(ctx.arguments.n),
        enqueue=True,
        output={"value": int},
    )
    def work(self, ctx: Any) -> dict[str, int]:
        return {"value": ctx.each_value}

    @task(
        depends_on=["work"],
        dependency_wait={
            "poll_timeout": 0.01,
            "poll_interval": 0.01,
            "reschedule_delay": 0,
        },
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.value for o in ctx.output["work"])}


def run(iterations: int, threads: int) -> None:
    backend = MemoryBackend("queued")
    with use_backend(backend):
        handle = FanOut.perform_later(n=iterations)
        started = time.perf_counter()
        backend.drain(threads=threads, timeout=600)
        elapsed = time.perf_counter() - started
        assert handle.status() == "succeeded", handle.status()
    jobs = len(backend.jobs())
    print(
        f"{threads} thread(s): {jobs:,} jobs in {elapsed:6.2f} s = "
        f"{jobs / elapsed:9,.0f} jobs/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10_000)
    args = parser.parse_args()
    for threads in (1, 4):
        run(args.iterations, threads)


if __name__ == "__main__":
    main()
