"""job-workflow: declarative workflows on a job queue, built testing-first.

Define a :class:`Workflow` with ``@task`` methods, run it with
``perform_now`` or ``perform_later``, and test it with the in-memory
backend, a virtual clock and the simulator.
"""

from job_workflow import events as events
from job_workflow._dry_run import DryRunReport as DryRunReport
from job_workflow._dry_run import dry_run as dry_run
from job_workflow._queue import Queue as Queue
from job_workflow._runtime import ConfiguredCall as ConfiguredCall
from job_workflow._runtime import WorkflowRun as WorkflowRun
from job_workflow._runtime import configure as configure
from job_workflow._runtime import use_backend as use_backend
from job_workflow._runtime import use_clock as use_clock
from job_workflow._status import JobHandle as JobHandle
from job_workflow._status import TaskJobStatus as TaskJobStatus
from job_workflow._status import WorkflowStatus as WorkflowStatus
from job_workflow.core._arguments import argument as argument
from job_workflow.core._context import Context as Context
from job_workflow.core._context import Output as Output
from job_workflow.core._context import TaskOutput as TaskOutput
from job_workflow.core._schedule import Schedule as Schedule
from job_workflow.core._task import Task as Task
from job_workflow.core._task import after as after
from job_workflow.core._task import around as around
from job_workflow.core._task import before as before
from job_workflow.core._task import on_error as on_error
from job_workflow.core._task import task as task
from job_workflow.core._workflow import Namespace as Namespace
from job_workflow.core._workflow import Workflow as Workflow
from job_workflow.core._workflow import schedule as schedule
from job_workflow.errors import AlreadyCalledError as AlreadyCalledError
from job_workflow.errors import ArgumentValidationError as ArgumentValidationError
from job_workflow.errors import CircularDependencyError as CircularDependencyError
from job_workflow.errors import ContextError as ContextError
from job_workflow.errors import DependencyFailedError as DependencyFailedError
from job_workflow.errors import DuplicateTaskError as DuplicateTaskError
from job_workflow.errors import FrozenArgumentsError as FrozenArgumentsError
from job_workflow.errors import InvalidOptionError as InvalidOptionError
from job_workflow.errors import InvariantViolation as InvariantViolation
from job_workflow.errors import NotCalledError as NotCalledError
from job_workflow.errors import OutputError as OutputError
from job_workflow.errors import TaskTimeoutError as TaskTimeoutError
from job_workflow.errors import UnknownTaskError as UnknownTaskError
from job_workflow.errors import UnknownWorkflowError as UnknownWorkflowError
from job_workflow.errors import WorkflowDefinitionError as WorkflowDefinitionError
from job_workflow.errors import WorkflowError as WorkflowError
from job_workflow.errors import WorkflowNotFoundError as WorkflowNotFoundError

__version__ = "0.1.0"

__all__ = [
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
