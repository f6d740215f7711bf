"""Pictures of workflows: networkx graphs, DOT, Mermaid, SVG and PNG.

``to_networkx``, ``to_dot``, ``to_mermaid`` and ``render`` accept a Workflow
class, a :class:`~job_workflow.DryRunReport` or a
:class:`~job_workflow.simulator.SimulationResult` (both drawn over the graph:
ran, skipped, failed, iterations, sub-jobs; for a simulation also retries,
reschedules and crashes per task). ``timeline`` draws a simulation as workers
over virtual time, in hand-written SVG. SVG and PNG graphs need graphviz's
``dot`` program; DOT and Mermaid text need nothing beyond networkx, which
comes with the ``viz`` extra: ``pip install 'job-workflow[viz]'``.

Errors::

    RuntimeError
    └── RenderError                 (dot failed or could not run)
        └── GraphvizNotFoundError   (dot is not installed)
"""

try:
    import networkx as _networkx  # noqa: F401  (fail here, with the fix)
except ImportError as _exc:  # pragma: no cover - exercised in a test subprocess
    raise ImportError(
        "job_workflow.viz needs networkx: pip install 'job-workflow[viz]'"
    ) from _exc

from job_workflow.viz._api import FORMATS as FORMATS
from job_workflow.viz._api import render as render
from job_workflow.viz._api import timeline as timeline
from job_workflow.viz._api import to_dot as to_dot
from job_workflow.viz._api import to_mermaid as to_mermaid
from job_workflow.viz._api import to_networkx as to_networkx
from job_workflow.viz._render import GraphvizNotFoundError as GraphvizNotFoundError
from job_workflow.viz._render import RenderError as RenderError

__all__ = [
    "FORMATS",
    "GraphvizNotFoundError",
    "RenderError",
    "render",
    "timeline",
    "to_dot",
    "to_mermaid",
    "to_networkx",
]
