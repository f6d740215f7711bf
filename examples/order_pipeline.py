"""An example workflow that uses every option the graphs show.

Used by ``examples/render_docs_images.py`` (the pictures in docs/graphs.md)
and handy for trying the CLI::

    cd examples
    job-workflow graph order_pipeline:OrderPipeline --format mermaid
    job-workflow dry-run order_pipeline:OrderPipeline --args '{"order_ids": [1, 2]}'
"""

from __future__ import annotations

from typing import Any

from job_workflow import Namespace, Workflow, argument, task


def _order_ids(ctx: Any) -> list[int]:
    return list(ctx.arguments.order_ids)


class OrderPipeline(Workflow):
    """Fetch orders, validate and charge each one, then report and notify."""

    name = "examples.OrderPipeline"
    queue = "orders"

    order_ids = argument(list[int])
    notify = argument(bool, default=True)

    @task(output={"count": int})
    def fetch(self, ctx: Any) -> dict[str, Any]:
        return {"count": len(ctx.arguments.order_ids)}

    class payment(Namespace):
        @task(depends_on=["fetch"], each=_order_ids, output={"valid": bool})
        def validate(self, ctx: Any) -> dict[str, Any]:
            if ctx.each_value <= 0:
                raise ValueError(f"order id {ctx.each_value} is not positive")
            return {"valid": True}

        @task(
            depends_on=["validate"],
            each=_order_ids,
            enqueue={"queue": "payments", "concurrency": 5},
            retry={"count": 3, "strategy": "exponential", "base_delay": 2},
            throttle={"key": "payment-gateway", "limit": 10},
            output={"charge_id": str},
        )
        def charge(self, ctx: Any) -> dict[str, Any]:
            charge_id = ctx.skip_in_dry_run(
                lambda: f"ch_{ctx.each_value}",
                name="gateway.charge",
                fallback="ch_dry_run",
            )
            return {"charge_id": charge_id}

    @task(
        depends_on=["payment:charge"],
        dependency_wait={"poll_timeout": 30, "reschedule_delay": 10},
        output={"charged": int},
    )
    def summarize(self, ctx: Any) -> dict[str, Any]:
        return {"charged": len(ctx.output["payment:charge"])}

    @task(depends_on=[summarize], condition=lambda ctx: ctx.arguments.notify)
    def notify_customers(self, ctx: Any) -> None:
        ctx.skip_in_dry_run(lambda: None, name="email")

    @task(depends_on=[summarize], throttle=2, timeout=60)
    def publish_report(self, ctx: Any) -> None:
        ctx.skip_in_dry_run(lambda: None, name="upload")
