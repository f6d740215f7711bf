"""Workflows the CLI tests name on the command line (``_cli_workflows:Orders``).

Not a test module: the tests put this directory on ``sys.path`` (in-process)
or ``PYTHONPATH`` (subprocess) and let the CLI import it by name.
"""

from __future__ import annotations

import datetime
from typing import Any

from job_workflow import Namespace, Workflow, argument, task

NOT_A_WORKFLOW = 42


class Orders(Workflow):
    name = "tests.cli.Orders"

    order_ids = argument(list[int])
    notify = argument(bool, default=True)

    @task(output={"count": int})
    def fetch(self, ctx: Any) -> dict[str, Any]:
        return {"count": len(ctx.arguments.order_ids)}

    class payment(Namespace):
        @task(
            depends_on=["fetch"],
            each=lambda ctx: ctx.arguments.order_ids,
            enqueue={"queue": "payments", "concurrency": 2},
            output={"charge_id": str},
        )
        def charge(self, ctx: Any) -> dict[str, Any]:
            if ctx.each_value < 0:
                raise ValueError(f"bad order {ctx.each_value}")
            charge_id = ctx.skip_in_dry_run(
                lambda: "real", name="gateway", fallback="ch_dry"
            )
            return {"charge_id": charge_id}

    @task(depends_on=["payment:charge"], condition=lambda ctx: ctx.arguments.notify)
    def email(self, ctx: Any) -> None:
        ctx.skip_in_dry_run(lambda: None, name="smtp")


class Dated(Workflow):
    name = "tests.cli.Dated"

    day = argument(datetime.date)

    @task(output={"weekday": int})
    def weekday(self, ctx: Any) -> dict[str, Any]:
        return {"weekday": ctx.arguments.day.weekday()}
