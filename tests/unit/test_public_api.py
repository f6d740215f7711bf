"""The public surface is pinned: nothing leaks in or out by accident."""

from __future__ import annotations

import job_workflow
from job_workflow import errors

EXPECTED = [
    "AlreadyCalledError",
    "ArgumentValidationError",
    "CircularDependencyError",
    "ConfiguredCall",
    "Context",
    "ContextError",
    "DependencyFailedError",
    "DryRunReport",
    "DuplicateTaskError",
    "FrozenArgumentsError",
    "InvalidOptionError",
    "InvariantViolation",
    "JobHandle",
    "Namespace",
    "NotCalledError",
    "Output",
    "OutputError",
    "Queue",
    "Schedule",
    "Task",
    "TaskJobStatus",
    "TaskOutput",
    "TaskTimeoutError",
    "UnknownTaskError",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowNotFoundError",
    "WorkflowRun",
    "WorkflowStatus",
    "__version__",
    "after",
    "argument",
    "around",
    "before",
    "configure",
    "dry_run",
    "events",
    "on_error",
    "schedule",
    "task",
    "use_backend",
    "use_clock",
]


def test_all_is_pinned() -> None:
    assert sorted(job_workflow.__all__) == sorted(EXPECTED)


def test_every_exported_name_exists() -> None:
    missing = [name for name in job_workflow.__all__ if not hasattr(job_workflow, name)]
    assert missing == []


def test_every_error_is_exported_from_the_package() -> None:
    for name in errors.__all__:
        assert getattr(job_workflow, name) is getattr(errors, name)
