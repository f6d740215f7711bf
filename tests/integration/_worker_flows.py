"""Workflows for ``test_workers.py``, imported by real worker processes.

The worker runs ``job-workflow worker --import _worker_flows`` with this
folder on PYTHONPATH; the test process imports the same module to enqueue.
Task bodies leave their side effects in a file named by an argument: one
line per ``os.write`` on a file opened for appending (atomic between
processes), flushed to disk with ``fsync``, so a line written just before a
``kill -9`` is still there to be counted.
"""

from __future__ import annotations

import os
import time
from typing import Any

from job_workflow import Workflow, argument, task


def note(path: str, *fields: Any) -> None:
    """Append one line of space-separated fields to ``path``, durably."""
    line = " ".join(str(field) for field in fields) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class FanOut(Workflow):
    """prepare, then ``compute`` fanned out to sub-jobs, then ``total``.

    Each side effect is a line ``<tag> <task> <index> <pid>``.
    """

    name = "worker_flows.FanOut"

    tag = argument(str)
    items = argument(list[int])
    log = argument(str)
    delay = argument(float, default=0.0)

    @task(output={"base": int})
    def prepare(self, ctx):
        note(ctx.arguments.log, ctx.arguments.tag, "prepare", 0, os.getpid())
        return {"base": 100}

    @task(
        depends_on=[prepare],
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 3},
        output={"value": int},
    )
    def compute(self, ctx):
        time.sleep(ctx.arguments.delay)
        args = ctx.arguments
        note(args.log, args.tag, "compute", ctx.each_index, os.getpid())
        return {"value": ctx.output["prepare"][0].base + 2 * ctx.each_value}

    @task(
        depends_on=[compute],
        dependency_wait={
            "poll_timeout": 0.1,
            "poll_interval": 0.02,
            "reschedule_delay": 0.05,
        },
        output={"total": int},
    )
    def total(self, ctx):
        note(ctx.arguments.log, ctx.arguments.tag, "total", 0, os.getpid())
        return {"total": sum(out.value for out in ctx.output["compute"])}


class Throttled(Workflow):
    """Sub-jobs that may run side by side, were it not for a throttle of 1.

    Each body writes ``<start> <end> <pid> <index>`` (``time.time()``), once
    it is done, while it still holds the throttle. Up to 8 are ready at
    once: more than one worker process (2 threads, and 2 in hand) takes, so
    both processes hold the throttle in turn.
    """

    name = "worker_flows.Throttled"

    items = argument(list[int])
    log = argument(str)
    hold = argument(float, default=0.03)

    @task(
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 8},
        throttle={"key": "worker_flows:exclusive", "limit": 1, "ttl": 60},
    )
    def exclusive(self, ctx):
        start = time.time()
        time.sleep(ctx.arguments.hold)
        end = time.time()
        note(ctx.arguments.log, repr(start), repr(end), os.getpid(), ctx.each_index)


class Single(Workflow):
    """One task: ``start <tag> <pid>``, a pause, ``end <tag> <pid>``."""

    name = "worker_flows.Single"

    tag = argument(str)
    log = argument(str)
    delay = argument(float, default=0.0)

    @task(output={"tag": str})
    def only(self, ctx):
        note(ctx.arguments.log, "start", ctx.arguments.tag, os.getpid())
        time.sleep(ctx.arguments.delay)
        note(ctx.arguments.log, "end", ctx.arguments.tag, os.getpid())
        return {"tag": ctx.arguments.tag}


class Boom(Workflow):
    """A first task that passes, a second that raises."""

    name = "worker_flows.Boom"

    @task()
    def fine(self, ctx):
        return None

    @task(depends_on=["fine"])
    def explode(self, ctx):
        raise RuntimeError("boom on purpose")
