"""``Queue``: pause, resume and inspect the queues of the process backend."""

from __future__ import annotations

from job_workflow._runtime import current_backend, current_clock
from job_workflow.core._events import bus
from job_workflow.core._workflow import Workflow, registry
from job_workflow.core.ports import QueueBackend


class Queue:
    """Operations on named queues; every method takes an optional ``backend``.

    Pausing a queue keeps its jobs (new ones are still enqueued) and stops
    workers from claiming them until it is resumed.
    """

    @staticmethod
    def pause(queue: str, *, backend: QueueBackend | None = None) -> None:
        (backend or current_backend()).pause(_name(queue))
        bus.emit("queue.pause", {"queue_name": queue})

    @staticmethod
    def resume(queue: str, *, backend: QueueBackend | None = None) -> None:
        (backend or current_backend()).resume(_name(queue))
        bus.emit("queue.resume", {"queue_name": queue})

    @staticmethod
    def is_paused(queue: str, *, backend: QueueBackend | None = None) -> bool:
        return _name(queue) in (backend or current_backend()).paused_queues()

    @staticmethod
    def paused_queues(*, backend: QueueBackend | None = None) -> list[str]:
        return (backend or current_backend()).paused_queues()

    @staticmethod
    def latency(queue: str, *, backend: QueueBackend | None = None) -> float:
        """Seconds the oldest ready job of ``queue`` has waited (0 when none)."""
        return (backend or current_backend()).queue_latency(
            _name(queue), current_clock().now()
        )

    @staticmethod
    def size(queue: str, *, backend: QueueBackend | None = None) -> int:
        """Number of jobs of ``queue`` ready to be claimed."""
        return (backend or current_backend()).queue_size(_name(queue))

    @staticmethod
    def clear(queue: str, *, backend: QueueBackend | None = None) -> int:
        """Fail every ready job of ``queue``; returns how many.

        Cleared jobs are marked failed (error class ``QueueCleared``) rather
        than deleted, so a parent waiting on one fails visibly instead of
        waiting forever.
        """
        return (backend or current_backend()).clear_queue(_name(queue))

    @staticmethod
    def workflows(queue: str) -> list[type[Workflow]]:
        """Registered workflow classes whose jobs go to ``queue``."""
        name = _name(queue)
        return [cls for cls in registry.classes() if cls.queue == name]


def _name(queue: str) -> str:
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"queue name must be a non-empty str, got {queue!r}")
    return queue
