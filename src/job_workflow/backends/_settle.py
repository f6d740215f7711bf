"""A settle refused because the job is no longer the settling worker's.

Both backends answer such a settle (``finish``, ``fail``, ``reschedule``
with a ``worker_id``) with False and this log record, never an exception:
the late worker did nothing wrong.
"""

from __future__ import annotations

import logging
from typing import Literal

__all__ = ["Settle", "settled"]

_log = logging.getLogger("job_workflow")

Settle = Literal["finish", "fail", "reschedule"]


def settled(applied: bool, job_id: str, worker_id: str | None, settle: Settle) -> bool:
    """Return ``applied``; log the settle when a worker's was refused.

    INFO, not WARNING: nothing is lost and nobody has to act. The usual
    cause is a worker presumed dead while it was only slow, whose job
    another worker claimed and runs: at-least-once delivery as documented.
    Many of these mean an ``--alive-threshold`` shorter than the pauses
    of some worker.
    """
    if not applied and worker_id is not None:
        _log.info(
            "a worker settled a job it no longer holds; nothing changed",
            extra={
                "event": "job.stale_settle",
                "job_id": job_id,
                "worker_id": worker_id,
                "settle": settle,
            },
        )
    return applied
