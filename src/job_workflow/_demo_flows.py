"""The workflow of ``job-workflow demo`` and ``make demo``: an order report.

It fans out one sub-job per region (at most three at once), calls a flaky
"pricing service" behind a shared throttle with retries, waits for every
region without holding a worker, and publishes a report, a side effect that
a dry run holds back.
"""

from __future__ import annotations

from typing import Any

from job_workflow import Workflow, argument, task

PRICES = {"north": 3, "south": 5, "east": 7, "west": 11, "central": 13}


class OrderReport(Workflow):
    """Totals the orders of each region and publishes one report."""

    name = "examples.OrderReport"
    queue = "reports"

    regions = argument(list[str])
    orders_per_region = argument(int, default=4)

    @task(output={"regions": list[str]})
    def plan(self, ctx: Any) -> dict[str, Any]:
        unknown = [r for r in ctx.arguments.regions if r not in PRICES]
        if unknown:
            raise ValueError(f"unknown regions: {unknown}")
        return {"regions": sorted(set(ctx.arguments.regions))}

    @task(
        depends_on=[plan],
        each=lambda ctx: ctx.output["plan"][0].regions,
        enqueue={"concurrency": 3},
        retry={"count": 3, "strategy": "exponential", "base_delay": 2, "jitter": True},
        throttle={"key": "pricing-service", "limit": 2},
        output={"region": str, "revenue": int},
    )
    def price_region(self, ctx: Any) -> dict[str, Any]:
        region = ctx.each_value
        revenue = PRICES[region] * ctx.arguments.orders_per_region
        return {"region": region, "revenue": revenue}

    @task(
        depends_on=[price_region],
        dependency_wait={"poll_timeout": 10, "poll_interval": 1, "reschedule_delay": 3},
        output={"total": int, "best_region": str},
    )
    def summarise(self, ctx: Any) -> dict[str, Any]:
        rows = ctx.output["price_region"]
        best = max(rows, key=lambda row: row.revenue)
        return {"total": sum(row.revenue for row in rows), "best_region": best.region}

    @task(depends_on=[summarise], output={"published": bool})
    def publish(self, ctx: Any) -> dict[str, Any]:
        summary = ctx.output["summarise"][0]
        published = ctx.skip_in_dry_run(
            lambda: _publish(summary.total, summary.best_region),
            name="publish report",
            fallback=False,
        )
        return {"published": published}


def _publish(total: int, best_region: str) -> bool:
    """Stands in for an e-mail or an upload: the side effect of the workflow."""
    return total > 0 and bool(best_region)
