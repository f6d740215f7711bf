"""Dry-run mode on workflows and tasks (Ruby guide DRY_RUN.md).

Covers the workflow-level ``dry_run`` attribute (a bool or a callable of the
context), the task-level ``dry_run=`` option and how the two combine,
``ctx.dry_run``, ``ctx.skip_in_dry_run`` and the ``dry_run.skip`` event. The
whole-workflow ``DryRunReport`` (SPEC section 8) is covered elsewhere.
"""

import pytest

from job_workflow import Namespace, Workflow, argument, events, task, use_backend
from job_workflow.backends.memory import MemoryBackend


@pytest.fixture(autouse=True)
def _inline_backend():
    with use_backend(MemoryBackend(mode="inline")):
        yield


def preview_requested(ctx) -> bool:
    """A plain function used as a workflow-level ``dry_run`` callable."""
    return ctx.arguments.preview


def dry_flags(run, task_name):
    """The ``dry_run`` output field of every iteration of one task."""
    return [output.dry_run for output in run.output[task_name]]


# --- ctx.dry_run and the workflow-level setting ------------------------------


def test_ctx_dry_run_is_false_by_default():
    class Plain(Workflow):
        @task(output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = Plain.perform_now()

    assert dry_flags(run, "step") == [False]


def test_workflow_level_dry_run_true_makes_every_task_dry():
    class AlwaysDry(Workflow):
        dry_run = True

        @task(output={"dry_run": bool})
        def first(self, ctx):
            return {"dry_run": ctx.dry_run}

        @task(depends_on=[first], output={"dry_run": bool})
        def second(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = AlwaysDry.perform_now()

    assert dry_flags(run, "first") == [True]
    assert dry_flags(run, "second") == [True]


def test_workflow_level_dry_run_applies_to_every_map_iteration():
    class DryMap(Workflow):
        dry_run = True

        @task(each=lambda ctx: ["a", "b", "c"], output={"dry_run": bool})
        def visit(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = DryMap.perform_now()

    assert dry_flags(run, "visit") == [True, True, True]


@pytest.mark.parametrize("preview", [True, False])
def test_workflow_dry_run_staticmethod_reads_an_argument(preview):
    class Previewable(Workflow):
        preview = argument(bool, default=False)

        @staticmethod
        def dry_run(ctx):
            return ctx.arguments.preview

        @task(output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = Previewable.perform_now(preview=preview)

    assert dry_flags(run, "step") == [preview]


@pytest.mark.parametrize("preview", [True, False])
def test_workflow_dry_run_may_be_a_plain_function(preview):
    class PreviewableByFunction(Workflow):
        preview = argument(bool, default=False)
        dry_run = preview_requested

        @task(output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = PreviewableByFunction.perform_now(preview=preview)

    assert dry_flags(run, "step") == [preview]


def test_workflow_dry_run_callable_uses_the_argument_default():
    class DefaultsToDry(Workflow):
        preview = argument(bool, default=True)
        dry_run = preview_requested

        @task(output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = DefaultsToDry.perform_now()

    assert dry_flags(run, "step") == [True]


# --- task-level setting and the priority rule --------------------------------


def test_task_level_dry_run_true_affects_only_that_task():
    class RiskyStep(Workflow):
        @task(output={"dry_run": bool})
        def safe(self, ctx):
            return {"dry_run": ctx.dry_run}

        @task(dry_run=True, output={"dry_run": bool})
        def risky(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = RiskyStep.perform_now()

    assert dry_flags(run, "safe") == [False]
    assert dry_flags(run, "risky") == [True]


def test_task_level_dry_run_true_skips_only_that_tasks_side_effects():
    performed = []

    class TwoCalls(Workflow):
        @task
        def safe(self, ctx):
            ctx.skip_in_dry_run(lambda: performed.append("safe"))

        @task(dry_run=True)
        def risky(self, ctx):
            ctx.skip_in_dry_run(lambda: performed.append("risky"))

    TwoCalls.perform_now()

    assert performed == ["safe"]


@pytest.mark.parametrize("preview", [True, False])
def test_task_level_dry_run_callable_reads_an_argument(preview):
    class TaskPreview(Workflow):
        preview = argument(bool, default=False)

        @task(dry_run=lambda ctx: ctx.arguments.preview, output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

        @task(output={"dry_run": bool})
        def other(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = TaskPreview.perform_now(preview=preview)

    assert dry_flags(run, "step") == [preview]
    assert dry_flags(run, "other") == [False]


def test_workflow_level_true_wins_over_task_level_false():
    class WorkflowWins(Workflow):
        dry_run = True

        @task(dry_run=False, output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = WorkflowWins.perform_now()

    assert dry_flags(run, "step") == [True]


def test_workflow_callable_returning_true_wins_over_task_level_false():
    class CallableWins(Workflow):
        preview = argument(bool)
        dry_run = preview_requested

        @task(dry_run=False, output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = CallableWins.perform_now(preview=True)

    assert dry_flags(run, "step") == [True]


def test_task_level_true_applies_when_workflow_level_is_false():
    class TaskDecides(Workflow):
        dry_run = False

        @task(dry_run=True, output={"dry_run": bool})
        def dry_step(self, ctx):
            return {"dry_run": ctx.dry_run}

        @task(output={"dry_run": bool})
        def live_step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = TaskDecides.perform_now()

    assert dry_flags(run, "dry_step") == [True]
    assert dry_flags(run, "live_step") == [False]


def test_task_level_true_applies_when_workflow_callable_returns_false():
    class TaskDecidesToo(Workflow):
        preview = argument(bool)
        dry_run = preview_requested

        @task(dry_run=True, output={"dry_run": bool})
        def step(self, ctx):
            return {"dry_run": ctx.dry_run}

    run = TaskDecidesToo.perform_now(preview=False)

    assert dry_flags(run, "step") == [True]


# --- ctx.skip_in_dry_run -----------------------------------------------------


def test_skip_in_dry_run_calls_the_action_and_returns_its_result_when_live():
    calls = []

    def charge():
        calls.append("charged")
        return "receipt-1"

    class Live(Workflow):
        @task(output={"receipt": str})
        def pay(self, ctx):
            return {"receipt": ctx.skip_in_dry_run(charge, fallback="fake")}

    run = Live.perform_now()

    assert calls == ["charged"]
    assert run.output["pay"][0].receipt == "receipt-1"


def test_skip_in_dry_run_returns_the_fallback_without_calling_when_dry():
    calls = []

    def charge():
        calls.append("charged")
        return "receipt-1"

    class Dry(Workflow):
        dry_run = True

        @task(output={"receipt": str})
        def pay(self, ctx):
            receipt = ctx.skip_in_dry_run(charge, name="payment", fallback="fake")
            return {"receipt": receipt}

    run = Dry.perform_now()

    assert calls == []
    assert run.output["pay"][0].receipt == "fake"


def test_skip_in_dry_run_returns_none_without_a_fallback_when_dry():
    results = []

    class DryNoFallback(Workflow):
        dry_run = True

        @task
        def pay(self, ctx):
            results.append(ctx.skip_in_dry_run(lambda: "receipt-1"))

    DryNoFallback.perform_now()

    assert results == [None]


def test_fallback_value_reaches_dependent_tasks_in_a_dry_run():
    class Checkout(Workflow):
        dry_run = True

        @task(output={"token": str})
        def get_token(self, ctx):
            token = ctx.skip_in_dry_run(
                lambda: "real-token", name="tokenize", fallback="dry-token"
            )
            return {"token": token}

        @task(depends_on=[get_token], output={"used": str})
        def use_token(self, ctx):
            return {"used": ctx.output["get_token"][0].token}

    run = Checkout.perform_now()

    assert run.status == "succeeded"
    assert run.output["use_token"][0].used == "dry-token"


# --- the dry_run.skip event --------------------------------------------------


def test_dry_run_skip_event_carries_the_documented_payload():
    class Payments(Workflow):
        dry_run = True

        @task
        def charge(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="payment")

    with events.capture("dry_run.skip") as captured:
        run = Payments.perform_now()

    assert len(captured) == 1
    payload = captured[0].payload
    assert payload["job_id"] == run.job_id
    assert payload["job_name"] == Payments.name
    assert payload["task_name"] == "charge"
    assert payload["each_index"] is None
    assert payload["dry_run_name"] == "payment"
    assert payload["dry_run_index"] == 0
    assert payload["dry_run"] is True


def test_dry_run_skip_event_has_no_name_when_none_was_given():
    class Unnamed(Workflow):
        dry_run = True

        @task
        def step(self, ctx):
            ctx.skip_in_dry_run(lambda: None)

    with events.capture("dry_run.skip") as captured:
        Unnamed.perform_now()

    assert [event.payload["dry_run_name"] for event in captured] == [None]


def test_dry_run_skip_event_names_a_namespaced_task_by_its_full_name():
    class Shop(Workflow):
        dry_run = True

        class payment(Namespace):
            @task
            def charge(self, ctx):
                ctx.skip_in_dry_run(lambda: None, name="gateway")

    with events.capture("dry_run.skip") as captured:
        Shop.perform_now()

    assert [event.payload["task_name"] for event in captured] == ["payment:charge"]


def test_dry_run_index_counts_the_calls_within_one_task():
    class ThreeEffects(Workflow):
        dry_run = True

        @task
        def step(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="payment")
            ctx.skip_in_dry_run(lambda: None, name="email")
            ctx.skip_in_dry_run(lambda: None, name="inventory")

    with events.capture("dry_run.skip") as captured:
        ThreeEffects.perform_now()

    assert [
        (e.payload["dry_run_name"], e.payload["dry_run_index"]) for e in captured
    ] == [
        ("payment", 0),
        ("email", 1),
        ("inventory", 2),
    ]


def test_dry_run_index_restarts_for_each_map_iteration():
    class PerItem(Workflow):
        dry_run = True

        @task(each=lambda ctx: ["x", "y"])
        def step(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="write")
            ctx.skip_in_dry_run(lambda: None, name="notify")

    with events.capture("dry_run.skip") as captured:
        PerItem.perform_now()

    assert [
        (e.payload["each_index"], e.payload["dry_run_index"]) for e in captured
    ] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]


def test_dry_run_index_restarts_in_each_task():
    class TwoTasks(Workflow):
        dry_run = True

        @task
        def first(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="a")

        @task(depends_on=[first])
        def second(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="b")

    with events.capture("dry_run.skip") as captured:
        TwoTasks.perform_now()

    assert [(e.payload["task_name"], e.payload["dry_run_index"]) for e in captured] == [
        ("first", 0),
        ("second", 0),
    ]


def test_no_dry_run_skip_event_when_the_action_runs():
    class LiveEffects(Workflow):
        @task
        def step(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="payment")

    with events.capture("dry_run.skip") as captured:
        LiveEffects.perform_now()

    assert captured == []


# --- dry run versus condition ------------------------------------------------


def test_dry_run_still_runs_the_task_body():
    bodies = []

    class BodyRuns(Workflow):
        dry_run = True

        @task
        def step(self, ctx):
            bodies.append("step")
            ctx.skip_in_dry_run(lambda: bodies.append("side effect"))

    with events.capture("task.skip") as skipped:
        run = BodyRuns.perform_now()

    assert bodies == ["step"]
    assert skipped == []
    assert run.status == "succeeded"


def test_false_condition_skips_the_whole_task_also_in_a_dry_run():
    bodies = []

    class Conditional(Workflow):
        dry_run = True
        enabled = argument(bool)

        @task(condition=lambda ctx: ctx.arguments.enabled)
        def send_email(self, ctx):
            bodies.append("send_email")
            ctx.skip_in_dry_run(lambda: None, name="mailer")

    with events.capture("*skip") as captured:
        Conditional.perform_now(enabled=False)

    assert bodies == []
    assert [e.name for e in captured] == ["task.skip"]
    assert captured[0].payload["task_name"] == "send_email"
    assert captured[0].payload["reason"] == "condition_not_met"


def test_true_condition_in_a_dry_run_runs_the_body_and_skips_the_side_effect():
    performed = []

    class Conditional(Workflow):
        dry_run = True
        enabled = argument(bool)

        @task(condition=lambda ctx: ctx.arguments.enabled)
        def send_email(self, ctx):
            performed.append("body")
            ctx.skip_in_dry_run(lambda: performed.append("mail"), name="mailer")

    with events.capture("*skip") as captured:
        Conditional.perform_now(enabled=True)

    assert performed == ["body"]
    assert [e.name for e in captured] == ["dry_run.skip"]
