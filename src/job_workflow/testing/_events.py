"""``CapturedEvents``: the list the ``captured_events`` fixture fills."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase

from job_workflow.core._events import Event, bus

__all__ = ["CapturedEvents", "capture_events"]

_SHOWN = 8


class CapturedEvents(list[Event]):
    """Events in the order they were emitted, with two filters.

    It is a plain ``list`` of :class:`~job_workflow.events.Event`, so
    indexing, ``len`` and comparisons work as usual. Worker threads append
    to it too, so events of jobs run by ``drain`` land here as well.
    """

    def __repr__(self) -> str:
        # Short, because pytest prints fixture values when a test fails.
        shown = ", ".join(event.name for event in self[:_SHOWN])
        more = f", ... {len(self) - _SHOWN} more" if len(self) > _SHOWN else ""
        return f"<CapturedEvents: {len(self)} events [{shown}{more}]>"

    def names(self, pattern: str = "*") -> list[str]:
        """The names of the events matching the glob ``pattern``, in order."""
        return [event.name for event in self if fnmatchcase(event.name, pattern)]

    def named(self, pattern: str) -> CapturedEvents:
        """A new ``CapturedEvents`` of the events whose name matches ``pattern``."""
        return CapturedEvents(e for e in self if fnmatchcase(e.name, pattern))


@contextmanager
def capture_events(pattern: str = "*") -> Iterator[CapturedEvents]:
    """Collect every event matching ``pattern`` emitted inside the block."""
    captured = CapturedEvents()
    subscription = bus.subscribe(pattern, captured.append)
    try:
        yield captured
    finally:
        subscription.unsubscribe()
