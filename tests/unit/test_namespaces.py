"""Namespaces: grouping tasks under ``"<namespace>:<task>"`` full names.

Covers the Ruby guide NAMESPACES.md as the Python API defines it (SPEC §2 and
the API notes): a nested ``class payment(Namespace):`` in a workflow, full
task names such as ``"payment:validate"``, ``depends_on`` within and between
namespaces, outputs and events under full names, hooks addressed by full
name, and nested namespaces (``"a:b:t"``).
"""

import pytest

from job_workflow import Namespace, Workflow, after, before, events, on_error, task
from job_workflow.errors import DuplicateTaskError, UnknownTaskError


class ECommerceOrder(Workflow):
    name = "tests.namespaces.ECommerceOrder"

    class payment(Namespace):
        @task
        def validate(self, ctx):
            return None

        @task(depends_on=["payment:validate"], output={"payment_id": str})
        def charge(self, ctx):
            return {"payment_id": "pay-1"}

        @task(depends_on=["payment:charge"], output={"receipt_for": str})
        def send_receipt(self, ctx):
            return {"receipt_for": ctx.output["payment:charge"][0].payment_id}

    class inventory(Namespace):
        @task
        def check_availability(self, ctx):
            return None

        @task(depends_on=["inventory:check_availability"], output={"reserved": bool})
        def reserve(self, ctx):
            return {"reserved": True}

    class shipping(Namespace):
        @task(output={"cost": float})
        def calculate_cost(self, ctx):
            return {"cost": 4.5}

        @task(depends_on=["shipping:calculate_cost"], output={"label": str})
        def create_label(self, ctx):
            return {"label": f"label-{ctx.output['shipping:calculate_cost'][0].cost}"}


EXPECTED_ECOMMERCE_TASKS = [
    "payment:validate",
    "payment:charge",
    "payment:send_receipt",
    "inventory:check_availability",
    "inventory:reserve",
    "shipping:calculate_cost",
    "shipping:create_label",
]


# --- full names --------------------------------------------------------------


def test_namespaced_tasks_get_full_names():
    assert [t.name for t in ECommerceOrder.tasks] == EXPECTED_ECOMMERCE_TASKS


def test_namespaced_tasks_run_under_their_full_names():
    with events.capture("task.start") as started:
        run = ECommerceOrder.perform_now()

    assert run.status == "succeeded"
    assert [e.payload["task_name"] for e in started] == EXPECTED_ECOMMERCE_TASKS


def test_outputs_are_stored_under_full_names():
    run = ECommerceOrder.perform_now()

    assert run.output["payment:charge"][0].payment_id == "pay-1"
    assert run.output["payment:send_receipt"][0].receipt_for == "pay-1"
    assert run.output["inventory:reserve"][0].reserved is True
    assert run.output["shipping:create_label"][0].label == "label-4.5"
    assert run.output["payment:charge"][0].task_name == "payment:charge"


def test_a_short_name_is_not_an_output_key():
    run = ECommerceOrder.perform_now()

    with pytest.raises(UnknownTaskError):
        run.output["charge"]


# --- dependencies ------------------------------------------------------------


def test_depends_on_within_a_namespace_by_relative_name_and_task_object():
    order = []

    class RelativeDependencies(Workflow):
        class payment(Namespace):
            @task(depends_on=["charge"])
            def send_receipt(self, ctx):
                order.append("payment:send_receipt")

            @task
            def validate(self, ctx):
                order.append("payment:validate")

            @task(depends_on=[validate])
            def charge(self, ctx):
                order.append("payment:charge")

    RelativeDependencies.perform_now()

    assert order == ["payment:validate", "payment:charge", "payment:send_receipt"]


def test_depends_on_between_namespaces_uses_full_names():
    order = []

    class CrossNamespace(Workflow):
        class shipping(Namespace):
            @task(depends_on=["payment:charge"])
            def create_label(self, ctx):
                order.append("shipping:create_label")

        class payment(Namespace):
            @task
            def charge(self, ctx):
                order.append("payment:charge")

    CrossNamespace.perform_now()

    assert order == ["payment:charge", "shipping:create_label"]


def test_a_top_level_task_depends_on_namespaced_tasks():
    seen = []

    class TopLevelAfterNamespace(Workflow):
        class payment(Namespace):
            @task(output={"amount": int})
            def charge(self, ctx):
                return {"amount": 30}

        class shipping(Namespace):
            @task(output={"cost": int})
            def calculate_cost(self, ctx):
                return {"cost": 5}

        @task(depends_on=["payment:charge", "shipping:calculate_cost"])
        def invoice(self, ctx):
            amount = ctx.output["payment:charge"][0].amount
            cost = ctx.output["shipping:calculate_cost"][0].cost
            seen.append(amount + cost)

    TopLevelAfterNamespace.perform_now()

    assert seen == [35]


def test_a_namespaced_task_depends_on_a_top_level_task():
    order = []

    class NamespaceAfterTopLevel(Workflow):
        class payment(Namespace):
            @task(depends_on=["load_order"])
            def charge(self, ctx):
                order.append("payment:charge")

        @task
        def load_order(self, ctx):
            order.append("load_order")

    NamespaceAfterTopLevel.perform_now()

    assert order == ["load_order", "payment:charge"]


def test_a_string_resolves_as_a_full_name_before_a_relative_one():
    # Inside ``payment``, "validate" names the top-level task because full
    # names are looked up first.
    order = []

    class FullNameFirst(Workflow):
        @task
        def validate(self, ctx):
            order.append("validate")

        class payment(Namespace):
            @task(depends_on=["validate"])
            def charge(self, ctx):
                order.append("payment:charge")

            @task
            def validate(self, ctx):
                order.append("payment:validate")

    FullNameFirst.perform_now()

    assert order == ["validate", "payment:charge", "payment:validate"]


def test_equal_short_names_in_different_namespaces_do_not_clash():
    class SameShortNames(Workflow):
        @task
        def validate(self, ctx):
            return None

        class payment(Namespace):
            @task
            def validate(self, ctx):
                return None

        class inventory(Namespace):
            @task
            def validate(self, ctx):
                return None

    names = [t.name for t in SameShortNames.tasks]
    assert names == ["validate", "payment:validate", "inventory:validate"]


def test_duplicate_task_inside_a_namespace_names_the_full_name():
    with pytest.raises(DuplicateTaskError) as excinfo:

        class DuplicateInNamespace(Workflow):
            class payment(Namespace):
                @task
                def validate(self, ctx):
                    return None

                @task(name="validate")
                def validate_again(self, ctx):
                    return None

    assert excinfo.value.name == "payment:validate"


def test_unknown_dependency_inside_a_namespace_is_rejected_at_definition():
    with pytest.raises(UnknownTaskError) as excinfo:

        class UnknownInNamespace(Workflow):
            class payment(Namespace):
                @task(depends_on=["refund"])
                def charge(self, ctx):
                    return None

    assert "refund" in str(excinfo.value)


# --- hooks -------------------------------------------------------------------


def test_hooks_address_namespaced_tasks_by_full_name():
    calls = []

    class HookedNamespace(Workflow):
        class payment(Namespace):
            @task
            def validate(self, ctx):
                calls.append("payment:validate")

            @task(depends_on=[validate])
            def charge(self, ctx):
                calls.append("payment:charge")

        @before("payment:charge")
        def before_charge(self, ctx):
            calls.append("before payment:charge")

        @after("payment:charge")
        def after_charge(self, ctx):
            calls.append("after payment:charge")

    HookedNamespace.perform_now()

    assert calls == [
        "payment:validate",
        "before payment:charge",
        "payment:charge",
        "after payment:charge",
    ]


def test_on_error_receives_the_full_task_name():
    failed = []

    class FailingNamespace(Workflow):
        class payment(Namespace):
            @task
            def charge(self, ctx):
                raise RuntimeError("card declined")

        @on_error("payment:charge")
        def record(self, ctx, error, task):
            failed.append((task.name, str(error)))

    with pytest.raises(RuntimeError, match="card declined"):
        FailingNamespace.perform_now()

    assert failed == [("payment:charge", "card declined")]


def test_a_hook_without_names_covers_namespaced_tasks():
    seen = []

    class GlobalHook(Workflow):
        @task
        def top(self, ctx):
            return None

        class payment(Namespace):
            @task
            def charge(self, ctx):
                return None

        @before()
        def every_task(self, ctx):
            seen.append("ran")

    with events.capture("task.start") as started:
        GlobalHook.perform_now()

    assert len(seen) == 2
    assert [e.payload["task_name"] for e in started] == ["top", "payment:charge"]


def test_a_hook_naming_a_short_name_at_top_level_is_unknown():
    with pytest.raises(UnknownTaskError) as excinfo:

        class ShortHookName(Workflow):
            class payment(Namespace):
                @task
                def charge(self, ctx):
                    return None

            @before("charge")
            def before_charge(self, ctx):
                return None

    assert excinfo.value.name == "charge"


# --- nested namespaces -------------------------------------------------------


class NestedNamespaces(Workflow):
    name = "tests.namespaces.NestedNamespaces"

    class a(Namespace):
        class b(Namespace):
            @task(output={"value": int})
            def t(self, ctx):
                return {"value": 1}

            @task(depends_on=["t"], output={"value": int})
            def u(self, ctx):
                return {"value": ctx.output["a:b:t"][0].value + 1}

        @task(depends_on=["a:b:u"], output={"value": int})
        def v(self, ctx):
            return {"value": ctx.output["a:b:u"][0].value + 1}

    @task(depends_on=["a:v"], output={"value": int})
    def w(self, ctx):
        return {"value": ctx.output["a:v"][0].value + 1}


def test_nested_namespaces_join_their_names_with_colons():
    assert [t.name for t in NestedNamespaces.tasks] == ["a:b:t", "a:b:u", "a:v", "w"]


def test_nested_namespaces_run_in_dependency_order_with_outputs():
    run = NestedNamespaces.perform_now()

    assert run.output["a:b:t"][0].value == 1
    assert run.output["a:b:u"][0].value == 2
    assert run.output["a:v"][0].value == 3
    assert run.output["w"][0].value == 4


def test_hooks_address_nested_namespaced_tasks_by_full_name():
    calls = []

    class NestedHooks(Workflow):
        class a(Namespace):
            class b(Namespace):
                @task
                def t(self, ctx):
                    calls.append("a:b:t")

        @before("a:b:t")
        def before_t(self, ctx):
            calls.append("before a:b:t")

    NestedHooks.perform_now()

    assert calls == ["before a:b:t", "a:b:t"]
