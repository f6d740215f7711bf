"""``job_workflow.dry_run(Workflow, **arguments)`` and its ``DryRunReport`` (SPEC §8).

The report says, per task in run order: ran / skipped (why) / failed
(error) / not run, iterations, the sub-jobs an enqueued task would create,
the side effects ``skip_in_dry_run`` held back, and the outputs. A task
error is recorded, not raised; argument errors still raise.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from job_workflow import (
    ArgumentValidationError,
    DryRunReport,
    Namespace,
    UnknownTaskError,
    Workflow,
    argument,
    dry_run,
    events,
    task,
    use_backend,
)
from job_workflow.backends.memory import MemoryBackend

charged: list[int] = []


class Checkout(Workflow):
    name = "tests.dry_run_report.Checkout"
    queue = "shop"

    items = argument(list[int])
    notify = argument(bool, default=True)

    @task(output={"count": int})
    def fetch(self, ctx):
        return {"count": len(ctx.arguments.items)}

    @task(
        depends_on=[fetch],
        each=lambda ctx: ctx.arguments.items,
        enqueue={"queue": "payments", "concurrency": 3},
        output={"charge_id": str},
    )
    def charge(self, ctx):
        def really_charge():
            charged.append(ctx.each_value)
            return f"ch_{ctx.each_value}"

        charge_id = ctx.skip_in_dry_run(
            really_charge, name="gateway", fallback="ch_dry"
        )
        ctx.skip_in_dry_run(lambda: charged.append(-1), name="audit")
        return {"charge_id": charge_id}

    @task(depends_on=[charge], condition=lambda ctx: ctx.arguments.notify)
    def email(self, ctx):
        ctx.skip_in_dry_run(lambda: charged.append(0))

    @task(depends_on=[charge], output={"total": Decimal})
    def total(self, ctx):
        return {"total": Decimal(len(ctx.output["charge"])) / 2}


@pytest.fixture(autouse=True)
def _reset():
    charged.clear()


def test_dry_run_returns_a_report_in_run_order():
    report = dry_run(Checkout, items=[5, 6, 7])

    assert isinstance(report, DryRunReport)
    assert report.workflow is Checkout
    assert report.workflow_name == "tests.dry_run_report.Checkout"
    assert report.status == "succeeded"
    assert report.succeeded
    assert report.error is None
    assert [t.name for t in report.tasks] == ["fetch", "charge", "email", "total"]
    assert [t.status for t in report.tasks] == ["ran", "ran", "ran", "ran"]


def test_no_side_effect_happens():
    dry_run(Checkout, items=[5, 6])

    assert charged == []


def test_arguments_are_reported_with_defaults():
    report = dry_run(Checkout, items=[1])

    assert report.arguments == {"items": [1], "notify": True}


def test_iterations_count_each_map_value():
    report = dry_run(Checkout, items=[5, 6, 7])

    assert report.task("fetch").iterations == 1
    assert report.task("charge").iterations == 3
    assert report.task("charge").is_map
    assert not report.task("fetch").is_map


def test_enqueued_task_reports_its_sub_jobs():
    report = dry_run(Checkout, items=[5, 6, 7])

    sub_jobs = report.task("charge").sub_jobs
    assert sub_jobs is not None
    assert (sub_jobs.count, sub_jobs.queue, sub_jobs.concurrency) == (3, "payments", 3)
    assert report.task("fetch").sub_jobs is None


def test_sub_job_queue_defaults_to_the_workflow_queue():
    class Fan(Workflow):
        name = "tests.dry_run_report.Fan"
        queue = "bulk"

        @task(each=lambda ctx: range(4), enqueue=True)
        def step(self, ctx):
            pass

    sub_jobs = dry_run(Fan).task("step").sub_jobs

    assert sub_jobs is not None
    assert (sub_jobs.count, sub_jobs.queue, sub_jobs.concurrency) == (4, "bulk", None)


def test_enqueue_condition_false_means_no_sub_jobs():
    class Maybe(Workflow):
        name = "tests.dry_run_report.Maybe"

        big = argument(bool)

        @task(each=lambda ctx: [1, 2], enqueue=lambda ctx: ctx.arguments.big)
        def step(self, ctx):
            pass

    assert dry_run(Maybe, big=False).task("step").sub_jobs is None
    assert dry_run(Maybe, big=True).task("step").sub_jobs.count == 2


def test_skipped_side_effects_list_name_index_and_iteration():
    report = dry_run(Checkout, items=[5, 6])

    skips = [
        (s.name, s.index, s.each_index)
        for s in report.task("charge").skipped_side_effects
    ]
    assert skips == [
        ("gateway", 0, 0),
        ("audit", 1, 0),
        ("gateway", 0, 1),
        ("audit", 1, 1),
    ]
    [unnamed] = report.task("email").skipped_side_effects
    assert (unnamed.name, unnamed.index, unnamed.each_index) == (None, 0, None)


def test_fallbacks_flow_into_outputs():
    report = dry_run(Checkout, items=[5, 6])

    assert report.task("charge").outputs == ({"charge_id": "ch_dry"},) * 2
    assert report.task("fetch").outputs == ({"count": 2},)
    assert report.task("total").outputs == ({"total": Decimal(1)},)
    assert report.task("email").outputs == ()


def test_condition_not_met_is_skipped_with_its_reason():
    report = dry_run(Checkout, items=[1], notify=False)

    email = report.task("email")
    assert email.status == "skipped"
    assert email.reason == "condition_not_met"
    assert email.iterations == 0
    assert report.task("total").status == "ran"  # dependents still run


def test_task_level_dry_run_false_is_overridden():
    hits = []

    class Live(Workflow):
        name = "tests.dry_run_report.Live"
        dry_run = False

        @task(dry_run=False, output={"dry": bool})
        def step(self, ctx):
            ctx.skip_in_dry_run(lambda: hits.append(1), name="write")
            return {"dry": ctx.dry_run}

    report = dry_run(Live)

    assert hits == []
    assert report.task("step").outputs == ({"dry": True},)
    assert [s.name for s in report.task("step").skipped_side_effects] == ["write"]


# --- failures ---------------------------------------------------------------


class Fragile(Workflow):
    name = "tests.dry_run_report.Fragile"

    values = argument(list[int])

    @task(output={"ok": bool})
    def first(self, ctx):
        return {"ok": True}

    @task(depends_on=[first], each=lambda ctx: ctx.arguments.values, output={"v": int})
    def check(self, ctx):
        if ctx.each_value < 0:
            raise ValueError(f"negative value {ctx.each_value}")
        return {"v": ctx.each_value}

    @task(depends_on=[check])
    def last(self, ctx):
        pass


def test_a_task_error_is_recorded_not_raised():
    report = dry_run(Fragile, values=[1, 2, -3, 4])

    assert report.status == "failed"
    assert not report.succeeded
    assert isinstance(report.error, ValueError)
    check = report.task("check")
    assert check.status == "failed"
    assert check.error_class == "ValueError"
    assert check.error_message == "negative value -3"
    assert check.error == "ValueError: negative value -3"
    assert check.iterations == 2
    assert check.outputs == ({"v": 1}, {"v": 2})
    assert report.task("first").status == "ran"


def test_tasks_after_a_failure_are_not_run():
    report = dry_run(Fragile, values=[-1])

    last = report.task("last")
    assert last.status == "not_run"
    assert last.reason == "an earlier task failed"
    assert last.error is None


def test_an_error_outside_the_body_fails_that_task():
    class BadEach(Workflow):
        name = "tests.dry_run_report.BadEach"

        @task
        def ok(self, ctx):
            pass

        @task(depends_on=[ok], each=lambda ctx: 1 / 0)
        def broken(self, ctx):
            pass

    report = dry_run(BadEach)

    assert report.task("ok").status == "ran"
    broken = report.task("broken")
    assert broken.status == "failed"
    assert broken.error_class == "ZeroDivisionError"


def test_retries_are_counted():
    attempts = []

    class Flaky(Workflow):
        name = "tests.dry_run_report.Flaky"

        @task(retry={"count": 3, "base_delay": 3600})
        def pull(self, ctx):
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError("reset")

    report = dry_run(Flaky)  # an hour of backoff costs no real time

    assert report.task("pull").status == "ran"
    assert report.task("pull").retries == 2


def test_argument_errors_still_raise():
    with pytest.raises(ArgumentValidationError, match="items"):
        dry_run(Checkout)
    with pytest.raises(ArgumentValidationError, match="colour"):
        dry_run(Checkout, items=[1], colour="red")


def test_only_workflow_classes_are_accepted():
    with pytest.raises(TypeError, match="Workflow subclass"):
        dry_run(Workflow)
    with pytest.raises(TypeError, match="Workflow subclass"):
        dry_run(Checkout())  # type: ignore[arg-type]


def test_an_argument_may_be_called_workflow():
    class Named(Workflow):
        name = "tests.dry_run_report.Named"

        workflow = argument(str)

        @task
        def step(self, ctx):
            pass

    assert dry_run(Named, workflow="x").arguments == {"workflow": "x"}


def test_unknown_task_name_raises():
    report = dry_run(Checkout, items=[1])

    with pytest.raises(UnknownTaskError):
        report.task("nope")


# --- isolation --------------------------------------------------------------


def test_process_backend_is_untouched():
    backend = MemoryBackend("inline")
    with use_backend(backend):
        dry_run(Checkout, items=[1])

    assert backend.jobs() == []


def test_other_runs_do_not_leak_into_the_report():
    class Other(Workflow):
        name = "tests.dry_run_report.Other"

        @task
        def noisy(self, ctx):
            ctx.skip_in_dry_run(lambda: None, name="other")

    class Composite(Workflow):
        name = "tests.dry_run_report.Composite"

        @task
        def outer(self, ctx):
            Other.set(backend=MemoryBackend()).perform_now()

    report = dry_run(Composite)

    assert [t.name for t in report.tasks] == ["outer"]
    assert report.task("outer").skipped_side_effects == ()


def test_events_from_another_thread_are_filtered_out():
    started, release = threading.Event(), threading.Event()

    class Slow(Workflow):
        name = "tests.dry_run_report.Slow"

        @task
        def wait(self, ctx):
            started.set()
            release.wait(5)
            ctx.skip_in_dry_run(lambda: None, name="elsewhere")

    thread = threading.Thread(
        target=lambda: Slow.set(backend=MemoryBackend()).perform_now()
    )
    with events.capture("dry_run.skip"):
        thread.start()
        started.wait(5)
        report = dry_run(Checkout, items=[1])
        release.set()
        thread.join(5)

    names = [s.name for t in report.tasks for s in t.skipped_side_effects]
    assert "elsewhere" not in names


def test_namespaced_tasks_keep_their_full_names():
    class Shop(Workflow):
        name = "tests.dry_run_report.Shop"

        class payment(Namespace):
            @task
            def validate(self, ctx):
                pass

            @task(depends_on=["validate"])
            def charge(self, ctx):
                pass

    report = dry_run(Shop)

    assert [t.name for t in report.tasks] == ["payment:validate", "payment:charge"]


# --- to_dict and the table --------------------------------------------------


def test_to_dict_is_plain_data():
    report = dry_run(Checkout, items=[5], notify=False)
    data = report.to_dict()

    assert data["workflow"] == "tests.dry_run_report.Checkout"
    assert data["status"] == "succeeded"
    assert data["error"] is None
    assert data["arguments"] == {"items": [5], "notify": False}
    charge = data["tasks"][1]
    assert charge["name"] == "charge"
    assert charge["sub_jobs"] == {"count": 1, "queue": "payments", "concurrency": 3}
    assert charge["skipped_side_effects"][0] == {
        "name": "gateway",
        "index": 0,
        "each_index": 0,
    }
    assert data["tasks"][2]["status"] == "skipped"
    assert data["tasks"][2]["reason"] == "condition_not_met"


def test_to_dict_of_a_failed_run_names_the_error():
    data = dry_run(Fragile, values=[-1]).to_dict()

    assert data["error"] == {
        "error_class": "ValueError",
        "error_message": "negative value -1",
    }
    assert data["tasks"][1]["error_class"] == "ValueError"


def test_str_is_a_table():
    text = str(dry_run(Checkout, items=[5, 6, 7], notify=False))
    lines = text.splitlines()

    assert lines[0] == "dry run of tests.dry_run_report.Checkout: succeeded"
    assert lines[1] == "arguments: items=[5, 6, 7], notify=False"
    header = lines[3].split()
    assert header[:3] == ["task", "status", "iterations"]
    assert "sub-jobs" in lines[3]
    assert "side effects skipped" in lines[3]
    assert set(lines[4]) <= {"-", " "}
    rows = {line.split()[0]: line for line in lines[5:9]}
    assert rows["charge"].split()[:3] == ["charge", "ran", "3"]
    assert "3 on payments, max 3" in rows["charge"]
    assert "gateway x3, audit x3" in rows["charge"]
    assert rows["email"].split()[1:3] == ["skipped", "0"]
    assert rows["email"].endswith("condition_not_met")
    assert "outputs:" in lines
    assert "  charge: [{'charge_id': 'ch_dry'}, {'charge_id': 'ch_dry'}, " in text


def test_table_columns_line_up():
    lines = str(dry_run(Checkout, items=[5])).splitlines()
    header, rule, *rows = lines[3:8]

    starts = [i for i, c in enumerate(rule) if c == "-" and rule[i - 1 : i] != "-"]
    assert [header[i - 1 : i] for i in starts[1:]] == [" "] * (len(starts) - 1)
    for row in rows:
        for start in (s for s in starts if s < len(row)):
            assert row[start] != " "  # every cell starts at its column
            assert row[start - 1 : start] in ("", " ")


def test_table_of_a_failed_run():
    text = str(dry_run(Fragile, values=[1, -2]))

    assert text.splitlines()[0] == (
        "dry run of tests.dry_run_report.Fragile: failed"
        " (ValueError: negative value -2)"
    )
    assert "ValueError: negative value -2" in text.splitlines()[6]
    last_row = text.splitlines()[7]
    assert last_row.split()[:3] == ["last", "not", "run"]
    assert last_row.endswith("an earlier task failed")
