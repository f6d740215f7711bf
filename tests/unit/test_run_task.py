"""``job_workflow.testing.run_task``: one task against outputs you choose.

The task runs on the real runner (hooks, retries, throttle, output checks)
on a throwaway inline backend and a ManualClock; its condition does not
apply and nothing else of the workflow runs.
"""

from __future__ import annotations

import datetime as dt

import pytest

from job_workflow import (
    Namespace,
    TaskOutput,
    Workflow,
    after,
    argument,
    around,
    before,
    events,
    on_error,
    task,
)
from job_workflow._runtime import current_backend, current_clock
from job_workflow.clock import ManualClock
from job_workflow.errors import (
    ArgumentValidationError,
    OutputError,
    UnknownTaskError,
)
from job_workflow.testing import run_task

calls: list[str] = []
flaky = {"failures": 0}


class Pipeline(Workflow):
    name = "tests.run_task.Pipeline"

    items = argument(list[int])
    factor = argument(int, default=2)

    @task(output={"doubled": int}, each=lambda ctx: ctx.arguments.items)
    def double(self, ctx):
        calls.append(f"double {ctx.each_index}={ctx.each_value}")
        return {"doubled": ctx.each_value * ctx.arguments.factor}

    @task(depends_on=[double], output={"total": int, "count": int})
    def total(self, ctx):
        values = [o.doubled for o in ctx.output["double"]]
        return {"total": sum(values), "count": len(values)}

    @task(depends_on=[total], condition=lambda ctx: False, output={"note": str})
    def never(self, ctx):
        return {"note": f"total was {ctx.output['total'][0].total}"}

    @task(
        depends_on=[total],
        each=lambda ctx: range(ctx.output["total"][0].count),
        output={"line": str},
    )
    def lines(self, ctx):
        return {"line": f"line {ctx.each_index}: {ctx.each_value}"}

    @task
    def side_effect(self, ctx):
        calls.append("side effect")


class Hooked(Workflow):
    name = "tests.run_task.Hooked"

    @task(each=lambda ctx: ["a", "b"], output={"upper": str})
    def shout(self, ctx):
        calls.append(f"body {ctx.each_value}")
        if ctx.each_value == "boom":
            raise ValueError("boom")
        return {"upper": ctx.each_value.upper()}

    @before("shout")
    def log_before(self, ctx):
        calls.append(f"before {ctx.each_index}")

    @around("shout")
    def wrap(self, ctx, call):
        calls.append("around in")
        call()
        calls.append("around out")

    @after("shout")
    def log_after(self, ctx):
        calls.append(f"after {ctx.each_index}")

    @on_error("shout")
    def report(self, ctx, error, task):
        calls.append(f"on_error {task.name}: {error}")


class Flaky(Workflow):
    name = "tests.run_task.Flaky"

    @task(retry={"count": 3, "base_delay": 5}, output={"attempts": int})
    def call_api(self, ctx):
        if flaky["failures"]:
            flaky["failures"] -= 1
            raise ConnectionError("service unavailable")
        return {"attempts": ctx.retry_count + 1}

    @task(throttle=1, output={"ok": bool})
    def limited(self, ctx):
        return {"ok": True}

    @task(output={"dry": bool, "sent": str})
    def notify(self, ctx):
        sent = ctx.skip_in_dry_run(lambda: "sent", fallback="skipped")
        return {"dry": ctx.dry_run, "sent": sent}

    @task(output={"when": dt.datetime})
    def stamp(self, ctx):
        return {"when": dt.datetime(2024, 5, 1, 12, 30)}

    @task(depends_on=[stamp], output={"day": dt.date})
    def day(self, ctx):
        return {"day": ctx.output["stamp"][0].when.date()}

    @task(output={"bad": int})
    def bad_output(self, ctx):
        return {"bad": "not a number"}

    class payment(Namespace):
        @task(output={"valid": bool})
        def validate(self, ctx):
            return {"valid": True}


class Child(Workflow):
    name = "tests.run_task.Child"

    @task(output={"value": int})
    def produce(self, ctx):
        return {"value": 41}


class Parent(Workflow):
    name = "tests.run_task.Parent"

    @task(output={"value": int, "same_clock": bool})
    def compose(self, ctx):
        child = Child.perform_now()
        clock_inside = current_clock()
        return {
            "value": child.output["produce"][0].value + 1,
            "same_clock": isinstance(clock_inside, ManualClock),
        }


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    flaky["failures"] = 0


# --- upstream outputs ---------------------------------------------------------


def test_a_task_reads_the_outputs_it_is_given():
    output = run_task(
        Pipeline,
        "total",
        arguments={"items": []},
        outputs={"double": [{"doubled": 2}, {"doubled": 4}, {"doubled": 6}]},
    )

    assert output == TaskOutput("total", 0, {"total": 12, "count": 3})
    assert output.total == 12
    assert calls == []  # the upstream task itself did not run


def test_a_dependency_without_given_outputs_reads_as_empty():
    output = run_task(Pipeline, "total", arguments={"items": [1, 2]})
    assert (output.total, output.count) == (0, 0)


def test_a_missing_declared_field_is_none_and_an_undeclared_one_is_an_error():
    with pytest.raises(ValueError, match=r"field\(s\) 'doubel'.*declared: doubled"):
        run_task(
            Pipeline,
            "total",
            arguments={"items": []},
            outputs={"double": [{"doubel": 1}]},
        )
    with pytest.raises(ValueError, match=r"outputs\['double'\]\[0\] field 'doubled'"):
        run_task(
            Pipeline,
            "total",
            arguments={"items": []},
            outputs={"double": [{"doubled": "x"}]},
        )
    with pytest.raises(TypeError, match=r"outputs\['double'\]\[0\] must be a dict"):
        run_task(Pipeline, "total", arguments={"items": []}, outputs={"double": [3]})


def test_outputs_of_an_unknown_task_are_an_error():
    with pytest.raises(UnknownTaskError, match="did you mean 'double'"):
        run_task(Pipeline, "total", arguments={"items": []}, outputs={"doubel": []})


def test_one_dict_stands_for_a_plain_task_and_outputs_chain():
    doubled = run_task(Pipeline, "double", arguments={"items": [1, 2, 3]})
    total = run_task(
        Pipeline, "total", arguments={"items": [1, 2, 3]}, outputs={"double": doubled}
    )
    lines = run_task(
        Pipeline, "lines", arguments={"items": []}, outputs={"total": total}
    )

    assert total.total == 12
    assert [line.line for line in lines] == ["line 0: 0", "line 1: 1", "line 2: 2"]
    single = run_task(
        Pipeline, "lines", arguments={"items": []}, outputs={"total": {"count": 1}}
    )
    assert [line.line for line in single] == ["line 0: 0"]


def test_outputs_travel_as_a_dependent_reads_them():
    stamp = run_task(Flaky, "stamp")
    day = run_task(Flaky, "day", outputs={"stamp": stamp})

    assert stamp.when == dt.datetime(2024, 5, 1, 12, 30)
    assert day.day == dt.date(2024, 5, 1)


# --- map tasks ------------------------------------------------------------------


def test_a_map_task_runs_every_iteration_of_each_and_returns_a_list():
    outputs = run_task(Pipeline, "double", arguments={"items": [1, 2, 3], "factor": 10})

    assert outputs == [
        TaskOutput("double", 0, {"doubled": 10}),
        TaskOutput("double", 1, {"doubled": 20}),
        TaskOutput("double", 2, {"doubled": 30}),
    ]
    assert calls == ["double 0=1", "double 1=2", "double 2=3"]


def test_each_index_runs_one_iteration_of_each():
    outputs = run_task(Pipeline, "double", arguments={"items": [1, 2, 3]}, each_index=2)

    assert outputs == [TaskOutput("double", 2, {"doubled": 6})]
    assert calls == ["double 2=3"]


def test_each_value_runs_one_iteration_on_that_value():
    only_value = run_task(Pipeline, "double", arguments={"items": []}, each_value=21)
    both = run_task(
        Pipeline, "double", arguments={"items": []}, each_value=5, each_index=7
    )

    assert only_value == [TaskOutput("double", 0, {"doubled": 42})]
    assert both == [TaskOutput("double", 7, {"doubled": 10})]
    assert calls == ["double 0=21", "double 7=5"]


def test_iteration_choices_are_checked():
    with pytest.raises(
        ValueError, match="each_index=3 but each= of task 'double' gave 2"
    ):
        run_task(Pipeline, "double", arguments={"items": [1, 2]}, each_index=3)
    with pytest.raises(ValueError, match="each_index must be an int >= 0"):
        run_task(Pipeline, "double", arguments={"items": [1]}, each_index=-1)
    with pytest.raises(ValueError, match="'total' is not a map task"):
        run_task(Pipeline, "total", arguments={"items": []}, each_value=1)


# --- hooks, condition, retries ----------------------------------------------------


def test_hooks_run_around_every_iteration():
    outputs = run_task(Hooked, "shout")

    assert [o.upper for o in outputs] == ["A", "B"]
    assert calls == [
        "before 0",
        "around in",
        "body a",
        "around out",
        "after 0",
        "before 1",
        "around in",
        "body b",
        "around out",
        "after 1",
    ]


def test_on_error_hooks_see_the_failure_and_it_is_raised():
    with pytest.raises(ValueError, match="boom"):
        run_task(Hooked, "shout", each_value="boom")

    assert calls == [
        "before 0",
        "around in",
        "body boom",
        "on_error shout: boom",
    ]


def test_the_condition_is_not_evaluated():
    output = run_task(
        Pipeline, "never", arguments={"items": []}, outputs={"total": {"total": 9}}
    )
    assert output.note == "total was 9"


def test_retries_wait_on_the_manual_clock():
    flaky["failures"] = 2
    clock = ManualClock()
    with events.capture("task.retry") as retries:
        output = run_task(Flaky, "call_api", clock=clock)

    assert output.attempts == 3
    assert clock.sleeps == [5.0, 10.0]
    assert [e.payload["attempt"] for e in retries] == [1, 2]


def test_a_task_failing_after_its_retries_raises_its_error():
    flaky["failures"] = 10
    clock = ManualClock()
    with pytest.raises(ConnectionError, match="service unavailable"):
        run_task(Flaky, "call_api", clock=clock)
    assert clock.sleeps == [5.0, 10.0, 20.0]


def test_throttle_output_errors_and_dry_run_go_through_the_runner():
    with events.capture("throttle.*") as throttle:
        assert run_task(Flaky, "limited").ok is True
    assert [e.name for e in throttle] == [
        "throttle.acquire.start",
        "throttle.acquire",
        "throttle.acquire.complete",
        "throttle.release",
    ]
    with pytest.raises(OutputError, match="bad_output"):
        run_task(Flaky, "bad_output")
    assert run_task(Flaky, "notify").data == {"dry": False, "sent": "sent"}
    assert run_task(Flaky, "notify", dry_run=True).data == {
        "dry": True,
        "sent": "skipped",
    }


# --- names, arguments, isolation ----------------------------------------------------


def test_an_unknown_task_name_is_an_error_with_a_suggestion():
    with pytest.raises(
        UnknownTaskError, match=r"unknown task 'totl'.*did you mean 'total'"
    ):
        run_task(Pipeline, "totl", arguments={"items": []})


def test_namespaced_tasks_use_their_full_name():
    assert run_task(Flaky, "payment:validate").valid is True


def test_arguments_are_validated():
    with pytest.raises(ArgumentValidationError, match="items"):
        run_task(Pipeline, "double")


def test_a_task_without_output_gives_empty_data():
    output = run_task(Pipeline, "side_effect", arguments={"items": []})
    assert output == TaskOutput("side_effect", 0, {})
    assert calls == ["side effect"]


def test_the_task_runs_on_a_throwaway_backend_and_clock():
    backend_before, clock_before = current_backend(), current_clock()

    output = run_task(Parent, "compose")

    assert output.data == {"value": 42, "same_clock": True}
    assert current_backend() is backend_before
    assert current_clock() is clock_before
