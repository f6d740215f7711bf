"""Reading a workflow's status back: ``WorkflowStatus`` and ``JobHandle``.

Covers the Ruby guide WORKFLOW_STATUS_QUERY.md and SPEC §3/§5 on
``MemoryBackend("queued")`` with real worker threads: ``find`` (raising
``WorkflowNotFoundError``) and ``find_by`` (None); the status pending before a
worker picks the job up, running while a body is inside (seen from that body),
succeeded after, failed after a failure (with ``.error``); the predicates,
``workflow_name``, ``current_task_name``, ``arguments``, ``output``,
``job_status`` per task and per sub-job, ``to_dict()``; the status aggregated
over sub-jobs (not succeeded while one is pending, failed when one failed);
``JobHandle.status()`` and ``JobHandle.wait(timeout)``.
"""

import json
import threading

import pytest

from job_workflow import (
    Queue,
    Workflow,
    WorkflowStatus,
    argument,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.errors import WorkflowNotFoundError

DRAIN_TIMEOUT = 30.0
PAUSED = "tests.queued.status.paused"


class OrderProcessing(Workflow):
    name = "tests.queued.status.OrderProcessing"
    order_id = argument(int)
    user_id = argument(int, default=7)

    @task(output={"amount": int})
    def fetch_order(self, ctx):
        return {"amount": ctx.arguments.order_id // 100}

    @task(depends_on=[fetch_order], output={"valid": bool, "amount": int})
    def validate_payment(self, ctx):
        return {"valid": True, "amount": ctx.output["fetch_order"][0].amount}


class Failing(Workflow):
    name = "tests.queued.status.Failing"

    @task
    def explode(self, ctx):
        raise ValueError("card declined")


@pytest.fixture
def backend():
    queued = MemoryBackend("queued")
    with use_backend(queued):
        yield queued


def drain(backend, threads=2):
    backend.drain(threads=threads, timeout=DRAIN_TIMEOUT)


def predicates(status):
    """(is_pending, is_running, is_succeeded, is_failed)."""
    return (status.is_pending, status.is_running, status.is_succeeded, status.is_failed)


# --- finding ------------------------------------------------------------------


def test_find_raises_workflow_not_found_for_an_unknown_id(backend):
    with pytest.raises(WorkflowNotFoundError) as caught:
        WorkflowStatus.find("no-such-job")

    assert caught.value.job_id == "no-such-job"
    assert isinstance(caught.value, LookupError)


def test_find_by_returns_none_for_an_unknown_id(backend):
    assert WorkflowStatus.find_by(job_id="no-such-job") is None


def test_find_and_find_by_return_the_status_of_a_known_job(backend):
    handle = OrderProcessing.perform_later(order_id=12345)

    assert WorkflowStatus.find(handle.job_id).job_id == handle.job_id
    assert WorkflowStatus.find_by(job_id=handle.job_id).job_id == handle.job_id


# --- lifecycle ----------------------------------------------------------------


def test_status_is_pending_before_a_worker_picks_the_job_up(backend):
    handle = OrderProcessing.perform_later(order_id=12345)

    status = WorkflowStatus.find(handle.job_id)

    assert status.status == "pending"
    assert predicates(status) == (True, False, False, False)
    assert status.current_task_name is None
    assert handle.status() == "pending"


def test_status_is_running_while_a_body_is_inside(backend):
    seen = {}

    class Observed(Workflow):
        name = "tests.queued.status.Observed"

        @task(output={"n": int})
        def first(self, ctx):
            return {"n": 1}

        @task(depends_on=[first])
        def second(self, ctx):
            seen["status"] = WorkflowStatus.find(ctx.job_id)

    handle = Observed.perform_later()
    drain(backend)

    inside = seen["status"]
    assert inside.status == "running"
    assert predicates(inside) == (False, True, False, False)
    assert inside.current_task_name == "second"
    assert inside.output["first"][0].n == 1
    assert handle.status() == "succeeded"


def test_status_is_succeeded_after_the_run(backend):
    handle = OrderProcessing.perform_later(order_id=12345)
    drain(backend)

    status = WorkflowStatus.find(handle.job_id)

    assert status.status == "succeeded"
    assert predicates(status) == (False, False, True, False)
    assert status.current_task_name is None
    assert status.error is None


def test_status_is_failed_after_a_failure_with_the_error(backend):
    handle = Failing.perform_later()
    drain(backend)

    status = WorkflowStatus.find(handle.job_id)

    assert status.status == "failed"
    assert predicates(status) == (False, False, False, True)
    assert status.error.error_class == "ValueError"
    assert "card declined" in status.error.message


# --- contents -----------------------------------------------------------------


def test_workflow_name_is_the_registered_name(backend):
    handle = OrderProcessing.perform_later(order_id=1)

    assert WorkflowStatus.find(handle.job_id).workflow_name == OrderProcessing.name


def test_arguments_are_the_workflow_inputs_with_defaults(backend):
    handle = OrderProcessing.perform_later(order_id=12345)

    arguments = WorkflowStatus.find(handle.job_id).arguments

    assert arguments.order_id == 12345
    assert arguments.user_id == 7
    assert arguments.to_dict() == {"order_id": 12345, "user_id": 7}


def test_output_holds_the_outputs_of_finished_tasks(backend):
    handle = OrderProcessing.perform_later(order_id=12345)
    before = WorkflowStatus.find(handle.job_id).output
    drain(backend)

    output = WorkflowStatus.find(handle.job_id).output

    assert before["validate_payment"] == []
    [validation] = output["validate_payment"]
    assert validation.data == {"valid": True, "amount": 123}
    assert validation.valid is True
    assert output["fetch_order"][0].amount == 123


def test_job_status_has_one_entry_per_in_process_task(backend):
    handle = OrderProcessing.perform_later(order_id=12345)
    drain(backend)

    job_status = WorkflowStatus.find(handle.job_id).job_status

    assert set(job_status) == {"fetch_order", "validate_payment"}
    for name in ("fetch_order", "validate_payment"):
        [entry] = job_status[name]
        assert entry.task_name == name
        assert entry.job_id == handle.job_id
        assert entry.status == "succeeded"
        assert (entry.is_succeeded, entry.is_finished, entry.is_failed) == (
            True,
            True,
            False,
        )


def test_job_status_has_one_entry_per_sub_job(backend):
    seen = {}

    class FanOut(Workflow):
        name = "tests.queued.status.FanOut"

        @task(each=lambda ctx: ["a", "b", "c"], enqueue=True)
        def fan(self, ctx):
            parent_id = backend.get_job(ctx.job_id).parent_id
            if ctx.each_index == 1:
                seen["middle"] = WorkflowStatus.find(parent_id).job_status["fan"]

    handle = FanOut.perform_later()
    drain(backend, threads=1)

    subs = sorted(backend.sub_jobs(handle.job_id, "fan"), key=lambda j: j.each_index)
    entries = WorkflowStatus.find(handle.job_id).job_status["fan"]
    assert [e.job_id for e in entries] == [sub.id for sub in subs]
    assert [e.each_index for e in entries] == [0, 1, 2]
    assert {e.status for e in entries} == {"succeeded"}
    during = [(e.each_index, e.status) for e in seen["middle"]]
    assert during == [(0, "succeeded"), (1, "running"), (2, "pending")]


def test_job_status_marks_a_failed_sub_job(backend):
    class OneFails(Workflow):
        name = "tests.queued.status.OneFails"

        @task(each=lambda ctx: [1, 2], enqueue=True)
        def fan(self, ctx):
            if ctx.each_value == 2:
                raise RuntimeError("second one fails")

    handle = OneFails.perform_later()
    drain(backend)

    entries = WorkflowStatus.find(handle.job_id).job_status["fan"]
    assert [e.status for e in entries] == ["succeeded", "failed"]
    assert entries[1].is_failed
    assert entries[1].is_finished


def test_to_dict_is_plain_serialisable_data(backend):
    handle = OrderProcessing.perform_later(order_id=12345)
    drain(backend)

    data = WorkflowStatus.find(handle.job_id).to_dict()

    assert data["job_id"] == handle.job_id
    assert data["workflow_name"] == OrderProcessing.name
    assert data["status"] == "succeeded"
    assert data["current_task_name"] is None
    assert data["arguments"] == {"order_id": 12345, "user_id": 7}
    assert {"task_name": "fetch_order", "each_index": 0, "data": {"amount": 123}} in (
        data["output"]
    )
    assert data["job_status"]["validate_payment"][0]["status"] == "succeeded"
    assert data["error"] is None
    assert json.loads(json.dumps(data)) == data


def test_to_dict_of_a_failed_workflow_carries_the_error(backend):
    handle = Failing.perform_later()
    drain(backend)

    data = WorkflowStatus.find(handle.job_id).to_dict()

    assert data["status"] == "failed"
    assert data["error"]["class"] == "ValueError"
    assert "card declined" in data["error"]["message"]


# --- aggregate over sub-jobs --------------------------------------------------


def test_workflow_is_not_succeeded_while_a_sub_job_is_pending(backend):
    class Background(Workflow):
        name = "tests.queued.status.Background"

        @task(each=lambda ctx: [1, 2], enqueue={"queue": PAUSED})
        def fan(self, ctx):
            pass

    Queue.pause(PAUSED)
    handle = Background.perform_later()
    drain(backend)

    assert backend.get_job(handle.job_id).status == "finished"
    status = WorkflowStatus.find(handle.job_id)
    assert not status.is_succeeded
    assert not status.is_failed
    assert status.status in ("pending", "running")
    assert [e.status for e in status.job_status["fan"]] == ["pending", "pending"]

    Queue.resume(PAUSED)
    drain(backend)

    assert WorkflowStatus.find(handle.job_id).is_succeeded


def test_workflow_is_failed_when_one_sub_job_failed(backend):
    class OneSubJobFails(Workflow):
        name = "tests.queued.status.OneSubJobFails"

        @task(each=lambda ctx: [1, 2, 3], enqueue=True)
        def fan(self, ctx):
            if ctx.each_value == 3:
                raise RuntimeError("third one fails")

    handle = OneSubJobFails.perform_later()
    drain(backend)

    assert backend.get_job(handle.job_id).status == "finished"
    status = WorkflowStatus.find(handle.job_id)
    assert status.is_failed
    assert status.error.error_class == "RuntimeError"
    assert handle.status() == "failed"


# --- JobHandle ----------------------------------------------------------------


def test_handle_status_follows_the_workflow(backend):
    handle = OrderProcessing.perform_later(order_id=12345)
    assert handle.status() == "pending"

    drain(backend)
    assert handle.status() == "succeeded"


def test_handle_wait_returns_the_final_status_while_workers_run(backend):
    handle = OrderProcessing.perform_later(order_id=12345)
    errors = []

    def work():
        try:
            drain(backend)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        status = handle.wait(timeout=10)
    finally:
        worker.join(DRAIN_TIMEOUT)

    assert errors == []
    assert isinstance(status, WorkflowStatus)
    assert status.job_id == handle.job_id
    assert status.is_succeeded
    assert status.output["validate_payment"][0].amount == 123


def test_handle_wait_returns_a_failed_status_without_raising(backend):
    handle = Failing.perform_later()
    drain(backend)

    status = handle.wait(timeout=1)

    assert status.is_failed
    assert status.error.error_class == "ValueError"


def test_handle_wait_raises_timeout_error_when_nothing_runs(backend):
    clock = ManualClock()
    with use_clock(clock):
        handle = OrderProcessing.perform_later(order_id=1)

        with pytest.raises(TimeoutError):
            handle.wait(timeout=30)

    assert clock.monotonic() >= 30
    assert handle.status() == "pending"
