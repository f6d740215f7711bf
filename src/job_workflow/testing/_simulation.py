"""``SimulationFactory``: what the ``simulation`` fixture gives a test."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from job_workflow.simulator import Faults, Simulation
from job_workflow.simulator._simulation import Duration

__all__ = ["SimulationFactory"]


class SimulationFactory:
    """Makes :class:`Simulation` objects; call it once per scenario.

    ``simulation(workers=4, seed=0, faults=None, durations=None, **options)``
    passes everything on to ``Simulation`` (``options``: ``default_duration``,
    ``start``, ``compare_outputs``). The simulations made are kept in
    ``made``, in order, for a test that wants to look back at them.
    """

    def __init__(self) -> None:
        self.made: list[Simulation] = []

    def __call__(
        self,
        workers: int = 4,
        seed: int = 0,
        faults: Faults | None = None,
        durations: float | Mapping[str, Duration] | None = None,
        **options: Any,
    ) -> Simulation:
        made = Simulation(
            workers=workers, seed=seed, faults=faults, durations=durations, **options
        )
        self.made.append(made)
        return made
