"""Workflow arguments: declaration, validation, defaults and immutability.

Covers the "Working with Arguments" part of the Ruby guide DSL_BASICS.md as
the Python API defines it (SPEC §2): ``argument(type, default=...)``,
validation of unknown, missing and mistyped arguments for the common types
(raising ``ArgumentValidationError`` at ``perform_now`` / ``perform_later``
time, before any task runs), ``ctx.arguments.x``, ``FrozenArgumentsError`` on
assignment and ``ctx.arguments.to_dict()``.
"""

import copy
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

import pytest

from job_workflow import Workflow, argument, task, use_backend
from job_workflow.backends.memory import MemoryBackend
from job_workflow.errors import ArgumentValidationError, FrozenArgumentsError


def _single_argument_workflow(annotation, seen, **argument_options):
    """A workflow with one argument, ``sample_arg``, whose task records it."""

    class SingleArgument(Workflow):
        sample_arg = argument(annotation, **argument_options)

        @task
        def record(self, ctx):
            seen.append(ctx.arguments.sample_arg)

    return SingleArgument


def _order_workflow(ran):
    class PlaceOrder(Workflow):
        items = argument(list[int])
        factor = argument(int, default=2)

        @task
        def first(self, ctx):
            ran.append("first")

    return PlaceOrder


# --- accepted values ---------------------------------------------------------

VALID_VALUES = [
    (int, 3),
    (str, "text"),
    (float, 1.5),
    (bool, False),
    (list[int], [1, 2, 3]),
    (list[str], []),
    (dict[str, int], {"a": 1, "b": 2}),
    (int | None, None),
    (int | None, 4),
    (Literal["low", "high"], "high"),
    (datetime, datetime(2024, 1, 2, 3, 4, 5)),
    (date, date(2024, 1, 2)),
    (Decimal, Decimal("12.50")),
    (UUID, UUID("12345678-1234-5678-1234-567812345678")),
]


@pytest.mark.parametrize(("annotation", "value"), VALID_VALUES)
def test_a_well_typed_value_reaches_the_task_unchanged(annotation, value):
    seen = []
    workflow = _single_argument_workflow(annotation, seen)

    workflow.perform_now(sample_arg=value)

    assert seen == [value]
    assert type(seen[0]) is type(value)


# --- mistyped values ---------------------------------------------------------

MISTYPED_VALUES = [
    (int, "3"),
    (int, 1.5),
    (int, True),
    (bool, 1),
    (str, 3),
    (float, "1.5"),
    (list[int], [1, "2"]),
    (list[int], "12"),
    (list[int], {"a": 1}),
    (dict[str, int], {"a": "1"}),
    (dict[str, int], {1: 1}),
    (dict[str, int], [("a", 1)]),
    (int | None, "x"),
    (Literal["low", "high"], "medium"),
    (datetime, "2024-01-02T03:04:05"),
    (date, "2024-01-02"),
    (Decimal, "12.50"),
    (UUID, "12345678-1234-5678-1234-567812345678"),
    (UUID, 42),
]


@pytest.mark.parametrize(("annotation", "value"), MISTYPED_VALUES)
def test_a_mistyped_value_raises_before_any_task_runs(annotation, value):
    seen = []
    workflow = _single_argument_workflow(annotation, seen)

    with pytest.raises(ArgumentValidationError) as excinfo:
        workflow.perform_now(sample_arg=value)

    assert excinfo.value.argument == "sample_arg"
    assert "sample_arg" in str(excinfo.value)
    assert seen == []


def test_bool_is_not_accepted_for_an_int_argument():
    seen = []
    workflow = _single_argument_workflow(int, seen)

    with pytest.raises(ArgumentValidationError) as excinfo:
        workflow.perform_now(sample_arg=True)

    assert excinfo.value.argument == "sample_arg"
    assert seen == []


def test_argument_validation_error_is_a_type_error():
    workflow = _single_argument_workflow(int, [])

    with pytest.raises(TypeError):
        workflow.perform_now(sample_arg="three")


# --- unknown and missing arguments -------------------------------------------


def test_unknown_argument_raises_naming_it_before_any_task_runs():
    ran = []
    workflow = _order_workflow(ran)

    with pytest.raises(ArgumentValidationError) as excinfo:
        workflow.perform_now(items=[1], discount=5)

    assert excinfo.value.argument == "discount"
    assert "discount" in str(excinfo.value)
    assert ran == []


def test_missing_argument_raises_naming_it_before_any_task_runs():
    ran = []
    workflow = _order_workflow(ran)

    with pytest.raises(ArgumentValidationError) as excinfo:
        workflow.perform_now(factor=3)

    assert excinfo.value.argument == "items"
    assert "items" in str(excinfo.value)
    assert ran == []


def test_perform_later_validates_before_anything_is_enqueued():
    ran = []
    workflow = _order_workflow(ran)
    backend = MemoryBackend(mode="queued")

    with use_backend(backend):
        with pytest.raises(ArgumentValidationError) as excinfo:
            workflow.perform_later(items="not a list")
        backend.drain()

    assert excinfo.value.argument == "items"
    assert ran == []


# --- defaults ----------------------------------------------------------------


def test_default_is_used_when_the_argument_is_omitted():
    seen = []
    workflow = _single_argument_workflow(int, seen, default=2)

    workflow.perform_now()

    assert seen == [2]


def test_a_passed_value_overrides_the_default():
    seen = []
    workflow = _single_argument_workflow(int, seen, default=2)

    workflow.perform_now(sample_arg=9)

    assert seen == [9]


def test_none_default_for_an_optional_argument():
    seen = []
    workflow = _single_argument_workflow(datetime | None, seen, default=None)

    workflow.perform_now()

    assert seen == [None]


# --- reading and immutability ------------------------------------------------


def test_arguments_are_read_as_attributes_of_ctx_arguments():
    seen = {}

    class Reader(Workflow):
        user_id = argument(int)
        tags = argument(list[str], default=[])

        @task
        def read(self, ctx):
            seen["user_id"] = ctx.arguments.user_id
            seen["tags"] = ctx.arguments.tags

    Reader.perform_now(user_id=11, tags=["new"])

    assert seen == {"user_id": 11, "tags": ["new"]}


def test_every_task_sees_the_same_arguments():
    seen = []

    class Shared(Workflow):
        region = argument(str)

        @task
        def first(self, ctx):
            seen.append(ctx.arguments.region)

        @task(depends_on=[first])
        def second(self, ctx):
            seen.append(ctx.arguments.region)

    Shared.perform_now(region="eu")

    assert seen == ["eu", "eu"]


def test_assigning_an_argument_raises_frozen_arguments_error():
    caught = []
    seen_after = []

    class Assigner(Workflow):
        user_id = argument(int)

        @task
        def wrong(self, ctx):
            try:
                ctx.arguments.user_id = 123
            except FrozenArgumentsError as error:
                caught.append(error)
            seen_after.append(ctx.arguments.user_id)

    Assigner.perform_now(user_id=1)

    assert len(caught) == 1
    assert isinstance(caught[0], AttributeError)
    assert seen_after == [1]


def test_adding_a_new_attribute_to_arguments_raises_frozen_arguments_error():
    caught = []

    class Adder(Workflow):
        user_id = argument(int)

        @task
        def wrong(self, ctx):
            try:
                ctx.arguments.extra = "value"
            except FrozenArgumentsError as error:
                caught.append(error)

    Adder.perform_now(user_id=1)

    assert len(caught) == 1


def test_an_uncaught_assignment_fails_perform_now_with_frozen_arguments_error():
    class Unguarded(Workflow):
        user_id = argument(int)

        @task
        def wrong(self, ctx):
            ctx.arguments.user_id = 123

    with pytest.raises(FrozenArgumentsError):
        Unguarded.perform_now(user_id=1)


def test_to_dict_returns_every_argument_including_defaults():
    dumped = []

    class Dumper(Workflow):
        items = argument(list[int])
        factor = argument(int, default=2)
        note = argument(str | None, default=None)

        @task
        def dump(self, ctx):
            dumped.append(ctx.arguments.to_dict())

    Dumper.perform_now(items=[1, 2])

    assert dumped == [{"items": [1, 2], "factor": 2, "note": None}]


def test_changing_the_to_dict_result_does_not_change_the_arguments():
    seen = []

    class Detached(Workflow):
        factor = argument(int, default=2)

        @task
        def mutate_copy(self, ctx):
            snapshot = ctx.arguments.to_dict()
            snapshot["factor"] = 100
            seen.append(ctx.arguments.factor)

    Detached.perform_now()

    assert seen == [2]


def test_to_dict_of_a_workflow_without_arguments_is_empty():
    dumped = []

    class NoArguments(Workflow):
        @task
        def dump(self, ctx):
            dumped.append(ctx.arguments.to_dict())

    NoArguments.perform_now()

    assert dumped == [{}]


@pytest.mark.parametrize(
    ("tp", "value", "change"),
    [
        (list[str], ["a", "b"], lambda v: v.append("x")),
        (dict[str, int], {"a": 1}, lambda v: v.update(x=9)),
        (list[list[int]], [[1], [2]], lambda v: v[0].append(9)),
        (dict[str, list[int]], {"a": [1]}, lambda v: v["a"].append(9)),
    ],
)
def test_a_task_changing_an_argument_s_value_changes_it_for_no_other_job(
    tp, value, change
):
    """Each job gets its own copy of the stored arguments (the memory
    backend keeps payloads by reference): a sub-job that changes a list or
    dict in place leaves its siblings and its parent's payload alone."""
    seen = []

    class Changer(Workflow):
        name = "tests.arguments.Changer"
        data = argument(tp)

        @task(each=lambda ctx: [0, 1, 2], enqueue=True)
        def touch(self, ctx):
            seen.append(copy.deepcopy(ctx.arguments.data))
            change(ctx.arguments.data)

    queued = MemoryBackend("queued")
    with use_backend(queued):
        handle = Changer.perform_later(data=value)
        queued.drain(timeout=30)

    assert handle.status() == "succeeded"
    assert seen == [value, value, value]
    assert queued.get_job(handle.job_id).arguments == {"data": value}


def test_copier_copies_a_container_of_another_kind_than_declared_through():
    from job_workflow.core._codec import copier

    flat = ["a", "b"]
    assert copier(list[str])(flat) == flat
    assert copier(list[str])(flat) is not flat
    odd = {"k": [1]}  # stored under list[str], yet a dict
    copied = copier(list[str])(odd)
    assert copied == odd
    assert copied["k"] is not odd["k"]
    odd_dict = [{"n": 1}]  # stored under dict[str, int], yet a list
    assert copier(dict[str, int])(odd_dict)[0] is not odd_dict[0]
    assert copier(str)("s") == "s"
