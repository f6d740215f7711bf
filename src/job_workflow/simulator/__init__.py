"""The deterministic simulator: virtual time, simulated workers, faults.

``Simulation`` runs workflows on simulated workers over a virtual clock and
an in-memory backend; ``SimulationResult.check()`` verifies the invariants;
``job_workflow.simulator.strategies`` holds hypothesis strategies.
"""

from job_workflow.simulator._faults import Faults as Faults
from job_workflow.simulator._faults import InjectedTaskError as InjectedTaskError
from job_workflow.simulator._result import Metrics as Metrics
from job_workflow.simulator._result import SimulationResult as SimulationResult
from job_workflow.simulator._result import Span as Span
from job_workflow.simulator._result import Trace as Trace
from job_workflow.simulator._result import TraceEntry as TraceEntry
from job_workflow.simulator._simulation import Simulation as Simulation

__all__ = [
    "Faults",
    "InjectedTaskError",
    "Metrics",
    "Simulation",
    "SimulationResult",
    "Span",
    "Trace",
    "TraceEntry",
]
