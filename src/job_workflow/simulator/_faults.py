"""The faults a simulation injects, each drawn from the simulation's seed."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

CRASH_POINTS = ("claimed", "before_body", "before_enqueue", "before_record")


class InjectedTaskError(Exception):
    """The error a simulation raises inside a task attempt on purpose."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Probabilities of each fault, per opportunity, and recovery timings.

    - ``task_errors``: an attempt raises :class:`InjectedTaskError` (so
      retries and on_error hooks run as for a real failure);
    - ``crashes``: the worker dies at a crash point: just after claiming
      (``claimed``), in the middle of a task (``before_body``), between
      persisting the parent's progress and enqueuing sub-jobs
      (``before_enqueue``), or between finishing an iteration and recording
      it (``before_record``); ``crash_points`` limits where;
    - ``duplicate_delivery``: a claimed job is handed to a second worker too
      (a stale claim), as happens when a slow worker is presumed dead;
    - ``slow_tasks``: an iteration takes ``slow_factor`` times its duration;
    - ``backend_errors``: a backend call fails at a step, which the worker
      treats like a crash of its process;
    - ``lease_expiry``: a throttle lease expires while its holder still runs;
    - ``stale_reads``: a job waiting for its sub-jobs reads their progress
      as it was at its previous read (a lagging replica, a cached answer);
    - ``late_finish``: a job that rescheduled itself is also reported
      finished by the worker that ran it, some time before it comes due
      again (an acknowledgement arriving late, the bug that had Solid Queue
      mark rescheduled jobs finished); the backend must refuse it.

    A crashed worker restarts after ``restart_delay`` seconds under a new id;
    its claimed jobs return to the queue ``alive_threshold`` seconds after
    its last heartbeat, as a supervisor would release them.
    """

    task_errors: float = 0.0
    crashes: float = 0.0
    crash_points: tuple[str, ...] = CRASH_POINTS
    duplicate_delivery: float = 0.0
    slow_tasks: float = 0.0
    slow_factor: float = 10.0
    backend_errors: float = 0.0
    lease_expiry: float = 0.0
    stale_reads: float = 0.0
    late_finish: float = 0.0
    restart_delay: float = 5.0
    alive_threshold: float = 60.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "crash_points":
                unknown = sorted(set(value) - set(CRASH_POINTS))
                if unknown:
                    raise ValueError(
                        f"unknown crash point(s) {unknown}; known: {list(CRASH_POINTS)}"
                    )
            elif field.name in ("slow_factor", "restart_delay", "alive_threshold"):
                _check_positive(field.name, value)
            else:
                _check_probability(field.name, value)

    @property
    def any(self) -> bool:
        return any(
            getattr(self, name) > 0
            for name in (
                "task_errors",
                "crashes",
                "duplicate_delivery",
                "slow_tasks",
                "backend_errors",
                "lease_expiry",
                "stale_reads",
                "late_finish",
            )
        )


def _check_probability(name: str, value: Any) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 <= value <= 1
    ):
        raise ValueError(
            f"Faults.{name} must be a probability in [0, 1], got {value!r}"
        )


def _check_positive(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"Faults.{name} must be a number > 0, got {value!r}")
