"""Lifecycle hooks: ``before``, ``after``, ``around`` and ``on_error``.

Covers the Ruby guide LIFECYCLE_HOOKS.md translated to the Python API: hook
scope (every task, one task, several tasks), the execution order of hooks of
every kind, the rules for ``call()`` in around hooks, what happens when a hook
or a task raises, ``on_error`` hooks, hooks on map tasks and hooks addressed
to namespaced tasks by their full name.
"""

import pytest

from job_workflow import (
    Namespace,
    Workflow,
    after,
    argument,
    around,
    before,
    on_error,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.errors import AlreadyCalledError, NotCalledError, UnknownTaskError


class HookFailedError(Exception):
    """Raised on purpose by a hook under test."""


class TaskFailedError(Exception):
    """Raised on purpose by a task under test."""


@pytest.fixture(autouse=True)
def isolated_runtime():
    """Give every test its own inline backend and a virtual clock."""
    with use_backend(MemoryBackend(mode="inline")), use_clock(ManualClock()):
        yield


def _task_name(value):
    """The name carried by an error attribute that holds a task or its name."""
    return value if isinstance(value, str) else value.name


# Hook scope


def test_hook_without_names_runs_for_every_task():
    calls = []

    class GlobalHooks(Workflow):
        @before()
        def log_start(self, ctx):
            calls.append("before")

        @after()
        def log_end(self, ctx):
            calls.append("after")

        @task
        def first_task(self, ctx):
            calls.append("first_task")

        @task
        def second_task(self, ctx):
            calls.append("second_task")

    GlobalHooks.perform_now()

    assert calls == [
        "before",
        "first_task",
        "after",
        "before",
        "second_task",
        "after",
    ]


def test_hook_with_one_name_runs_only_for_that_task():
    calls = []

    class SingleTaskHook(Workflow):
        @before("validate_order")
        def check_stock(self, ctx):
            calls.append("check_stock")

        @task
        def load_order(self, ctx):
            calls.append("load_order")

        @task
        def validate_order(self, ctx):
            calls.append("validate_order")

    SingleTaskHook.perform_now()

    assert calls == ["load_order", "check_stock", "validate_order"]


def test_hook_with_several_names_runs_for_each_named_task():
    calls = []

    class SeveralTaskHooks(Workflow):
        @before("task_a", "task_c")
        def announce(self, ctx):
            calls.append("before")

        @around("task_a", "task_c")
        def measure(self, ctx, call):
            calls.append("around:enter")
            call()
            calls.append("around:exit")

        @task
        def task_a(self, ctx):
            calls.append("task_a")

        @task
        def task_b(self, ctx):
            calls.append("task_b")

        @task
        def task_c(self, ctx):
            calls.append("task_c")

    SeveralTaskHooks.perform_now()

    assert calls == [
        "before",
        "around:enter",
        "task_a",
        "around:exit",
        "task_b",
        "before",
        "around:enter",
        "task_c",
        "around:exit",
    ]


# Execution order


def test_hooks_run_in_the_guides_execution_order():
    calls = []

    class OrderedHooks(Workflow):
        name = "tests.hooks.OrderedHooks"

        @before()
        def global_before(self, ctx):
            calls.append("1. global before")

        @before("my_task")
        def specific_before(self, ctx):
            calls.append("2. task-specific before")

        @around()
        def global_around(self, ctx, call):
            calls.append("3. global around (before)")
            call()
            calls.append("6. global around (after)")

        @around("my_task")
        def specific_around(self, ctx, call):
            calls.append("4. task-specific around (before)")
            call()
            calls.append("5. task-specific around (after)")

        @task
        def my_task(self, ctx):
            calls.append("task execution")

        @after("my_task")
        def specific_after(self, ctx):
            calls.append("7. task-specific after")

        @after()
        def global_after(self, ctx):
            calls.append("8. global after")

    OrderedHooks.perform_now()

    assert calls == [
        "1. global before",
        "2. task-specific before",
        "3. global around (before)",
        "4. task-specific around (before)",
        "task execution",
        "5. task-specific around (after)",
        "6. global around (after)",
        "7. task-specific after",
        "8. global after",
    ]


def test_hooks_of_one_kind_follow_definition_order_not_scope():
    calls = []

    class SpecificFirst(Workflow):
        @before("my_task")
        def specific_before(self, ctx):
            calls.append("specific")

        @before()
        def global_before(self, ctx):
            calls.append("global")

        @task
        def my_task(self, ctx):
            calls.append("my_task")

    SpecificFirst.perform_now()

    assert calls == ["specific", "global", "my_task"]


def test_after_hook_reads_the_output_of_its_task():
    seen = []

    class NotifyAfterAction(Workflow):
        user_id = argument(int)

        @task(output={"action_result": str})
        def perform_action(self, ctx):
            return {"action_result": f"done for {ctx.arguments.user_id}"}

        @after("perform_action")
        def notify(self, ctx):
            seen.append(ctx.output["perform_action"][0].action_result)

    NotifyAfterAction.perform_now(user_id=7)

    assert seen == ["done for 7"]


def test_hooks_and_tasks_share_the_workflow_instance_of_a_run():
    seen = []

    class SharedInstance(Workflow):
        @before("work")
        def remember(self, ctx):
            self.marker = "set by before hook"

        @task
        def work(self, ctx):
            seen.append(self.marker)

    SharedInstance.perform_now()

    assert seen == ["set by before hook"]


# around hooks and call()


def test_task_error_propagates_out_of_call_in_an_around_hook():
    seen = []

    class AroundSeesError(Workflow):
        @around("explode")
        def watch(self, ctx, call):
            try:
                call()
            except TaskFailedError as error:
                seen.append(str(error))
                raise

        @task
        def explode(self, ctx):
            raise TaskFailedError("body failed")

    with pytest.raises(TaskFailedError, match="body failed"):
        AroundSeesError.perform_now()

    assert seen == ["body failed"]


def test_around_hook_that_never_calls_raises_not_called_error():
    calls = []

    class ForgetfulAround(Workflow):
        @around("guarded")
        def forgetful(self, ctx, call):
            calls.append("around")

        @task
        def guarded(self, ctx):
            calls.append("guarded")

    with pytest.raises(NotCalledError, match="guarded") as raised:
        ForgetfulAround.perform_now()

    assert _task_name(raised.value.task) == "guarded"
    assert calls == ["around"]


def test_around_hook_calling_twice_raises_already_called_error():
    calls = []

    class GreedyAround(Workflow):
        @around("guarded")
        def greedy(self, ctx, call):
            call()
            call()

        @task
        def guarded(self, ctx):
            calls.append("guarded")

    with pytest.raises(AlreadyCalledError, match="guarded") as raised:
        GreedyAround.perform_now()

    assert _task_name(raised.value.task) == "guarded"
    assert calls == ["guarded"]


def test_raising_around_hook_propagates_after_the_task_ran():
    calls = []

    class FailingAround(Workflow):
        @around("work")
        def fail_after(self, ctx, call):
            call()
            raise HookFailedError("around failed")

        @task
        def work(self, ctx):
            calls.append("work")

    with pytest.raises(HookFailedError, match="around failed"):
        FailingAround.perform_now()

    assert calls == ["work"]


# A hook or a task that raises


def test_raising_before_hook_skips_the_task_and_propagates():
    calls = []
    failures = []

    class OutOfStock(Workflow):
        @before("process_order")
        def check_stock(self, ctx):
            failure = HookFailedError("Out of stock")
            failures.append(failure)
            raise failure

        @around("process_order")
        def wrap(self, ctx, call):
            calls.append("around")
            call()

        @task
        def process_order(self, ctx):
            calls.append("process_order")

        @after("process_order")
        def confirm(self, ctx):
            calls.append("after")

        @task(depends_on=["process_order"])
        def ship_order(self, ctx):
            calls.append("ship_order")

    with pytest.raises(HookFailedError, match="Out of stock") as raised:
        OutOfStock.perform_now()

    assert raised.value is failures[0]
    assert calls == []


def test_raising_after_hook_propagates_and_keeps_the_task_output():
    calls = []
    outputs_seen_on_error = []

    class FailingAfter(Workflow):
        @task(output={"value": int})
        def produce(self, ctx):
            calls.append("produce")
            return {"value": 42}

        @after("produce")
        def audit(self, ctx):
            raise HookFailedError("audit failed")

        @on_error("produce")
        def report(self, ctx, error, task):
            outputs_seen_on_error.append(ctx.output["produce"][0].value)

    with pytest.raises(HookFailedError, match="audit failed"):
        FailingAfter.perform_now()

    assert calls == ["produce"]
    assert outputs_seen_on_error == [42]


def test_after_hooks_do_not_run_when_the_task_raises():
    calls = []

    class NoAfterOnFailure(Workflow):
        @task
        def explode(self, ctx):
            raise TaskFailedError("boom")

        @after("explode")
        def confirm(self, ctx):
            calls.append("after")

    with pytest.raises(TaskFailedError):
        NoAfterOnFailure.perform_now()

    assert calls == []


# on_error hooks


def test_on_error_hook_receives_context_error_and_task():
    received = []
    failures = []

    class ChargeFails(Workflow):
        user_id = argument(int)

        @on_error()
        def notify(self, ctx, error, task):
            received.append((ctx.arguments.user_id, error, task.name))

        @task
        def critical_payment(self, ctx):
            failure = TaskFailedError("card declined")
            failures.append(failure)
            raise failure

    with pytest.raises(TaskFailedError, match="card declined") as raised:
        ChargeFails.perform_now(user_id=5)

    assert raised.value is failures[0]
    assert received == [(5, failures[0], "critical_payment")]


def test_on_error_hooks_run_in_definition_order_and_the_error_is_reraised():
    calls = []

    class MultipleErrorHooks(Workflow):
        @on_error()
        def global_handler(self, ctx, error, task):
            calls.append("1. global error handler")

        @on_error("my_task")
        def specific_handler(self, ctx, error, task):
            calls.append("2. task-specific error handler")

        @task
        def my_task(self, ctx):
            raise RuntimeError("Something went wrong")

    with pytest.raises(RuntimeError, match="Something went wrong"):
        MultipleErrorHooks.perform_now()

    assert calls == [
        "1. global error handler",
        "2. task-specific error handler",
    ]


def test_on_error_hook_for_one_task_ignores_failures_of_other_tasks():
    calls = []

    class OnlyCriticalHandled(Workflow):
        @on_error("critical_payment")
        def escalate(self, ctx, error, task):
            calls.append("escalate")

        @task
        def fetch_user(self, ctx):
            raise TaskFailedError("user not found")

        @task
        def critical_payment(self, ctx):
            calls.append("critical_payment")

    with pytest.raises(TaskFailedError, match="user not found"):
        OnlyCriticalHandled.perform_now()

    assert calls == []


def test_on_error_hooks_do_not_run_when_the_task_succeeds():
    calls = []

    class AllGood(Workflow):
        @on_error()
        def notify(self, ctx, error, task):
            calls.append("on_error")

        @task
        def fine(self, ctx):
            calls.append("fine")

    run = AllGood.perform_now()

    assert run.status == "succeeded"
    assert calls == ["fine"]


# Map tasks


@pytest.mark.parametrize("enqueue", [False, {"concurrency": 2}])
def test_hooks_run_once_per_iteration_of_a_map_task(enqueue):
    calls = []

    class BatchWithHooks(Workflow):
        user_ids = argument(list[int])

        @before("fetch_users")
        def log_fetch(self, ctx):
            calls.append(("before", ctx.each_value))

        @around("fetch_users")
        def wrap(self, ctx, call):
            calls.append(("around", ctx.each_value))
            call()

        @after("fetch_users")
        def log_done(self, ctx):
            calls.append(("after", ctx.each_value))

        @task(
            each=lambda ctx: ctx.arguments.user_ids,
            enqueue=enqueue,
            output={"user": int},
        )
        def fetch_users(self, ctx):
            calls.append(("task", ctx.each_value))
            return {"user": ctx.each_value}

    BatchWithHooks.perform_now(user_ids=[1, 2, 3])

    for kind in ("before", "around", "task", "after"):
        assert sorted(v for k, v in calls if k == kind) == [1, 2, 3]
    for user_id in (1, 2, 3):
        steps = [k for k, v in calls if v == user_id]
        assert steps == ["before", "around", "task", "after"]


# Namespaced tasks


def test_hook_addressed_by_full_name_runs_only_for_that_namespaced_task():
    calls = []

    class NamespacedHooks(Workflow):
        class payment(Namespace):
            @task
            def validate(self, ctx):
                calls.append("payment:validate")

        class shipping(Namespace):
            @task
            def validate(self, ctx):
                calls.append("shipping:validate")

        @before("payment:validate")
        def check_card(self, ctx):
            calls.append("check_card")

        @before()
        def everywhere(self, ctx):
            calls.append("everywhere")

    NamespacedHooks.perform_now()

    assert calls == [
        "check_card",
        "everywhere",
        "payment:validate",
        "everywhere",
        "shipping:validate",
    ]


def test_on_error_reports_the_full_name_of_a_namespaced_task():
    names = []

    class NamespacedFailure(Workflow):
        class payment(Namespace):
            @task
            def charge(self, ctx):
                raise TaskFailedError("declined")

        @on_error("payment:charge")
        def report(self, ctx, error, task):
            names.append(task.name)

    with pytest.raises(TaskFailedError, match="declined"):
        NamespacedFailure.perform_now()

    assert names == ["payment:charge"]


# Definition errors


def test_hook_naming_an_unknown_task_is_rejected_at_definition():
    with pytest.raises(UnknownTaskError, match="vaildate") as raised:

        class TypoInHook(Workflow):
            @task
            def validate(self, ctx):
                pass

            @before("vaildate")
            def check(self, ctx):
                pass

    assert raised.value.name == "vaildate"
    assert "did you mean 'validate'" in str(raised.value)
