"""Declaring schedules with ``@schedule`` (Ruby guide SCHEDULED_JOBS.md).

Covers the declaration side: cron expressions and phrases, the schedule
options, several schedules per workflow, the default key, definition-time
errors, the normalised ``.cron`` string and ``.next_after``. Running schedules
on a worker or in the simulator is covered elsewhere.
"""

from datetime import datetime

import pytest

from job_workflow import Workflow, argument, schedule, task
from job_workflow.errors import InvalidOptionError


@schedule("0 9 * * *")
class DailyReport(Workflow):
    name = "tests.schedules.DailyReport"

    @task(output={"generated": bool})
    def generate(self, ctx):
        return {"generated": True}


@schedule("0 9 * * *", key="morning_report")
@schedule("0 18 * * *", key="evening_report", args={"time_of_day": "evening"})
class TwiceDailyReport(Workflow):
    name = "tests.schedules.TwiceDailyReport"
    time_of_day = argument(str, default="morning")

    @task
    def generate(self, ctx):
        pass


class Unscheduled(Workflow):
    name = "tests.schedules.Unscheduled"

    @task
    def generate(self, ctx):
        pass


# --- declaring ---------------------------------------------------------------


def test_schedule_is_registered_under_the_workflow_name_by_default():
    assert list(DailyReport.schedules) == ["tests.schedules.DailyReport"]
    assert DailyReport.schedules["tests.schedules.DailyReport"].key == (
        "tests.schedules.DailyReport"
    )


def test_default_key_follows_the_default_workflow_name():
    @schedule("every hour")
    class Hourly(Workflow):
        @task
        def tick(self, ctx):
            pass

    assert list(Hourly.schedules) == [Hourly.name]


def test_schedule_keeps_its_expression_and_cron():
    daily = DailyReport.schedules["tests.schedules.DailyReport"]

    assert daily.expression == "0 9 * * *"
    assert daily.cron == "0 9 * * *"


def test_workflow_without_schedules_has_an_empty_dict():
    assert Unscheduled.schedules == {}
    assert isinstance(Unscheduled.schedules, dict)


def test_schedules_do_not_leak_between_workflows():
    @schedule("*/15 * * * *", key="tests.schedules.leak")
    class Scheduled(Workflow):
        @task
        def tick(self, ctx):
            pass

    class NotScheduled(Workflow):
        @task
        def tick(self, ctx):
            pass

    assert list(Scheduled.schedules) == ["tests.schedules.leak"]
    assert NotScheduled.schedules == {}


def test_scheduled_workflow_still_runs_normally():
    run = DailyReport.perform_now()

    assert run.status == "succeeded"
    assert run.output["generate"][0].generated is True


# --- options -----------------------------------------------------------------


def test_schedule_keeps_every_option():
    @schedule(
        "0 */4 * * *",
        key="data_sync_every_4_hours",
        args={"source": "primary"},
        queue="high_priority",
        priority=10,
        description="Sync data from the primary source every 4 hours",
    )
    class DataSync(Workflow):
        source = argument(str, default="default")

        @task
        def sync(self, ctx):
            pass

    sync = DataSync.schedules["data_sync_every_4_hours"]
    assert sync.key == "data_sync_every_4_hours"
    assert sync.args == {"source": "primary"}
    assert sync.queue == "high_priority"
    assert sync.priority == 10
    assert sync.description == "Sync data from the primary source every 4 hours"


def test_priority_and_description_default_to_none():
    daily = DailyReport.schedules["tests.schedules.DailyReport"]

    assert daily.priority is None
    assert daily.description is None


def test_several_schedules_each_under_its_own_key():
    schedules = TwiceDailyReport.schedules

    assert set(schedules) == {"morning_report", "evening_report"}
    assert schedules["morning_report"].cron == "0 9 * * *"
    assert schedules["evening_report"].cron == "0 18 * * *"
    assert schedules["evening_report"].args == {"time_of_day": "evening"}


# --- errors ------------------------------------------------------------------


def test_duplicate_key_raises_invalid_option_error_naming_the_key():
    with pytest.raises(InvalidOptionError, match="morning_report"):

        @schedule("0 9 * * *", key="morning_report")
        @schedule("0 10 * * *", key="morning_report")
        class Clash(Workflow):
            @task
            def generate(self, ctx):
                pass


def test_two_schedules_without_key_clash_on_the_default_key():
    with pytest.raises(InvalidOptionError, match="DefaultKeyClash"):

        @schedule("0 9 * * *")
        @schedule("0 18 * * *")
        class DefaultKeyClash(Workflow):
            @task
            def generate(self, ctx):
                pass


@pytest.mark.parametrize(
    "expression",
    ["every blue moon", "61 * * * *", "* * *", "0 25 * * *", "every day at 27pm"],
)
def test_unparsable_expression_raises_invalid_option_error_naming_it(expression):
    with pytest.raises(InvalidOptionError) as excinfo:

        @schedule(expression)
        class BadSchedule(Workflow):
            @task
            def generate(self, ctx):
                pass

    assert expression in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


# --- cron and next_after -----------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "cron"),
    [
        ("every 5 minutes", "*/5 * * * *"),
        ("every 2 hours", "0 */2 * * *"),
        ("every 3 days", "0 0 */3 * *"),
        ("every hour", "0 * * * *"),
        ("every day at 9am", "0 9 * * *"),
        ("every day at 5:30pm", "30 17 * * *"),
    ],
)
def test_phrase_is_normalised_to_a_five_field_cron(expression, cron):
    @schedule(expression, key="phrase")
    class Phrased(Workflow):
        @task
        def tick(self, ctx):
            pass

    assert Phrased.schedules["phrase"].expression == expression
    assert Phrased.schedules["phrase"].cron == cron


def test_cron_expression_is_normalised_to_single_spaces():
    @schedule("  0  9 * *   * ", key="spaced")
    class Spaced(Workflow):
        @task
        def tick(self, ctx):
            pass

    assert Spaced.schedules["spaced"].cron == "0 9 * * *"


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 9 * * *", datetime(2024, 3, 10, 8, 0), datetime(2024, 3, 10, 9, 0)),
        ("*/15 * * * *", datetime(2024, 3, 10, 10, 7), datetime(2024, 3, 10, 10, 15)),
        ("0 0 1 * *", datetime(2024, 3, 10, 10, 7), datetime(2024, 4, 1, 0, 0)),
        ("0 */4 * * *", datetime(2024, 3, 10, 5, 0), datetime(2024, 3, 10, 8, 0)),
        (
            "every 5 minutes",
            datetime(2024, 3, 10, 10, 7),
            datetime(2024, 3, 10, 10, 10),
        ),
        ("every 2 hours", datetime(2024, 3, 10, 10, 7), datetime(2024, 3, 10, 12, 0)),
        ("every 3 days", datetime(2024, 3, 10, 10, 7), datetime(2024, 3, 13, 0, 0)),
        ("every hour", datetime(2024, 3, 10, 10, 7), datetime(2024, 3, 10, 11, 0)),
        ("every day at 9am", datetime(2024, 3, 10, 10, 7), datetime(2024, 3, 11, 9, 0)),
        (
            "every day at 5:30pm",
            datetime(2024, 3, 10, 10, 7),
            datetime(2024, 3, 10, 17, 30),
        ),
    ],
)
def test_next_after_gives_the_next_fire_time(expression, after, expected):
    @schedule(expression, key="next")
    class Timed(Workflow):
        @task
        def tick(self, ctx):
            pass

    assert Timed.schedules["next"].next_after(after) == expected


def test_next_after_is_strictly_after_the_given_time():
    daily = DailyReport.schedules["tests.schedules.DailyReport"]

    assert daily.next_after(datetime(2024, 3, 10, 9, 0)) == datetime(2024, 3, 11, 9, 0)


def test_next_after_can_be_chained_to_list_fire_times():
    @schedule("every 2 hours", key="chain")
    class Chained(Workflow):
        @task
        def tick(self, ctx):
            pass

    every_two_hours = Chained.schedules["chain"]
    times = [datetime(2024, 3, 10, 21, 30)]
    for _ in range(3):
        times.append(every_two_hours.next_after(times[-1]))

    assert times[1:] == [
        datetime(2024, 3, 10, 22, 0),
        datetime(2024, 3, 11, 0, 0),
        datetime(2024, 3, 11, 2, 0),
    ]
