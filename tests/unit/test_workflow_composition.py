"""Running one workflow from a task of another (Ruby guide WORKFLOW_COMPOSITION.md).

Covers the synchronous pattern: a task calls ``Child.perform_now(...)`` and uses
the returned ``WorkflowRun``; children run from map tasks, with arguments built
from earlier outputs; failures and retries across the boundary; a child using
dependency wait still finishes before ``perform_now`` returns; parent and child
keep separate job ids.
"""

import pytest

from job_workflow import (
    Workflow,
    argument,
    events,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.errors import ArgumentValidationError, UnknownTaskError


@pytest.fixture(autouse=True)
def _inline_backend():
    with use_backend(MemoryBackend(mode="inline")):
        yield


# --- using the child's output ------------------------------------------------


def test_parent_task_uses_the_child_run_output():
    class DataFetch(Workflow):
        source = argument(str)

        @task(output={"records": list[str], "count": int})
        def fetch_data(self, ctx):
            records = [f"{ctx.arguments.source}-{i}" for i in range(3)]
            return {"records": records, "count": len(records)}

    class DataProcessing(Workflow):
        source = argument(str)

        @task(output={"fetched_count": int, "first_record": str})
        def invoke_fetch(self, ctx):
            child = DataFetch.perform_now(source=ctx.arguments.source)
            fetched = child.output["fetch_data"][0]
            return {"fetched_count": fetched.count, "first_record": fetched.records[0]}

        @task(depends_on=[invoke_fetch], output={"message": str})
        def process_data(self, ctx):
            count = ctx.output["invoke_fetch"][0].fetched_count
            return {"message": f"processing {count} records"}

    run = DataProcessing.perform_now(source="api")

    assert run.output["invoke_fetch"][0].fetched_count == 3
    assert run.output["invoke_fetch"][0].first_record == "api-0"
    assert run.output["process_data"][0].message == "processing 3 records"


def test_parent_combines_outputs_of_several_child_tasks():
    class ReportGeneration(Workflow):
        user_id = argument(int)

        @task(output={"name": str})
        def fetch_user(self, ctx):
            return {"name": f"user-{ctx.arguments.user_id}"}

        @task(depends_on=[fetch_user], output={"activity_count": int})
        def fetch_activity(self, ctx):
            return {"activity_count": ctx.arguments.user_id * 10}

    class Dashboard(Workflow):
        user_id = argument(int)

        @task(output={"name": str, "activity": int})
        def generate_report(self, ctx):
            child = ReportGeneration.perform_now(user_id=ctx.arguments.user_id)
            return {
                "name": child.output["fetch_user"][0].name,
                "activity": child.output["fetch_activity"][0].activity_count,
            }

    run = Dashboard.perform_now(user_id=7)

    report = run.output["generate_report"][0]
    assert (report.name, report.activity) == ("user-7", 70)


def test_child_run_has_finished_when_perform_now_returns():
    class Quick(Workflow):
        @task(output={"value": int})
        def compute(self, ctx):
            return {"value": 1}

    class Caller(Workflow):
        @task(output={"child_status": str})
        def call_child(self, ctx):
            return {"child_status": Quick.perform_now().status}

    run = Caller.perform_now()

    assert run.output["call_child"][0].child_status == "succeeded"


def test_child_outputs_stay_in_the_child_run():
    class Inner(Workflow):
        @task(output={"value": int})
        def inner_step(self, ctx):
            return {"value": 1}

    class Outer(Workflow):
        @task
        def call_inner(self, ctx):
            Inner.perform_now()

    run = Outer.perform_now()

    with pytest.raises(UnknownTaskError):
        run.output["inner_step"]


def test_configured_caller_runs_the_child_synchronously():
    class Background(Workflow):
        @task(output={"done": bool})
        def work(self, ctx):
            return {"done": True}

    class Urgent(Workflow):
        queue = "urgent"

        @task(output={"child_done": bool})
        def delegate(self, ctx):
            child = Background.set(queue="background").perform_now()
            return {"child_done": child.output["work"][0].done}

    run = Urgent.perform_now()

    assert run.output["delegate"][0].child_done is True


# --- children in map tasks, arguments from earlier outputs -------------------


def test_map_task_runs_one_child_per_item():
    processed = []

    class SingleItem(Workflow):
        item_id = argument(int)

        @task(output={"status": str})
        def process(self, ctx):
            processed.append(ctx.arguments.item_id)
            return {"status": "success" if ctx.arguments.item_id % 2 else "skipped"}

    class Batch(Workflow):
        item_ids = argument(list[int])

        @task(
            each=lambda ctx: ctx.arguments.item_ids,
            output={"item_id": int, "status": str},
        )
        def process_items(self, ctx):
            child = SingleItem.perform_now(item_id=ctx.each_value)
            return {
                "item_id": ctx.each_value,
                "status": child.output["process"][0].status,
            }

        @task(depends_on=[process_items], output={"successful": int, "total": int})
        def summarize(self, ctx):
            outputs = ctx.output["process_items"]
            successful = sum(1 for o in outputs if o.status == "success")
            return {"successful": successful, "total": len(outputs)}

    run = Batch.perform_now(item_ids=[1, 2, 3, 4, 5])

    assert processed == [1, 2, 3, 4, 5]
    assert [o.item_id for o in run.output["process_items"]] == [1, 2, 3, 4, 5]
    assert run.output["summarize"][0].successful == 3
    assert run.output["summarize"][0].total == 5


def test_child_arguments_are_built_from_earlier_outputs():
    exports = []

    class UserDataExport(Workflow):
        user_id = argument(int)
        format = argument(str)

        @task(output={"file_path": str})
        def export(self, ctx):
            exports.append((ctx.arguments.user_id, ctx.arguments.format))
            path = f"/exports/{ctx.arguments.user_id}.{ctx.arguments.format}"
            return {"file_path": path}

    class MonthlyReport(Workflow):
        month = argument(str)

        @task(output={"user_ids": list[int]})
        def fetch_users(self, ctx):
            return {"user_ids": [11, 12] if ctx.arguments.month == "2024-05" else []}

        @task(
            depends_on=[fetch_users],
            each=lambda ctx: ctx.output["fetch_users"][0].user_ids,
            output={"exported_file": str},
        )
        def export_user_reports(self, ctx):
            child = UserDataExport.perform_now(user_id=ctx.each_value, format="csv")
            return {"exported_file": child.output["export"][0].file_path}

        @task(depends_on=[export_user_reports], output={"files": list[str]})
        def archive_reports(self, ctx):
            return {
                "files": [o.exported_file for o in ctx.output["export_user_reports"]]
            }

    run = MonthlyReport.perform_now(month="2024-05")

    assert exports == [(11, "csv"), (12, "csv")]
    assert run.output["archive_reports"][0].files == [
        "/exports/11.csv",
        "/exports/12.csv",
    ]


# --- failures and retries across the boundary --------------------------------


def test_child_failure_fails_the_parent_with_the_childs_error():
    after_child = []

    class Risky(Workflow):
        data = argument(str)

        @task
        def risky_operation(self, ctx):
            if ctx.arguments.data == "bad":
                raise ValueError("processing failed for 'bad'")

    class Parent(Workflow):
        data = argument(str)

        @task
        def invoke_child(self, ctx):
            Risky.perform_now(data=ctx.arguments.data)

        @task(depends_on=[invoke_child])
        def carry_on(self, ctx):
            after_child.append("carry_on")

    with (
        events.capture("task.error") as errors,
        pytest.raises(ValueError, match="processing failed for 'bad'"),
    ):
        Parent.perform_now(data="bad")

    assert after_child == []
    failed = [(e.payload["job_name"], e.payload["task_name"]) for e in errors]
    assert (Parent.name, "invoke_child") in failed


def test_parent_can_catch_a_child_failure_and_continue():
    class Risky(Workflow):
        @task
        def risky_operation(self, ctx):
            raise RuntimeError("child broke")

    class Tolerant(Workflow):
        @task(output={"outcome": str})
        def invoke_child(self, ctx):
            try:
                Risky.perform_now()
            except RuntimeError as error:
                return {"outcome": f"fallback after: {error}"}
            return {"outcome": "child succeeded"}

        @task(depends_on=[invoke_child], output={"continued": bool})
        def carry_on(self, ctx):
            return {"continued": True}

    run = Tolerant.perform_now()

    assert run.status == "succeeded"
    assert run.output["invoke_child"][0].outcome == "fallback after: child broke"
    assert run.output["carry_on"][0].continued is True


def test_parent_retry_runs_the_child_again():
    attempts = []

    class Flaky(Workflow):
        @task(output={"attempt": int})
        def operation(self, ctx):
            attempts.append(ctx.job_id)
            if len(attempts) == 1:
                raise ConnectionError("first call fails")
            return {"attempt": len(attempts)}

    class Coordinator(Workflow):
        @task(
            retry={"count": 1, "strategy": "linear", "base_delay": 2},
            output={"child_attempt": int},
        )
        def coordinate(self, ctx):
            child = Flaky.perform_now()
            return {"child_attempt": child.output["operation"][0].attempt}

    clock = ManualClock()
    with use_clock(clock):
        run = Coordinator.perform_now()

    assert run.status == "succeeded"
    assert run.output["coordinate"][0].child_attempt == 2
    assert len(attempts) == 2
    assert attempts[0] != attempts[1]
    assert clock.sleeps == [2]


def test_child_retries_finish_before_the_parent_continues():
    attempts = []

    class RetryableChild(Workflow):
        @task(
            retry={"count": 3, "strategy": "linear", "base_delay": 5},
            output={"attempts": int},
        )
        def operation(self, ctx):
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("not yet")
            return {"attempts": len(attempts)}

    class Coordinator(Workflow):
        @task(output={"child_attempts": int})
        def coordinate(self, ctx):
            child = RetryableChild.perform_now()
            return {"child_attempts": child.output["operation"][0].attempts}

    clock = ManualClock()
    with use_clock(clock):
        run = Coordinator.perform_now()

    assert run.output["coordinate"][0].child_attempts == 3
    assert clock.sleeps == [5, 5]


def test_invalid_child_arguments_fail_the_parent_naming_the_argument():
    class NeedsInt(Workflow):
        item_id = argument(int)

        @task
        def process(self, ctx):
            pass

    class PassesText(Workflow):
        @task
        def call_child(self, ctx):
            NeedsInt.perform_now(item_id="not a number")

    with pytest.raises(ArgumentValidationError, match="item_id") as excinfo:
        PassesText.perform_now()

    assert excinfo.value.argument == "item_id"


# --- dependency wait under perform_now ---------------------------------------


@pytest.mark.parametrize("mode", ["inline", "queued"])
def test_child_with_dependency_wait_finishes_without_rescheduling(mode):
    class WaitingChild(Workflow):
        @task(each=lambda ctx: [1, 2, 3], enqueue=True, output={"value": int})
        def produce(self, ctx):
            return {"value": ctx.each_value * 10}

        @task(
            depends_on=[produce],
            dependency_wait={"poll_timeout": 30, "poll_interval": 5},
            output={"total": int},
        )
        def total(self, ctx):
            return {"total": sum(o.value for o in ctx.output["produce"])}

    class Parent(Workflow):
        @task(output={"child_status": str, "child_total": int})
        def invoke_child(self, ctx):
            child = WaitingChild.perform_now()
            return {
                "child_status": child.status,
                "child_total": child.output["total"][0].total,
            }

        @task(depends_on=[invoke_child], output={"seen_total": int})
        def next_step(self, ctx):
            return {"seen_total": ctx.output["invoke_child"][0].child_total}

    with (
        use_backend(MemoryBackend(mode=mode)),
        use_clock(ManualClock()),
        events.capture("dependent.reschedule") as reschedules,
    ):
        run = Parent.perform_now()

    assert reschedules == []
    assert run.status == "succeeded"
    assert run.output["invoke_child"][0].child_status == "succeeded"
    assert run.output["next_step"][0].seen_total == 60


# --- job ids -----------------------------------------------------------------


def test_parent_and_child_have_independent_job_ids():
    class Child(Workflow):
        @task(output={"job_id": str})
        def report_id(self, ctx):
            return {"job_id": ctx.job_id}

    class Parent(Workflow):
        @task(output={"parent_id": str, "child_run_id": str, "child_ctx_id": str})
        def invoke_child(self, ctx):
            child = Child.perform_now()
            return {
                "parent_id": ctx.job_id,
                "child_run_id": child.job_id,
                "child_ctx_id": child.output["report_id"][0].job_id,
            }

    run = Parent.perform_now()

    ids = run.output["invoke_child"][0]
    assert ids.parent_id == run.job_id
    assert ids.child_run_id == ids.child_ctx_id
    assert ids.child_run_id != run.job_id


def test_each_child_in_a_map_gets_its_own_job_id():
    class Child(Workflow):
        n = argument(int)

        @task
        def noop(self, ctx):
            pass

    class Fanout(Workflow):
        @task(each=lambda ctx: [1, 2, 3], output={"child_id": str})
        def spawn(self, ctx):
            return {"child_id": Child.perform_now(n=ctx.each_value).job_id}

    run = Fanout.perform_now()

    child_ids = [o.child_id for o in run.output["spawn"]]
    assert len(set(child_ids)) == 3
    assert run.job_id not in child_ids


def test_child_events_carry_the_childs_job_id_and_name():
    child_ids = []

    class Child(Workflow):
        @task
        def child_step(self, ctx):
            pass

    class Parent(Workflow):
        @task
        def parent_step(self, ctx):
            child_ids.append(Child.perform_now().job_id)

    with events.capture("task.start") as started:
        run = Parent.perform_now()

    by_task = {e.payload["task_name"]: e.payload for e in started}
    assert by_task["parent_step"]["job_id"] == run.job_id
    assert by_task["parent_step"]["job_name"] == Parent.name
    assert by_task["child_step"]["job_id"] == child_ids[0]
    assert by_task["child_step"]["job_name"] == Child.name
