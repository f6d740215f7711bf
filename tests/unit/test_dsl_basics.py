"""DSL basics: tasks, dependencies, ordering, task options and the registry.

Covers the Ruby guide DSL_BASICS.md translated to the Python API (SPEC §2 and
§3): defining tasks with outputs, single and multiple ``depends_on``, the
stable topological order, reading arguments, the ``retry`` / ``condition`` /
``throttle`` option forms accepted at definition and the invalid values that
raise ``InvalidOptionError``, plus the workflow registry rules (default and
explicit names, clashes, replacement) and the default queue.
"""

import pytest

from job_workflow import Workflow, argument, events, task, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.errors import (
    FrozenArgumentsError,
    InvalidOptionError,
    WorkflowDefinitionError,
)


class ModuleLevelWorkflow(Workflow):
    @task
    def only(self, ctx):
        return None


# --- tasks and outputs -------------------------------------------------------


def test_dependent_task_reads_the_output_of_a_simple_task():
    seen = []

    class SimpleOutput(Workflow):
        @task(output={"result": str})
        def simple_task(self, ctx):
            return {"result": "completed"}

        @task(depends_on=[simple_task])
        def next_task(self, ctx):
            seen.append(ctx.output["simple_task"][0].result)

    run = SimpleOutput.perform_now()

    assert seen == ["completed"]
    assert run.status == "succeeded"
    assert run.output["simple_task"][0].result == "completed"


def test_single_dependency_by_task_object():
    class SingleDependency(Workflow):
        @task(output={"payload": dict[str, int]})
        def fetch_data(self, ctx):
            return {"payload": {"rows": 3}}

        @task(depends_on=[fetch_data], output={"result": str})
        def process_data(self, ctx):
            payload = ctx.output["fetch_data"][0].payload
            return {"result": f"rows={payload['rows']}"}

    run = SingleDependency.perform_now()

    assert run.output["process_data"][0].result == "rows=3"


def test_single_dependency_by_name():
    class SingleDependencyByName(Workflow):
        @task(output={"value": int})
        def fetch_data(self, ctx):
            return {"value": 5}

        @task(depends_on=["fetch_data"], output={"result": int})
        def process_data(self, ctx):
            return {"result": ctx.output["fetch_data"][0].value * 2}

    run = SingleDependencyByName.perform_now()

    assert run.output["process_data"][0].result == 10


def test_multiple_dependencies_are_all_available():
    class MultipleDependencies(Workflow):
        @task(output={"a": int})
        def task_a(self, ctx):
            return {"a": 1}

        @task(output={"b": int})
        def task_b(self, ctx):
            return {"b": 2}

        @task(depends_on=[task_a, task_b], output={"result": int})
        def task_c(self, ctx):
            a = ctx.output["task_a"][0].a
            b = ctx.output["task_b"][0].b
            return {"result": a + b}

    run = MultipleDependencies.perform_now()

    assert run.output["task_c"][0].result == 3


# --- execution order ---------------------------------------------------------


def test_tasks_run_in_topological_order_regardless_of_definition_order():
    order = []

    class OutOfOrder(Workflow):
        @task(depends_on=["step2"])
        def step3(self, ctx):
            order.append("step3")

        @task
        def step1(self, ctx):
            order.append("step1")

        @task(depends_on=["step1"])
        def step2(self, ctx):
            order.append("step2")

    OutOfOrder.perform_now()

    assert order == ["step1", "step2", "step3"]


def test_tasks_attribute_lists_full_names_in_topological_order():
    class Listed(Workflow):
        @task(depends_on=["step2"])
        def step3(self, ctx):
            return None

        @task
        def step1(self, ctx):
            return None

        @task(depends_on=["step1"])
        def step2(self, ctx):
            return None

    assert isinstance(Listed.tasks, tuple)
    assert [t.name for t in Listed.tasks] == ["step1", "step2", "step3"]


def test_independent_tasks_run_in_definition_order():
    order = []

    class Independent(Workflow):
        @task
        def charlie(self, ctx):
            order.append("charlie")

        @task
        def alpha(self, ctx):
            order.append("alpha")

        @task
        def bravo(self, ctx):
            order.append("bravo")

    Independent.perform_now()

    assert order == ["charlie", "alpha", "bravo"]


def test_definition_order_decides_among_ready_tasks():
    # "late" waits for "early", so "ready_now" (defined before "early") is
    # the first ready task in definition order.
    order = []

    class ReadyFirst(Workflow):
        @task(depends_on=["early"])
        def late(self, ctx):
            order.append("late")

        @task
        def ready_now(self, ctx):
            order.append("ready_now")

        @task
        def early(self, ctx):
            order.append("early")

    ReadyFirst.perform_now()

    assert order == ["ready_now", "early", "late"]


def test_diamond_runs_each_task_once_after_its_dependencies():
    order = []

    class Diamond(Workflow):
        @task
        def source(self, ctx):
            order.append("source")

        @task(depends_on=[source])
        def left(self, ctx):
            order.append("left")

        @task(depends_on=[source])
        def right(self, ctx):
            order.append("right")

        @task(depends_on=[left, right])
        def sink(self, ctx):
            order.append("sink")

    Diamond.perform_now()

    assert order == ["source", "left", "right", "sink"]


# --- arguments ---------------------------------------------------------------


def test_tasks_read_arguments_through_ctx_arguments():
    seen = []

    class ReadsArguments(Workflow):
        user_id = argument(int)
        email = argument(str)
        optional_field = argument(str, default="")

        @task
        def example(self, ctx):
            args = ctx.arguments
            seen.append((args.user_id, args.email, args.optional_field))

    ReadsArguments.perform_now(user_id=7, email="a@example.com")

    assert seen == [(7, "a@example.com", "")]


def test_a_task_that_assigns_an_argument_fails_the_run():
    class AssignsArgument(Workflow):
        user_id = argument(int)

        @task
        def wrong(self, ctx):
            ctx.arguments.user_id = 123

    with pytest.raises(FrozenArgumentsError):
        AssignsArgument.perform_now(user_id=1)


# --- task options accepted at definition -------------------------------------


def test_retry_count_retries_a_flaky_task_until_it_succeeds():
    attempts = []

    class FlakyApi(Workflow):
        @task(retry=3, output={"response": str})
        def flaky_api(self, ctx):
            attempts.append(len(attempts) + 1)
            if len(attempts) < 3:
                raise ConnectionError("try again")
            return {"response": "ok"}

    with use_clock(ManualClock()):
        run = FlakyApi.perform_now()

    assert attempts == [1, 2, 3]
    assert run.output["flaky_api"][0].response == "ok"


def test_retry_dict_form_is_accepted_and_backs_off_exponentially():
    attempts = []

    class AdvancedRetry(Workflow):
        @task(retry={"count": 5, "strategy": "exponential", "base_delay": 2})
        def advanced_retry(self, ctx):
            attempts.append(1)
            if len(attempts) < 4:
                raise ConnectionError("unreliable")

    clock = ManualClock()
    with use_clock(clock):
        AdvancedRetry.perform_now()

    assert len(attempts) == 4
    assert clock.sleeps == [2, 4, 8]


@pytest.mark.parametrize(
    "retry",
    [
        0,
        3,
        {"count": 5, "strategy": "exponential", "base_delay": 2, "jitter": True},
        {"count": 2, "strategy": "linear", "base_delay": 1, "jitter": False},
        {"count": 2},
    ],
)
def test_valid_retry_forms_are_accepted(retry):
    class RetryForm(Workflow):
        @task(retry=retry)
        def only(self, ctx):
            return None

    assert RetryForm.perform_now().status == "succeeded"


def test_condition_false_skips_the_task_but_dependents_still_run():
    ran = []

    class Conditional(Workflow):
        amount = argument(int)

        @task(condition=lambda ctx: ctx.arguments.amount > 1000)
        def premium(self, ctx):
            ran.append("premium")

        @task(depends_on=[premium])
        def after_premium(self, ctx):
            ran.append("after_premium")

    with events.capture("task.skip") as skipped:
        Conditional.perform_now(amount=10)

    assert ran == ["after_premium"]
    assert [e.payload["task_name"] for e in skipped] == ["premium"]
    assert skipped[0].payload["reason"] == "condition_not_met"


def test_condition_true_runs_the_task():
    ran = []

    class ConditionMet(Workflow):
        amount = argument(int)
        verified = argument(bool)

        @task(
            condition=lambda ctx: ctx.arguments.amount > 1000 and ctx.arguments.verified
        )
        def complex_condition(self, ctx):
            ran.append("complex_condition")

    ConditionMet.perform_now(amount=5000, verified=True)

    assert ran == ["complex_condition"]


@pytest.mark.parametrize(
    "throttle",
    [10, {"key": "tests.dsl.external_api", "limit": 10, "ttl": 120}, {"limit": 1}],
)
def test_valid_throttle_forms_are_accepted_and_the_task_runs(throttle):
    ran = []

    class Throttled(Workflow):
        @task(throttle=throttle)
        def api_call(self, ctx):
            ran.append("api_call")

    with use_clock(ManualClock()):
        Throttled.perform_now()

    assert ran == ["api_call"]


def _define_task_with(**options):
    class WithOptions(Workflow):
        @task(**options)
        def only(self, ctx):
            return None

    return WithOptions


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retry", -1),
        ("retry", "3"),
        ("retry", {"count": -1}),
        ("retry", {"count": 3, "strategy": "quadratic"}),
        ("retry", {"count": 3, "base_delay": -1}),
        ("retry", {"count": 3, "tries": 2}),
        ("condition", "yes"),
        ("condition", 42),
        ("throttle", 0),
        ("throttle", -1),
        ("throttle", "10"),
        ("throttle", {"limit": 0}),
        ("throttle", {"key": "tests.dsl.no_limit"}),
        ("throttle", {"limit": 5, "ttl": -1}),
        ("throttle", {"limit": 5, "burst": 2}),
    ],
)
def test_invalid_option_value_raises_invalid_option_error_naming_it(option, value):
    with pytest.raises(InvalidOptionError) as excinfo:
        _define_task_with(**{option: value})

    assert excinfo.value.option.split(".")[0] == option
    assert option in str(excinfo.value)


# --- registry ----------------------------------------------------------------


def test_default_name_is_module_and_qualified_name():
    class DefaultNamed(Workflow):
        @task
        def only(self, ctx):
            return None

    assert DefaultNamed.name == f"{__name__}.{DefaultNamed.__qualname__}"
    assert ModuleLevelWorkflow.name == f"{__name__}.ModuleLevelWorkflow"


def test_explicit_name_is_kept():
    class ExplicitlyNamed(Workflow):
        name = "tests.dsl.ExplicitlyNamed"

        @task
        def only(self, ctx):
            return None

    assert ExplicitlyNamed.name == "tests.dsl.ExplicitlyNamed"


def test_name_claimed_by_another_qualified_name_is_a_definition_error():
    class Holder(Workflow):
        name = "tests.dsl.claimed-by-qualname"

        @task
        def only(self, ctx):
            return None

    with pytest.raises(WorkflowDefinitionError) as excinfo:

        class Claimant(Workflow):
            name = "tests.dsl.claimed-by-qualname"

            @task
            def only(self, ctx):
                return None

    assert "tests.dsl.claimed-by-qualname" in str(excinfo.value)
    assert Holder.perform_now().status == "succeeded"


def test_name_claimed_by_another_module_is_a_definition_error():
    class SameQualname(Workflow):
        name = "tests.dsl.claimed-by-module"

        @task
        def only(self, ctx):
            return None

    with pytest.raises(WorkflowDefinitionError) as excinfo:

        class SameQualname(Workflow):  # same qualname, another module
            __module__ = "tests.somewhere_else"
            name = "tests.dsl.claimed-by-module"

            @task
            def only(self, ctx):
                return None

    assert "tests.dsl.claimed-by-module" in str(excinfo.value)


def test_explicit_name_cannot_take_another_class_default_name():
    with pytest.raises(WorkflowDefinitionError):

        class Usurper(Workflow):
            name = f"{__name__}.ModuleLevelWorkflow"

            @task
            def only(self, ctx):
                return None


def _define_replaceable(calls, label):
    class Replaceable(Workflow):
        @task
        def only(self, ctx):
            calls.append(label)

    return Replaceable


def test_redefining_same_module_and_qualname_replaces_the_class():
    calls = []
    first = _define_replaceable(calls, "first")
    second = _define_replaceable(calls, "second")

    assert second is not first
    assert second.name == first.name
    second.perform_now()
    assert calls == ["second"]


def test_workers_resolve_a_replaced_name_to_the_newest_class():
    calls = []
    backend = MemoryBackend(mode="queued")

    with use_backend(backend):
        _define_replaceable(calls, "old").perform_later()
        _define_replaceable(calls, "new")
        backend.drain()

    assert calls == ["new"]


# --- queue -------------------------------------------------------------------


def test_queue_defaults_to_default():
    assert ModuleLevelWorkflow.queue == "default"


def test_queue_can_be_set_in_the_class_body():
    class OnEtlQueue(Workflow):
        queue = "etl"

        @task
        def only(self, ctx):
            return None

    assert OnEtlQueue.queue == "etl"
