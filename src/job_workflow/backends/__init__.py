"""Queue backends: implementations of :class:`job_workflow.core.ports.QueueBackend`."""
