"""Reading a workflow's status back: ``WorkflowStatus`` and ``JobHandle``.

A workflow is its own job plus every sub-job it enqueued, so its status is
an aggregate: it has succeeded only when all of them finished, failed as
soon as one failed for good, and is pending until a worker first picked it
up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from job_workflow.core import _codec
from job_workflow.core._arguments import Arguments
from job_workflow.core._context import Output, TaskOutput
from job_workflow.core._runner import decode_output
from job_workflow.core._workflow import registry
from job_workflow.core.ports import (
    Clock,
    JobError,
    JobRecord,
    JobStatus,
    QueueBackend,
)
from job_workflow.errors import UnknownWorkflowError, WorkflowNotFoundError

Status = Literal["pending", "running", "succeeded", "failed"]

_JOB_STATUS: dict[str, Status] = {
    "ready": "pending",
    "scheduled": "pending",
    "blocked": "pending",
    "claimed": "running",
    "finished": "succeeded",
    "failed": "failed",
}


def aggregate_status(job: JobRecord, sub_jobs: list[JobRecord]) -> Status:
    """pending / running / succeeded / failed over a job and its sub-jobs."""
    statuses = [job.status, *(sub.status for sub in sub_jobs)]
    return aggregate(statuses, job.executions)


def aggregate(statuses: list[JobStatus], executions: int) -> Status:
    """The aggregate of a job's status (first) and its sub-jobs' statuses."""
    if "failed" in statuses:
        return "failed"
    if statuses.count("finished") == len(statuses):
        return "succeeded"
    if executions == 0 and statuses[0] != "claimed":
        return "pending"
    return "running"


@dataclass(frozen=True, slots=True)
class TaskJobStatus:
    """How one task (or one sub-job of it) of a workflow stands."""

    task_name: str
    job_id: str
    each_index: int | None
    status: str

    @property
    def is_finished(self) -> bool:
        return self.status in ("succeeded", "failed", "skipped")

    @property
    def is_succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"


def _decoded(workflow: str, task: str, data: dict[str, Any]) -> dict[str, Any]:
    """Output data typed by its declaration when the workflow is known here."""
    try:
        declared = registry.get(workflow).get_task(task).options.output
    except (UnknownWorkflowError, LookupError):
        return data
    return decode_output(declared, data)


class WorkflowStatus:
    """A snapshot of one workflow run, read from the backend."""

    def __init__(
        self, job: JobRecord, sub_jobs: list[JobRecord], backend: QueueBackend
    ) -> None:
        self.job_id = job.id
        self.workflow_name = job.workflow
        self.status: Status = aggregate_status(job, sub_jobs)
        self.current_task_name = job.current_task if self.status == "running" else None
        self.error: JobError | None = job.error or next(
            (sub.error for sub in sub_jobs if sub.error is not None), None
        )
        state = backend.load_state(job.id)
        self._job = job
        self._sub_jobs = sub_jobs
        self._state_tasks = dict(state.tasks)
        self._outputs = {
            name: {
                i: TaskOutput(name, i, _decoded(job.workflow, name, data))
                for i, data in by_index.items()
            }
            for name, by_index in state.outputs.items()
        }

    @classmethod
    def find(
        cls, job_id: str, *, backend: QueueBackend | None = None
    ) -> WorkflowStatus:
        """The status of workflow job ``job_id``; raises WorkflowNotFoundError."""
        found = cls.find_by(job_id=job_id, backend=backend)
        if found is None:
            raise WorkflowNotFoundError(job_id)
        return found

    @classmethod
    def find_by(
        cls, *, job_id: str, backend: QueueBackend | None = None
    ) -> WorkflowStatus | None:
        """Like :meth:`find`, but None when there is no such job."""
        if backend is None:
            from job_workflow._runtime import current_backend

            backend = current_backend()
        job = backend.get_job(job_id)
        if job is None:
            return None
        return cls(job, backend.sub_jobs(job_id), backend)

    # -- predicates --

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"

    @property
    def is_running(self) -> bool:
        return self.status == "running"

    @property
    def is_succeeded(self) -> bool:
        return self.status == "succeeded"

    is_completed = is_succeeded

    @property
    def is_failed(self) -> bool:
        return self.status == "failed"

    # -- contents --

    @property
    def arguments(self) -> Arguments:
        """The workflow's arguments (decoded by their declared types when known)."""
        try:
            cls = registry.get(self.workflow_name)
        except UnknownWorkflowError:
            return Arguments(self._job.arguments)
        from job_workflow.core import _arguments

        return Arguments(
            _arguments.decode(cls.arguments, self._job.arguments, self.workflow_name)
        )

    @property
    def output(self) -> Mapping[str, list[TaskOutput]]:
        """Outputs so far; an :class:`Output` when the workflow is registered here."""
        try:
            cls = registry.get(self.workflow_name)
        except UnknownWorkflowError:
            return {
                name: [by_index[i] for i in sorted(by_index)]
                for name, by_index in self._outputs.items()
            }
        return Output(cls, self._outputs)

    @property
    def job_status(self) -> dict[str, list[TaskJobStatus]]:
        """Task name -> one entry per sub-job (or one for an in-process task)."""
        table: dict[str, list[TaskJobStatus]] = {}
        for name, outcome in self._state_tasks.items():
            if outcome != "enqueued":
                status = "skipped" if outcome == "skipped" else "succeeded"
                table[name] = [TaskJobStatus(name, self.job_id, None, status)]
        for sub in sorted(
            self._sub_jobs, key=lambda s: (s.task_name or "", s.each_index or 0)
        ):
            name = sub.task_name or ""
            table.setdefault(name, []).append(
                TaskJobStatus(name, sub.id, sub.each_index, _JOB_STATUS[sub.status])
            )
        return table

    def to_dict(self) -> dict[str, Any]:
        """Plain data for an API response or a log line."""
        return {
            "job_id": self.job_id,
            "workflow_name": self.workflow_name,
            "status": self.status,
            "current_task_name": self.current_task_name,
            "arguments": dict(self._job.arguments),
            "output": [
                {
                    "task_name": name,
                    "each_index": i,
                    "data": _codec.encode(by_index[i].data),
                }
                for name, by_index in self._outputs.items()
                for i in sorted(by_index)
            ],
            "job_status": {
                name: [
                    {"job_id": s.job_id, "each_index": s.each_index, "status": s.status}
                    for s in entries
                ]
                for name, entries in self.job_status.items()
            },
            "error": None
            if self.error is None
            else {"class": self.error.error_class, "message": self.error.message},
        }

    def __repr__(self) -> str:
        return f"<WorkflowStatus {self.workflow_name} {self.job_id} {self.status}>"


class JobHandle:
    """A workflow enqueued with ``perform_later``."""

    def __init__(self, job_id: str, backend: QueueBackend, clock: Clock) -> None:
        self.job_id = job_id
        self._backend = backend
        self._clock = clock

    def status(self) -> Status:
        """The workflow's aggregate status right now."""
        return WorkflowStatus.find(self.job_id, backend=self._backend).status

    def wait(
        self, timeout: float | None = None, poll_interval: float = 0.05
    ) -> WorkflowStatus:
        """Block until the workflow succeeded or failed; return its status.

        Raises TimeoutError after ``timeout`` seconds (measured on the
        process clock). Someone must be running workers meanwhile.
        """
        started = self._clock.monotonic()
        while True:
            found = WorkflowStatus.find(self.job_id, backend=self._backend)
            if found.status in ("succeeded", "failed"):
                return found
            if timeout is not None and self._clock.monotonic() - started >= timeout:
                raise TimeoutError(
                    f"workflow job {self.job_id} still {found.status} after {timeout}s"
                )
            self._clock.sleep(poll_interval)

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id}>"
