"""The event bus: ``subscribe(pattern, handler)`` and ``capture(pattern)``.

Event names and payload fields are listed in docs/events.md.
"""

from job_workflow.core._events import Event as Event
from job_workflow.core._events import EventBus as EventBus
from job_workflow.core._events import Subscription as Subscription
from job_workflow.core._events import bus as bus
from job_workflow.core._events import capture as capture
from job_workflow.core._events import subscribe as subscribe

__all__ = ["Event", "EventBus", "Subscription", "bus", "capture", "subscribe"]
