"""Map tasks and the ``enqueue`` option, run synchronously with ``perform_now``.

Covers the synchronous part of the Ruby guide PARALLEL_PROCESSING.md
translated to the Python API: ``each=`` map tasks with ``ctx.each_value`` and
``ctx.each_index``, ``ContextError`` for both outside a map task, mapping over
an earlier task's output, the matrix (cartesian product) pattern, empty
collections, the accepted forms of ``enqueue=`` (whose iterations still run in
the calling thread under ``perform_now``, in index order, with a
``task.enqueue`` event carrying ``sub_job_count``) and ``InvalidOptionError``
for invalid ``enqueue`` options.
"""

import itertools
import threading

import pytest

from job_workflow import Workflow, argument, events, task, use_backend
from job_workflow.backends.memory import MemoryBackend
from job_workflow.errors import ContextError, InvalidOptionError


@pytest.fixture(autouse=True)
def inline_memory_backend():
    with use_backend(MemoryBackend(mode="inline")):
        yield


# --- map tasks ----------------------------------------------------------------


def test_map_task_runs_once_per_element_with_value_and_index():
    calls = []

    class SimpleMap(Workflow):
        items = argument(list[str])

        @task(each=lambda ctx: ctx.arguments.items)
        def process_items(self, ctx):
            calls.append((ctx.each_index, ctx.each_value))

    SimpleMap.perform_now(items=["a", "b", "c"])

    assert calls == [(0, "a"), (1, "b"), (2, "c")]


def test_map_task_outputs_one_entry_per_element_in_order():
    class MapOutputs(Workflow):
        numbers = argument(list[int])

        @task(each=lambda ctx: ctx.arguments.numbers, output={"tripled": int})
        def triple(self, ctx):
            return {"tripled": ctx.each_value * 3}

    run = MapOutputs.perform_now(numbers=[4, 2, 7])

    outputs = run.output["triple"]
    assert [o.tripled for o in outputs] == [12, 6, 21]
    assert [o.each_index for o in outputs] == [0, 1, 2]


def test_map_task_accepts_any_iterable():
    calls = []

    class RangeMap(Workflow):
        @task(each=lambda ctx: range(3))
        def count(self, ctx):
            calls.append(ctx.each_value)

    RangeMap.perform_now()

    assert calls == [0, 1, 2]


def test_map_iterations_read_the_same_immutable_arguments():
    class ForkJoin(Workflow):
        items = argument(list[str])
        prefix = argument(str)

        @task(each=lambda ctx: ctx.arguments.items, output={"item_result": str})
        def parallel_processing(self, ctx):
            return {"item_result": f"{ctx.arguments.prefix}{ctx.each_value}"}

    run = ForkJoin.perform_now(items=["x", "y"], prefix="p-")

    assert [o.item_result for o in run.output["parallel_processing"]] == [
        "p-x",
        "p-y",
    ]


def test_dependent_of_a_map_task_sees_every_iteration_output():
    seen = {}

    class Aggregate(Workflow):
        user_ids = argument(list[int])

        @task(
            each=lambda ctx: ctx.arguments.user_ids,
            output={"user_id": int, "status": str},
        )
        def process_users(self, ctx):
            return {"user_id": ctx.each_value, "status": "ok"}

        @task(depends_on=[process_users])
        def aggregate_results(self, ctx):
            seen["results"] = [o.data for o in ctx.output["process_users"]]

    Aggregate.perform_now(user_ids=[10, 20, 30])

    assert seen["results"] == [
        {"user_id": 10, "status": "ok"},
        {"user_id": 20, "status": "ok"},
        {"user_id": 30, "status": "ok"},
    ]


# --- each_value / each_index outside a map task ------------------------------


def test_each_value_outside_a_map_task_raises_context_error():
    seen = {}

    class PlainEachValue(Workflow):
        @task
        def regular_task(self, ctx):
            try:
                ctx.each_value
            except ContextError as error:
                seen["error"] = error

    PlainEachValue.perform_now()

    assert isinstance(seen["error"], RuntimeError)
    assert "each_value" in str(seen["error"])


def test_each_index_outside_a_map_task_raises_context_error():
    seen = {}

    class PlainEachIndex(Workflow):
        @task
        def regular_task(self, ctx):
            try:
                ctx.each_index
            except ContextError as error:
                seen["error"] = error

    PlainEachIndex.perform_now()

    assert "each_index" in str(seen["error"])


def test_uncaught_context_error_fails_the_run():
    class UncaughtEachValue(Workflow):
        @task
        def regular_task(self, ctx):
            return ctx.each_value

    with pytest.raises(ContextError):
        UncaughtEachValue.perform_now()


def test_each_value_in_a_plain_task_after_a_map_task_raises_context_error():
    seen = {}

    class AfterMap(Workflow):
        @task(each=lambda ctx: [1, 2])
        def mapped(self, ctx):
            ctx.each_value

        @task(depends_on=[mapped])
        def plain(self, ctx):
            try:
                ctx.each_value
            except ContextError as error:
                seen["error"] = error

    AfterMap.perform_now()

    assert isinstance(seen["error"], ContextError)


# --- mapping over outputs and matrices ----------------------------------------


def test_map_task_can_iterate_over_an_earlier_task_output():
    class OverOutput(Workflow):
        @task(output={"ids": list[int]})
        def fetch_user_ids(self, ctx):
            return {"ids": [3, 5, 8]}

        @task(
            depends_on=[fetch_user_ids],
            each=lambda ctx: ctx.output["fetch_user_ids"][0].ids,
            output={"user_id": int},
        )
        def process_users(self, ctx):
            return {"user_id": ctx.each_value}

    run = OverOutput.perform_now()

    assert [o.user_id for o in run.output["process_users"]] == [3, 5, 8]


def _region_by_type(ctx):
    regions = [o.region for o in ctx.output["process_by_region"]]
    return [
        {"region": region, "data_type": data_type}
        for region, data_type in itertools.product(regions, ctx.arguments.data_types)
    ]


class Matrix(Workflow):
    name = "tests.unit.parallel_processing.Matrix"

    regions = argument(list[str])
    data_types = argument(list[str])

    @task(
        each=lambda ctx: ctx.arguments.regions,
        output={"region": str},
        enqueue={"concurrency": 5},
    )
    def process_by_region(self, ctx):
        return {"region": ctx.each_value}

    @task(
        depends_on=[process_by_region],
        each=_region_by_type,
        output={"region": str, "data_type": str, "result": str},
        enqueue={"concurrency": 10},
    )
    def process_matrix(self, ctx):
        item = ctx.each_value
        return {
            "region": item["region"],
            "data_type": item["data_type"],
            "result": f"{item['region']}/{item['data_type']}",
        }

    @task(depends_on=[process_matrix], output={"summary": dict[str, list[str]]})
    def aggregate_matrix_results(self, ctx):
        summary = {}
        for output in ctx.output["process_matrix"]:
            summary.setdefault(output.region, []).append(output.data_type)
        return {"summary": summary}


def test_matrix_runs_every_combination_in_product_order():
    regions = ["us-east-1", "us-west-1", "eu-west-1"]
    data_types = ["user", "order", "product"]

    run = Matrix.perform_now(regions=regions, data_types=data_types)

    results = [o.result for o in run.output["process_matrix"]]
    assert results == [f"{r}/{d}" for r, d in itertools.product(regions, data_types)]
    assert len(results) == 9


def test_matrix_aggregation_groups_results_by_region():
    run = Matrix.perform_now(regions=["a", "b"], data_types=["x", "y"])

    assert run.output["aggregate_matrix_results"][0].summary == {
        "a": ["x", "y"],
        "b": ["x", "y"],
    }


def test_filtered_matrix_skips_excluded_combinations():
    excluded = {("us-west-1", "legacy"), ("eu-west-1", "beta")}

    class FilteredMatrix(Workflow):
        regions = argument(list[str])
        data_types = argument(list[str])

        @task(
            each=lambda ctx: [
                {"region": r, "data_type": d}
                for r, d in itertools.product(
                    ctx.arguments.regions, ctx.arguments.data_types
                )
                if (r, d) not in excluded
            ],
            output={"combo": str},
            enqueue={"concurrency": 10},
        )
        def process_filtered_matrix(self, ctx):
            combo = ctx.each_value
            return {"combo": f"{combo['region']}:{combo['data_type']}"}

    run = FilteredMatrix.perform_now(
        regions=["us-west-1", "eu-west-1"], data_types=["legacy", "beta"]
    )

    combos = [o.combo for o in run.output["process_filtered_matrix"]]
    assert combos == ["us-west-1:beta", "eu-west-1:legacy"]


# --- empty collections --------------------------------------------------------


def test_empty_collection_runs_zero_iterations():
    calls = []

    class EmptyMap(Workflow):
        items = argument(list[int], default=[])

        @task(each=lambda ctx: ctx.arguments.items, output={"value": int})
        def process_items(self, ctx):
            calls.append(ctx.each_value)
            return {"value": ctx.each_value}

    run = EmptyMap.perform_now()

    assert calls == []
    assert run.output["process_items"] == []
    assert run.status == "succeeded"


def test_dependent_of_an_empty_map_task_still_runs_and_sees_no_outputs():
    seen = {}

    class EmptyThenAggregate(Workflow):
        @task(each=lambda ctx: [], output={"value": int})
        def process_items(self, ctx):
            return {"value": 1}

        @task(depends_on=[process_items])
        def aggregate(self, ctx):
            seen["outputs"] = ctx.output["process_items"]

    EmptyThenAggregate.perform_now()

    assert seen == {"outputs": []}


# --- enqueue option forms under perform_now -----------------------------------

ENQUEUE_ON = [
    pytest.param(True, id="true"),
    pytest.param(lambda ctx: True, id="callable-true"),
    pytest.param({"concurrency": 2}, id="dict-concurrency"),
    pytest.param({"condition": True, "concurrency": 10}, id="dict-condition-true"),
    pytest.param(
        {"condition": lambda ctx: True, "queue": "critical", "concurrency": 5},
        id="dict-callable-queue-concurrency",
    ),
    pytest.param({"queue": "critical"}, id="dict-queue-only"),
]

ENQUEUE_OFF = [
    pytest.param(False, id="false"),
    pytest.param(lambda ctx: False, id="callable-false"),
    pytest.param({"condition": False, "concurrency": 2}, id="dict-condition-false"),
    pytest.param({"condition": lambda ctx: False}, id="dict-callable-false"),
]


def _define_enqueued_map(enqueue_option, calls):
    class EnqueuedMap(Workflow):
        items = argument(list[int])

        @task(
            each=lambda ctx: ctx.arguments.items,
            output={"value": int},
            enqueue=enqueue_option,
        )
        def fan_out(self, ctx):
            calls.append((threading.get_ident(), ctx.each_index, ctx.each_value))
            return {"value": ctx.each_value * 10}

        @task(depends_on=[fan_out], output={"total": int})
        def join(self, ctx):
            return {"total": sum(o.value for o in ctx.output["fan_out"])}

    return EnqueuedMap


@pytest.mark.parametrize("enqueue_option", ENQUEUE_ON + ENQUEUE_OFF)
def test_enqueue_form_runs_iterations_in_the_calling_thread(enqueue_option):
    calls = []
    workflow = _define_enqueued_map(enqueue_option, calls)

    run = workflow.perform_now(items=[3, 1, 2])

    assert calls == [
        (threading.get_ident(), 0, 3),
        (threading.get_ident(), 1, 1),
        (threading.get_ident(), 2, 2),
    ]
    assert run.status == "succeeded"


@pytest.mark.parametrize("enqueue_option", ENQUEUE_ON + ENQUEUE_OFF)
def test_enqueue_form_keeps_outputs_in_index_order(enqueue_option):
    workflow = _define_enqueued_map(enqueue_option, [])

    run = workflow.perform_now(items=[3, 1, 2])

    assert [o.value for o in run.output["fan_out"]] == [30, 10, 20]
    assert [o.each_index for o in run.output["fan_out"]] == [0, 1, 2]
    assert run.output["join"][0].total == 60


@pytest.mark.parametrize("enqueue_option", ENQUEUE_ON)
def test_enqueue_on_emits_task_enqueue_with_sub_job_count(enqueue_option):
    workflow = _define_enqueued_map(enqueue_option, [])

    with events.capture("task.enqueue") as captured:
        workflow.perform_now(items=[3, 1, 2, 5])

    assert len(captured) == 1
    payload = captured[0].payload
    assert payload["task_name"] == "fan_out"
    assert payload["sub_job_count"] == 4
    assert payload["job_name"] == workflow.name


@pytest.mark.parametrize("enqueue_option", ENQUEUE_OFF)
def test_enqueue_off_emits_no_task_enqueue(enqueue_option):
    workflow = _define_enqueued_map(enqueue_option, [])

    with events.capture("task.enqueue") as captured:
        workflow.perform_now(items=[3, 1, 2])

    assert captured == []


@pytest.mark.parametrize(("parallel", "expected_events"), [(True, 1), (False, 0)])
def test_enqueue_condition_reads_arguments(parallel, expected_events):
    class DynamicEnqueue(Workflow):
        items = argument(list[int])
        parallel = argument(bool)

        @task(
            each=lambda ctx: ctx.arguments.items,
            output={"value": int},
            enqueue={"condition": lambda ctx: ctx.arguments.parallel},
        )
        def fan_out(self, ctx):
            return {"value": ctx.each_value}

    with events.capture("task.enqueue") as captured:
        run = DynamicEnqueue.perform_now(items=[1, 2], parallel=parallel)

    assert len(captured) == expected_events
    assert [o.value for o in run.output["fan_out"]] == [1, 2]


def test_enqueued_plain_task_runs_once_as_one_sub_job():
    calls = []

    class EnqueuedPlain(Workflow):
        @task(enqueue=True, output={"thread": int})
        def single(self, ctx):
            calls.append(threading.get_ident())
            return {"thread": threading.get_ident()}

    with events.capture("task.enqueue") as captured:
        run = EnqueuedPlain.perform_now()

    assert calls == [threading.get_ident()]
    assert run.output["single"][0].thread == threading.get_ident()
    assert [e.payload["sub_job_count"] for e in captured] == [1]


# --- invalid enqueue options --------------------------------------------------


@pytest.mark.parametrize(
    "enqueue_option",
    [
        pytest.param("yes", id="string"),
        pytest.param([True], id="list"),
        pytest.param({"concurency": 5}, id="misspelt-key"),
        pytest.param({"concurrency": 0}, id="zero-concurrency"),
        pytest.param({"concurrency": -3}, id="negative-concurrency"),
        pytest.param({"concurrency": "5"}, id="string-concurrency"),
        pytest.param({"queue": 5}, id="non-string-queue"),
        pytest.param({"condition": "always"}, id="string-condition"),
    ],
)
def test_invalid_enqueue_option_raises_at_definition(enqueue_option):
    with pytest.raises(InvalidOptionError) as caught:

        class BadEnqueue(Workflow):
            @task(each=lambda ctx: [1], enqueue=enqueue_option)
            def fan_out(self, ctx):
                pass

    assert isinstance(caught.value, ValueError)
    assert "enqueue" in str(caught.value)
