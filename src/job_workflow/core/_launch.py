"""The seam between workflow classes and the runtime that runs them.

``Workflow.perform_now`` and friends live on the class, but starting a run
needs a backend and a clock, which the pure core does not own. The package
installs a :class:`Launcher` at import time; the core only knows this shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from job_workflow.core._workflow import Workflow


class Launcher(Protocol):
    def perform_now(
        self,
        cls: type[Workflow],
        arguments: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any: ...

    def perform_later(
        self,
        cls: type[Workflow],
        arguments: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any: ...

    def configured(self, cls: type[Workflow], options: Mapping[str, Any]) -> Any: ...
