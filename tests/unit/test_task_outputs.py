"""Task outputs: declaring them, reading them and what makes them fail.

Covers the topic of the Ruby guide TASK_OUTPUTS.md translated to the Python
API: ``@task(output={...})`` declarations, ``ctx.output["task"]`` as a list
of ``TaskOutput`` (fields as attributes, ``.data``, ``.each_index``), map task
outputs in ``each_index`` order, normalisation (only declared fields kept,
missing ones ``None``), ``OutputError`` for non-dict returns, unserialisable
values and mistyped values, ``UnknownTaskError`` for an unknown task name,
``WorkflowRun.output`` and the round trip of datetime, date, Decimal and UUID
values.
"""

from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest

from job_workflow import (
    TaskOutput,
    Workflow,
    WorkflowRun,
    argument,
    task,
    use_backend,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.errors import OutputError, UnknownTaskError, WorkflowError


@pytest.fixture(autouse=True)
def inline_memory_backend():
    with use_backend(MemoryBackend(mode="inline")):
        yield


# --- declaring and reading outputs -------------------------------------------


def test_dependent_task_reads_declared_fields_as_attributes():
    seen = {}

    class Calculation(Workflow):
        input_value = argument(int, default=0)

        @task(output={"result": int, "message": str})
        def calculate(self, ctx):
            return {"result": ctx.arguments.input_value * 2, "message": "done"}

        @task(depends_on=[calculate])
        def report(self, ctx):
            first = ctx.output["calculate"][0]
            seen["result"] = first.result
            seen["message"] = first.message

    Calculation.perform_now(input_value=21)

    assert seen == {"result": 42, "message": "done"}


def test_ctx_output_of_a_plain_task_is_a_list_of_one_task_output():
    seen = {}

    class SingleOutput(Workflow):
        @task(output={"count": int})
        def fetch(self, ctx):
            return {"count": 3}

        @task(depends_on=[fetch])
        def inspect(self, ctx):
            seen["outputs"] = ctx.output["fetch"]

    SingleOutput.perform_now()

    outputs = seen["outputs"]
    assert isinstance(outputs, list)
    assert len(outputs) == 1
    assert isinstance(outputs[0], TaskOutput)


def test_task_output_exposes_data_dict_and_task_name():
    seen = {}

    class DataDict(Workflow):
        @task(output={"name": str, "items": list[int]})
        def fetch(self, ctx):
            return {"name": "batch", "items": [1, 2]}

        @task(depends_on=[fetch])
        def inspect(self, ctx):
            seen["output"] = ctx.output["fetch"][0]

    DataDict.perform_now()

    output = seen["output"]
    assert output.data == {"name": "batch", "items": [1, 2]}
    assert output.task_name == "fetch"


def test_string_depends_on_gives_same_output_access():
    seen = {}

    class ByName(Workflow):
        @task(output={"value": str})
        def produce(self, ctx):
            return {"value": "x"}

        @task(depends_on=["produce"])
        def consume(self, ctx):
            seen["value"] = ctx.output["produce"][0].value

    ByName.perform_now()

    assert seen["value"] == "x"


def test_outputs_chain_through_several_tasks():
    class UserReport(Workflow):
        user_id = argument(int)

        @task(output={"name": str, "role": str})
        def fetch_user(self, ctx):
            return {"name": f"user-{ctx.arguments.user_id}", "role": "admin"}

        @task(depends_on=[fetch_user], output={"permissions": list[str]})
        def fetch_permissions(self, ctx):
            role = ctx.output["fetch_user"][0].role
            return {"permissions": [f"{role}:read", f"{role}:write"]}

        @task(
            depends_on=[fetch_user, fetch_permissions],
            output={"report": dict[str, str]},
        )
        def generate_report(self, ctx):
            user = ctx.output["fetch_user"][0]
            perms = ctx.output["fetch_permissions"][0]
            return {"report": {"user": user.name, "perms": ",".join(perms.permissions)}}

    run = UserReport.perform_now(user_id=7)

    assert run.output["generate_report"][0].report == {
        "user": "user-7",
        "perms": "admin:read,admin:write",
    }


def test_task_without_output_declaration_gives_empty_list():
    seen = {}

    class NoOutput(Workflow):
        @task
        def side_effect(self, ctx):
            return {"ignored": 1}

        @task(depends_on=[side_effect])
        def inspect(self, ctx):
            seen["outputs"] = ctx.output["side_effect"]

    run = NoOutput.perform_now()

    assert seen["outputs"] == []
    assert run.output["side_effect"] == []


# --- map task outputs ---------------------------------------------------------


def test_map_task_outputs_are_listed_in_each_index_order():
    seen = {}

    class BatchCalculation(Workflow):
        numbers = argument(list[int], default=[])

        @task(
            each=lambda ctx: ctx.arguments.numbers,
            output={"doubled": int, "original": int},
        )
        def double_numbers(self, ctx):
            value = ctx.each_value
            return {"doubled": value * 2, "original": value}

        @task(depends_on=[double_numbers])
        def summarize(self, ctx):
            outputs = ctx.output["double_numbers"]
            seen["pairs"] = [(o.original, o.doubled) for o in outputs]
            seen["indexes"] = [o.each_index for o in outputs]
            seen["total"] = sum(o.doubled for o in outputs)

    BatchCalculation.perform_now(numbers=[5, 1, 4, 2, 3])

    assert seen["pairs"] == [(5, 10), (1, 2), (4, 8), (2, 4), (3, 6)]
    assert seen["indexes"] == [0, 1, 2, 3, 4]
    assert seen["total"] == 30


def test_map_task_outputs_support_indexing_from_both_ends():
    seen = {}

    class Indexed(Workflow):
        @task(each=lambda ctx: ["a", "b", "c"], output={"result": str})
        def process_items(self, ctx):
            return {"result": ctx.each_value.upper()}

        @task(depends_on=[process_items])
        def verify(self, ctx):
            outputs = ctx.output["process_items"]
            seen["first"] = outputs[0].result
            seen["last"] = outputs[-1].result
            seen["size"] = len(outputs)

    Indexed.perform_now()

    assert seen == {"first": "A", "last": "C", "size": 3}


# --- normalisation ------------------------------------------------------------


def test_only_declared_fields_are_kept():
    class ExtraFields(Workflow):
        @task(output={"kept": str})
        def produce(self, ctx):
            return {"kept": "yes", "dropped": "no"}

    run = ExtraFields.perform_now()

    output = run.output["produce"][0]
    assert output.data == {"kept": "yes"}
    assert "dropped" not in output.data


def test_undeclared_field_is_not_an_attribute():
    class ExtraAttribute(Workflow):
        @task(output={"kept": str})
        def produce(self, ctx):
            return {"kept": "yes", "dropped": "no"}

    run = ExtraAttribute.perform_now()

    with pytest.raises(AttributeError):
        run.output["produce"][0].dropped


def test_missing_declared_fields_are_none():
    seen = {}

    class MissingField(Workflow):
        @task(output={"required": str, "optional": int})
        def example(self, ctx):
            return {"required": "value"}

        @task(depends_on=[example])
        def check_output(self, ctx):
            first = ctx.output["example"][0]
            seen["required"] = first.required
            seen["optional"] = first.optional

    run = MissingField.perform_now()

    assert seen == {"required": "value", "optional": None}
    assert run.output["example"][0].data == {"required": "value", "optional": None}


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ({"a": 1, "b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": 1, "b": None}),  # stored before "b" was declared
        ({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2}),  # "c" no longer declared
    ],
)
def test_outputs_read_back_from_the_backend_have_the_declared_fields(stored, read):
    """A resumed job reads its stored outputs as declared now, whatever
    version of the task stored them."""
    seen = []

    class Resumed(Workflow):
        name = "tests.task_outputs.Resumed"

        @task(output={"a": int, "b": int})
        def first(self, ctx):
            raise AssertionError("recorded as done: never runs again")

        @task(depends_on=[first])
        def second(self, ctx):
            seen.append(ctx.output["first"][0].data)

    queued = MemoryBackend("queued")
    with use_backend(queued):
        handle = Resumed.perform_later()
        queued.record_iteration(handle.job_id, "first", 0, stored, task_outcome="done")
        queued.drain(timeout=30)

    assert handle.status() == "succeeded"
    assert seen == [read]


# --- output errors ------------------------------------------------------------


def test_non_dict_return_raises_output_error_naming_the_task():
    class ReturnsInt(Workflow):
        @task(output={"result": int})
        def calculate(self, ctx):
            return 42

    with pytest.raises(OutputError) as caught:
        ReturnsInt.perform_now()

    assert caught.value.task == "calculate"
    assert "calculate" in str(caught.value)


def test_non_dict_return_from_a_map_iteration_raises_output_error():
    class MapReturnsList(Workflow):
        @task(each=lambda ctx: [1, 2], output={"result": int})
        def calculate(self, ctx):
            return [ctx.each_value]

    with pytest.raises(OutputError) as caught:
        MapReturnsList.perform_now()

    assert caught.value.task == "calculate"


def test_unserialisable_value_raises_output_error_naming_task_and_field():
    class Unserialisable(Workflow):
        @task(output={"items": list})
        def collect(self, ctx):
            return {"items": [object()]}

    with pytest.raises(OutputError) as caught:
        Unserialisable.perform_now()

    assert caught.value.task == "collect"
    assert caught.value.field == "items"
    assert "collect" in str(caught.value)
    assert "items" in str(caught.value)


def test_mistyped_value_raises_output_error_naming_task_and_field():
    class Mistyped(Workflow):
        @task(output={"count": int})
        def tally(self, ctx):
            return {"count": "three"}

    with pytest.raises(OutputError) as caught:
        Mistyped.perform_now()

    assert caught.value.task == "tally"
    assert caught.value.field == "count"
    assert "tally" in str(caught.value)
    assert "count" in str(caught.value)


def test_mistyped_list_element_raises_output_error():
    class MistypedElement(Workflow):
        @task(output={"ids": list[int]})
        def gather(self, ctx):
            return {"ids": [1, "two", 3]}

    with pytest.raises(OutputError) as caught:
        MistypedElement.perform_now()

    assert caught.value.field == "ids"


def test_output_error_stops_the_dependents():
    ran = []

    class StopsDependents(Workflow):
        @task(output={"count": int})
        def tally(self, ctx):
            return {"count": "three"}

        @task(depends_on=[tally])
        def after_tally(self, ctx):
            ran.append("after_tally")

    with pytest.raises(OutputError):
        StopsDependents.perform_now()

    assert ran == []


def test_output_error_is_a_workflow_error():
    assert issubclass(OutputError, WorkflowError)


# --- unknown task names -------------------------------------------------------


def test_unknown_task_in_ctx_output_raises_unknown_task_error():
    seen = {}

    class UnknownInContext(Workflow):
        @task(output={"value": int})
        def known(self, ctx):
            return {"value": 1}

        @task(depends_on=[known])
        def reader(self, ctx):
            try:
                ctx.output["missing_task"]
            except UnknownTaskError as error:
                seen["error"] = error

    UnknownInContext.perform_now()

    error = seen["error"]
    assert error.name == "missing_task"
    assert "missing_task" in str(error)


def test_unknown_task_in_ctx_output_fails_the_run_when_uncaught():
    class UncaughtUnknown(Workflow):
        @task
        def reader(self, ctx):
            ctx.output["nowhere"]

    with pytest.raises(UnknownTaskError):
        UncaughtUnknown.perform_now()


def test_unknown_task_in_run_output_raises_unknown_task_error():
    class UnknownInRun(Workflow):
        @task(output={"value": int})
        def known(self, ctx):
            return {"value": 1}

    run = UnknownInRun.perform_now()

    with pytest.raises(UnknownTaskError) as caught:
        run.output["missing_task"]

    assert caught.value.name == "missing_task"


# --- WorkflowRun.output -------------------------------------------------------


def test_workflow_run_output_gives_the_same_task_outputs():
    seen = {}

    class RunOutput(Workflow):
        @task(each=lambda ctx: [1, 2, 3], output={"square": int})
        def square(self, ctx):
            return {"square": ctx.each_value**2}

        @task(depends_on=[square])
        def inspect(self, ctx):
            seen["data"] = [o.data for o in ctx.output["square"]]

    run = RunOutput.perform_now()

    assert isinstance(run, WorkflowRun)
    assert run.status == "succeeded"
    outputs = run.output["square"]
    assert all(isinstance(o, TaskOutput) for o in outputs)
    assert [o.data for o in outputs] == seen["data"]
    assert [o.square for o in outputs] == [1, 4, 9]
    assert [o.each_index for o in outputs] == [0, 1, 2]


def test_workflow_run_output_to_dict_maps_task_to_data_dicts():
    class ToDict(Workflow):
        @task(each=lambda ctx: ["a", "b"], output={"upper": str})
        def shout(self, ctx):
            return {"upper": ctx.each_value.upper()}

        @task(output={"total": int})
        def count(self, ctx):
            return {"total": 2}

    as_dict = ToDict.perform_now().output.to_dict()

    assert as_dict["shout"] == [{"upper": "A"}, {"upper": "B"}]
    assert as_dict["count"] == [{"total": 2}]


# --- value round trip ---------------------------------------------------------

WHEN = datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
DAY = date(2024, 5, 1)
AMOUNT = Decimal("1234.5600")
ORDER_ID = UUID("12345678-1234-5678-1234-567812345678")


class RichValues(Workflow):
    name = "tests.unit.task_outputs.RichValues"

    @task(output={"at": datetime, "day": date, "amount": Decimal, "order": UUID})
    def produce(self, ctx):
        return {"at": WHEN, "day": DAY, "amount": AMOUNT, "order": ORDER_ID}

    @task(depends_on=[produce], output={"echo": dict[str, str]})
    def consume(self, ctx):
        first = ctx.output["produce"][0]
        return {
            "echo": {
                "at": type(first.at).__name__,
                "day": type(first.day).__name__,
                "amount": type(first.amount).__name__,
                "order": type(first.order).__name__,
            }
        }


def test_rich_values_round_trip_to_dependent_tasks():
    run = RichValues.perform_now()

    assert run.output["consume"][0].echo == {
        "at": "datetime",
        "day": "date",
        "amount": "Decimal",
        "order": "UUID",
    }


def test_rich_values_round_trip_to_workflow_run_output():
    run = RichValues.perform_now()

    produced = run.output["produce"][0]
    assert produced.at == WHEN
    assert produced.at.tzinfo is not None
    assert produced.day == DAY
    assert type(produced.day) is date
    assert produced.amount == AMOUNT
    assert isinstance(produced.amount, Decimal)
    assert str(produced.amount) == "1234.5600"
    assert produced.order == ORDER_ID
    assert isinstance(produced.order, UUID)
