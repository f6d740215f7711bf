"""Workflows the ``job-workflow simulate`` tests name as MODULE:Workflow."""

from __future__ import annotations

from typing import Any

from job_workflow import Workflow, argument, task


class Doubler(Workflow):
    """Well behaved: every seed passes check(), faults or not."""

    name = "tests.sim_cli.doubler"
    items = argument(list[int])

    @task(
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 2},
        retry=2,
        throttle=1,
        output={"doubled": int},
    )
    def double(self, ctx: Any) -> dict[str, int]:
        return {"doubled": ctx.each_value * 2}

    @task(depends_on=["double"], dependency_wait=10, output={"total": int})
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.doubled for o in ctx.output["double"])}


class AttemptCounter(Workflow):
    """Buggy on purpose: its output depends on which attempt succeeded.

    Without faults it matches perform_now; a seed whose injected error forces
    a retry produces a different output, which check() reports.
    """

    name = "tests.sim_cli.attempt_counter"
    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, retry=5, output={"attempt": int})
    def count(self, ctx: Any) -> dict[str, int]:
        return {"attempt": ctx.retry_count}


class Starving(Workflow):
    """Polls for its sub-jobs forever: one worker deadlocks on every seed."""

    name = "tests.sim_cli.starving"
    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, enqueue=True, output={"v": int})
    def fetch(self, ctx: Any) -> dict[str, int]:
        return {"v": ctx.each_value}

    @task(depends_on=["fetch"], output={"total": int})
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(o.v for o in ctx.output["fetch"])}
