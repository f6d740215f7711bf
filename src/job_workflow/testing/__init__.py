"""Helpers for testing workflows; the pytest plugin lives in ``.plugin``.

- :func:`run_task`: run one task against upstream outputs you choose;
- :func:`drain`: run queued jobs on any backend (memory or SQL) until done;
- :func:`assert_succeeded`, :func:`assert_failed`,
  :func:`assert_event_sequence`: assertions with readable failure messages;
- :class:`CapturedEvents` and :class:`SimulationFactory`: the types of the
  ``captured_events`` and ``simulation`` fixtures, for annotations.

The names load on first use: pytest imports this package (to reach the
plugin) before coverage starts, so it imports nothing up front.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from job_workflow.testing._assertions import (
        assert_event_sequence as assert_event_sequence,
    )
    from job_workflow.testing._assertions import assert_failed as assert_failed
    from job_workflow.testing._assertions import assert_succeeded as assert_succeeded
    from job_workflow.testing._drain import drain as drain
    from job_workflow.testing._events import CapturedEvents as CapturedEvents
    from job_workflow.testing._run_task import run_task as run_task
    from job_workflow.testing._simulation import SimulationFactory as SimulationFactory

__all__ = [
    "CapturedEvents",
    "SimulationFactory",
    "assert_event_sequence",
    "assert_failed",
    "assert_succeeded",
    "drain",
    "run_task",
]

_HOMES = {
    "CapturedEvents": "_events",
    "SimulationFactory": "_simulation",
    "assert_event_sequence": "_assertions",
    "assert_failed": "_assertions",
    "assert_succeeded": "_assertions",
    "drain": "_drain",
    "run_task": "_run_task",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
