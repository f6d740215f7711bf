"""Conditional execution with ``@task(condition=...)``.

Covers the topic of the Ruby guide CONDITIONAL_EXECUTION.md translated to the
Python API: a true condition runs the task, a false one skips it with a
``task.skip`` event (reason ``"condition_not_met"``), dependents of a skipped
task still run and see ``[]`` as its output, and conditions may read
arguments, earlier outputs, or combine both in arbitrary Python.
"""

from datetime import UTC, datetime, timedelta

import pytest

from job_workflow import Workflow, argument, before, events, task, use_backend
from job_workflow.backends.memory import MemoryBackend


@pytest.fixture(autouse=True)
def inline_memory_backend():
    with use_backend(MemoryBackend(mode="inline")):
        yield


# --- true and false conditions -----------------------------------------------


def test_true_condition_runs_the_task():
    ran = []

    class AlwaysRuns(Workflow):
        @task(condition=lambda ctx: True)
        def guarded(self, ctx):
            ran.append("guarded")

    AlwaysRuns.perform_now()

    assert ran == ["guarded"]


def test_false_condition_skips_the_task_body():
    ran = []

    class NeverRuns(Workflow):
        @task(condition=lambda ctx: False)
        def guarded(self, ctx):
            ran.append("guarded")

    run = NeverRuns.perform_now()

    assert ran == []
    assert run.status == "succeeded"


def test_skipped_task_emits_task_skip_with_condition_not_met():
    class SkipEvent(Workflow):
        @task(condition=lambda ctx: False)
        def guarded(self, ctx):
            pass

    with events.capture("task.skip") as captured:
        run = SkipEvent.perform_now()

    assert len(captured) == 1
    payload = captured[0].payload
    assert payload["task_name"] == "guarded"
    assert payload["reason"] == "condition_not_met"
    assert payload["job_name"] == SkipEvent.name
    assert payload["job_id"] == run.job_id


def test_running_task_emits_no_task_skip():
    class NoSkipEvent(Workflow):
        @task(condition=lambda ctx: True)
        def guarded(self, ctx):
            pass

    with events.capture("task.skip") as captured:
        NoSkipEvent.perform_now()

    assert captured == []


def test_skipped_task_emits_no_task_start():
    class NoStartEvent(Workflow):
        @task(condition=lambda ctx: False)
        def guarded(self, ctx):
            pass

        @task
        def unguarded(self, ctx):
            pass

    with events.capture("task.start") as captured:
        NoStartEvent.perform_now()

    assert [e.payload["task_name"] for e in captured] == ["unguarded"]


def test_skipped_task_runs_none_of_its_hooks():
    hook_calls = []

    class HooksSkipped(Workflow):
        @task(condition=lambda ctx: False)
        def guarded(self, ctx):
            pass

        @before("guarded")
        def record(self, ctx):
            hook_calls.append("before")

    HooksSkipped.perform_now()

    assert hook_calls == []


def test_skipped_map_task_runs_no_iteration():
    ran = []

    class SkippedMap(Workflow):
        @task(
            condition=lambda ctx: False,
            each=lambda ctx: [1, 2, 3],
            output={"value": int},
        )
        def mapped(self, ctx):
            ran.append(ctx.each_value)
            return {"value": ctx.each_value}

    with events.capture("task.skip") as captured:
        run = SkippedMap.perform_now()

    assert ran == []
    assert run.output["mapped"] == []
    assert len(captured) == 1


# --- dependents of a skipped task ----------------------------------------------


def test_dependent_of_a_skipped_task_still_runs():
    ran = []

    class DependentRuns(Workflow):
        @task(condition=lambda ctx: False, output={"value": int})
        def optional(self, ctx):
            return {"value": 1}

        @task(depends_on=[optional])
        def follow_up(self, ctx):
            ran.append("follow_up")

    DependentRuns.perform_now()

    assert ran == ["follow_up"]


def test_dependent_sees_empty_output_for_a_skipped_task():
    seen = {}

    class EmptyOutput(Workflow):
        @task(condition=lambda ctx: False, output={"value": int})
        def optional(self, ctx):
            return {"value": 1}

        @task(depends_on=[optional])
        def follow_up(self, ctx):
            seen["outputs"] = ctx.output["optional"]

    run = EmptyOutput.perform_now()

    assert seen == {"outputs": []}
    assert run.output["optional"] == []


def test_whole_chain_after_a_skipped_task_runs():
    ran = []

    class Chain(Workflow):
        @task(condition=lambda ctx: False)
        def first(self, ctx):
            ran.append("first")

        @task(depends_on=[first])
        def second(self, ctx):
            ran.append("second")

        @task(depends_on=[second])
        def third(self, ctx):
            ran.append("third")

    Chain.perform_now()

    assert ran == ["second", "third"]


# --- conditions reading arguments and outputs --------------------------------


class Notification(Workflow):
    name = "tests.unit.conditional_execution.Notification"

    premium = argument(bool)
    notification_type = argument(str)

    @task(output={"channel": str})
    def load_user_preferences(self, ctx):
        return {"channel": "email"}

    @task(
        depends_on=[load_user_preferences],
        condition=lambda ctx: ctx.arguments.premium,
        output={"sent": str},
    )
    def send_premium_notification(self, ctx):
        return {"sent": f"premium {ctx.arguments.notification_type}"}

    @task(
        depends_on=[load_user_preferences],
        condition=lambda ctx: not ctx.arguments.premium,
        output={"sent": str},
    )
    def send_standard_notification(self, ctx):
        return {"sent": f"standard {ctx.arguments.notification_type}"}


def test_condition_on_arguments_runs_premium_branch_only():
    with events.capture("task.skip") as captured:
        run = Notification.perform_now(premium=True, notification_type="promo")

    assert [o.sent for o in run.output["send_premium_notification"]] == [
        "premium promo"
    ]
    assert run.output["send_standard_notification"] == []
    assert [e.payload["task_name"] for e in captured] == ["send_standard_notification"]


def test_condition_on_arguments_runs_standard_branch_only():
    with events.capture("task.skip") as captured:
        run = Notification.perform_now(premium=False, notification_type="promo")

    assert run.output["send_premium_notification"] == []
    assert [o.sent for o in run.output["send_standard_notification"]] == [
        "standard promo"
    ]
    assert [e.payload["task_name"] for e in captured] == ["send_premium_notification"]


@pytest.mark.parametrize(("stale", "expected_runs"), [(True, 1), (False, 0)])
def test_condition_can_read_an_earlier_task_output(stale, expected_runs):
    ran = []

    class OutputCondition(Workflow):
        stale = argument(bool)

        @task(output={"needs_sync": bool})
        def check(self, ctx):
            return {"needs_sync": ctx.arguments.stale}

        @task(
            depends_on=[check],
            condition=lambda ctx: ctx.output["check"][0].needs_sync,
        )
        def sync(self, ctx):
            ran.append("sync")

    OutputCondition.perform_now(stale=stale)

    assert len(ran) == expected_runs


# --- complex conditions -------------------------------------------------------


def _sync_is_due(ctx):
    if ctx.arguments.force_sync:
        return True
    last_sync = ctx.arguments.last_sync_at
    return last_sync is None or last_sync <= datetime.now(UTC) - timedelta(hours=1)


class DataSync(Workflow):
    name = "tests.unit.conditional_execution.DataSync"

    force_sync = argument(bool, default=False)
    last_sync_at = argument(datetime | None, default=None)

    @task(condition=_sync_is_due, output={"synced": bool})
    def sync_data(self, ctx):
        return {"synced": True}


def _synced(run):
    return [o.synced for o in run.output["sync_data"]] == [True]


def test_complex_condition_runs_when_never_synced():
    assert _synced(DataSync.perform_now())


def test_complex_condition_runs_when_last_sync_is_old():
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)

    assert _synced(DataSync.perform_now(last_sync_at=two_hours_ago))


def test_complex_condition_skips_when_last_sync_is_recent():
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)

    with events.capture("task.skip") as captured:
        run = DataSync.perform_now(last_sync_at=ten_minutes_ago)

    assert not _synced(run)
    assert [e.payload["reason"] for e in captured] == ["condition_not_met"]


def test_complex_condition_runs_when_forced_despite_recent_sync():
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)

    run = DataSync.perform_now(force_sync=True, last_sync_at=ten_minutes_ago)

    assert _synced(run)
