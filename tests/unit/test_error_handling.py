"""Task-level retry and timeouts (Ruby guide ERROR_HANDLING.md).

Covers ``retry=`` in its integer and dict forms, linear and exponential
delays and jitter (all measured on a ``ManualClock``), the ``task.retry``
event, what ``perform_now`` raises once retries run out, how retries interact
with ``on_error`` hooks, other hooks and map tasks, ``timeout=`` and the
validation of retry options. Workflow-level retry (ActiveJob's ``retry_on``)
has no counterpart here.
"""

import pytest

from job_workflow import (
    Workflow,
    after,
    argument,
    around,
    before,
    events,
    on_error,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.errors import InvalidOptionError, TaskTimeoutError


class FlakyServiceError(Exception):
    """Raised on purpose by a task under test."""


@pytest.fixture(autouse=True)
def clock():
    """Give every test its own inline backend and a virtual clock."""
    manual = ManualClock()
    with use_backend(MemoryBackend(mode="inline")), use_clock(manual):
        yield manual


def _failing_attempts(attempts, failures):
    """Record an attempt and raise while fewer than ``failures`` have failed."""
    attempts.append(len(attempts) + 1)
    if len(attempts) <= failures:
        raise FlakyServiceError(f"attempt {len(attempts)} failed")


def _task_name(value):
    """The name carried by an error attribute that holds a task or its name."""
    return value if isinstance(value, str) else value.name


# Retry counts


def test_integer_retry_allows_that_many_retries_after_the_first_failure():
    attempts = []

    class AlwaysFails(Workflow):
        @task(retry=3)
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=99)

    with pytest.raises(FlakyServiceError):
        AlwaysFails.perform_now()

    assert attempts == [1, 2, 3, 4]


def test_task_that_recovers_within_its_retries_succeeds_with_the_last_output():
    attempts = []

    class RecoversOnThird(Workflow):
        @task(retry=3, output={"attempt": int})
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=2)
            return {"attempt": len(attempts)}

    run = RecoversOnThird.perform_now()

    assert run.status == "succeeded"
    assert attempts == [1, 2, 3]
    assert run.output["fetch_data"][0].attempt == 3


@pytest.mark.parametrize("retry", [0, None])
def test_task_without_retries_runs_once(retry):
    attempts = []
    options = {} if retry is None else {"retry": retry}

    class NoRetry(Workflow):
        @task(**options)
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=99)

    with pytest.raises(FlakyServiceError):
        NoRetry.perform_now()

    assert attempts == [1]


def test_dict_retry_count_sets_the_number_of_retries():
    attempts = []

    class DictCount(Workflow):
        @task(retry={"count": 2, "strategy": "linear", "base_delay": 1})
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=99)

    with pytest.raises(FlakyServiceError):
        DictCount.perform_now()

    assert attempts == [1, 2, 3]


# Delays


def test_linear_retry_waits_base_delay_before_every_retry(clock):
    class LinearRetry(Workflow):
        @task(retry={"count": 5, "strategy": "linear", "base_delay": 10})
        def linear_retry(self, ctx):
            raise FlakyServiceError("down")

    with pytest.raises(FlakyServiceError):
        LinearRetry.perform_now()

    assert clock.sleeps == [10, 10, 10, 10, 10]


def test_exponential_retry_doubles_the_delay_before_each_retry(clock):
    class ExponentialRetry(Workflow):
        @task(retry={"count": 5, "strategy": "exponential", "base_delay": 2})
        def exponential_retry(self, ctx):
            raise FlakyServiceError("down")

    with pytest.raises(FlakyServiceError):
        ExponentialRetry.perform_now()

    assert clock.sleeps == [2, 4, 8, 16, 32]


def test_dict_retry_defaults_to_three_exponential_retries_from_one_second(clock):
    attempts = []

    class DictDefaults(Workflow):
        @task(retry={})
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=99)

    with pytest.raises(FlakyServiceError):
        DictDefaults.perform_now()

    assert attempts == [1, 2, 3, 4]
    assert clock.sleeps == [1, 2, 4]


def test_dict_retry_fills_in_defaults_for_missing_keys(clock):
    class LinearDefaults(Workflow):
        @task(retry={"count": 2, "strategy": "linear"})
        def fetch_data(self, ctx):
            raise FlakyServiceError("down")

    with pytest.raises(FlakyServiceError):
        LinearDefaults.perform_now()

    assert clock.sleeps == [1, 1]


def test_integer_retry_uses_the_default_exponential_delays(clock):
    class IntegerDelays(Workflow):
        @task(retry=3)
        def fetch_data(self, ctx):
            raise FlakyServiceError("down")

    with pytest.raises(FlakyServiceError):
        IntegerDelays.perform_now()

    assert clock.sleeps == [1, 2, 4]


def test_no_delay_is_waited_once_a_retry_succeeds(clock):
    attempts = []

    class RecoversOnSecond(Workflow):
        @task(retry={"count": 4, "strategy": "linear", "base_delay": 3})
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=1)

    RecoversOnSecond.perform_now()

    assert clock.sleeps == [3]


class JitteredRetry(Workflow):
    name = "tests.error_handling.JitteredRetry"

    @task(
        retry={
            "count": 5,
            "strategy": "exponential",
            "base_delay": 2,
            "jitter": True,
        }
    )
    def advanced_retry(self, ctx):
        raise FlakyServiceError("down")


def _jittered_sleeps(seed):
    """The retry delays of ``JitteredRetry`` on a ManualClock with ``seed``."""
    seeded = ManualClock(seed=seed)
    with use_clock(seeded), pytest.raises(FlakyServiceError):
        JitteredRetry.perform_now()
    return seeded.sleeps


def test_jitter_keeps_each_delay_within_half_to_one_and_a_half_times_nominal():
    sleeps = _jittered_sleeps(seed=7)
    nominal = [2, 4, 8, 16, 32]

    assert len(sleeps) == len(nominal)
    for delay, expected in zip(sleeps, nominal, strict=True):
        assert 0.5 * expected <= delay <= 1.5 * expected
    assert sleeps != nominal


def test_jitter_is_reproducible_for_one_seed_and_differs_for_another():
    first = _jittered_sleeps(seed=7)
    again = _jittered_sleeps(seed=7)
    other = _jittered_sleeps(seed=8)

    assert first == again
    assert first != other


# The task.retry event


def test_each_retry_emits_a_task_retry_event(clock):
    class RetryEvents(Workflow):
        @task(retry={"count": 3, "strategy": "exponential", "base_delay": 2})
        def fetch_data(self, ctx):
            raise FlakyServiceError("service unavailable")

    with events.capture("task.retry") as captured, pytest.raises(FlakyServiceError):
        RetryEvents.perform_now()

    payloads = [event.payload for event in captured]
    assert [p["attempt"] for p in payloads] == [1, 2, 3]
    assert [p["max_attempts"] for p in payloads] == [4, 4, 4]
    assert [p["delay_seconds"] for p in payloads] == [2, 4, 8]
    assert [p["delay_seconds"] for p in payloads] == clock.sleeps
    for payload in payloads:
        assert payload["task_name"] == "fetch_data"
        assert payload["each_index"] is None
        assert payload["job_name"] == RetryEvents.name
        assert payload["error_class"].endswith("FlakyServiceError")
        assert payload["error_message"] == "service unavailable"


def test_no_task_retry_event_when_the_first_attempt_succeeds():
    class FirstTime(Workflow):
        @task(retry=3)
        def fetch_data(self, ctx):
            pass

    with events.capture("task.retry") as captured:
        FirstTime.perform_now()

    assert captured == []


# What perform_now raises, and on_error hooks


def test_perform_now_raises_the_tasks_own_error_from_the_last_attempt():
    raised_errors = []

    class Exhausted(Workflow):
        @task(retry=2)
        def fetch_data(self, ctx):
            error = FlakyServiceError(f"attempt {len(raised_errors) + 1} failed")
            raised_errors.append(error)
            raise error

    with pytest.raises(FlakyServiceError, match="attempt 3 failed") as raised:
        Exhausted.perform_now()

    assert raised.value is raised_errors[-1]


def test_on_error_hooks_run_once_after_the_last_retry():
    attempts = []
    hook_calls = []

    class ErrorAfterRetries(Workflow):
        @task(retry=2)
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=99)

        @on_error("fetch_data")
        def notify(self, ctx, error, task):
            hook_calls.append((len(attempts), str(error)))

    with pytest.raises(FlakyServiceError):
        ErrorAfterRetries.perform_now()

    assert hook_calls == [(3, "attempt 3 failed")]


def test_on_error_hooks_do_not_run_when_a_retry_succeeds():
    attempts = []
    hook_calls = []

    class RecoversQuietly(Workflow):
        @task(retry=2)
        def fetch_data(self, ctx):
            _failing_attempts(attempts, failures=1)

        @on_error()
        def notify(self, ctx, error, task):
            hook_calls.append(str(error))

    RecoversQuietly.perform_now()

    assert attempts == [1, 2]
    assert hook_calls == []


# What a retry re-runs


def test_retry_reruns_before_around_and_after_hooks_with_the_body():
    calls = []
    attempts = []

    class HooksRetried(Workflow):
        @before("fetch_data")
        def prepare(self, ctx):
            calls.append("before")

        @around("fetch_data")
        def wrap(self, ctx, call):
            calls.append("around")
            call()

        @task(retry=1)
        def fetch_data(self, ctx):
            calls.append("task")
            _failing_attempts(attempts, failures=1)

        @after("fetch_data")
        def finish(self, ctx):
            calls.append("after")

    HooksRetried.perform_now()

    assert calls == ["before", "around", "task", "before", "around", "task", "after"]


def test_failing_before_hook_is_retried():
    calls = []
    hook_attempts = []

    class BeforeRetried(Workflow):
        @before("fetch_data")
        def check(self, ctx):
            _failing_attempts(hook_attempts, failures=1)

        @task(retry=1)
        def fetch_data(self, ctx):
            calls.append("task")

    BeforeRetried.perform_now()

    assert hook_attempts == [1, 2]
    assert calls == ["task"]


def test_failing_after_hook_retries_the_whole_iteration():
    calls = []
    hook_attempts = []

    class AfterRetried(Workflow):
        @task(retry=1)
        def fetch_data(self, ctx):
            calls.append("task")

        @after("fetch_data")
        def audit(self, ctx):
            _failing_attempts(hook_attempts, failures=1)

    AfterRetried.perform_now()

    assert hook_attempts == [1, 2]
    assert calls == ["task", "task"]


def test_retry_reruns_only_the_failed_task_and_keeps_earlier_outputs():
    calls = []
    attempts = []

    class OnlyFailedTaskRetried(Workflow):
        @task(output={"raw_data": str})
        def fetch(self, ctx):
            calls.append("fetch")
            return {"raw_data": "payload"}

        @task(depends_on=["fetch"], retry=2, output={"seen": str})
        def validate(self, ctx):
            calls.append("validate")
            _failing_attempts(attempts, failures=1)
            return {"seen": ctx.output["fetch"][0].raw_data}

    run = OnlyFailedTaskRetried.perform_now()

    assert calls == ["fetch", "validate", "validate"]
    assert run.output["validate"][0].seen == "payload"


def test_map_task_retries_one_iteration_without_rerunning_finished_ones():
    calls = []
    failed_once = set()

    class MapRetry(Workflow):
        items = argument(list[int])

        @task(each=lambda ctx: ctx.arguments.items, retry=2, output={"doubled": int})
        def double(self, ctx):
            calls.append(ctx.each_value)
            if ctx.each_value == 2 and 2 not in failed_once:
                failed_once.add(2)
                raise FlakyServiceError("item 2 failed")
            return {"doubled": ctx.each_value * 2}

    with events.capture("task.retry") as captured:
        run = MapRetry.perform_now(items=[1, 2, 3])

    assert calls == [1, 2, 2, 3]
    assert [o.doubled for o in run.output["double"]] == [2, 4, 6]
    assert [event.payload["each_index"] for event in captured] == [1]


def test_on_error_runs_once_for_the_map_iteration_that_fails_for_good():
    seen = []

    class MapFailsForGood(Workflow):
        items = argument(list[int])

        @task(each=lambda ctx: ctx.arguments.items, retry=1)
        def process(self, ctx):
            if ctx.each_value == 20:
                raise FlakyServiceError("item 20 failed")

        @on_error("process")
        def notify(self, ctx, error, task):
            seen.append((ctx.each_index, ctx.each_value))

    with pytest.raises(FlakyServiceError, match="item 20 failed"):
        MapFailsForGood.perform_now(items=[10, 20])

    assert seen == [(1, 20)]


# Timeouts


def test_attempt_exceeding_its_timeout_fails_with_task_timeout_error(clock):
    class SlowTask(Workflow):
        @task(timeout=5)
        def slow(self, ctx):
            clock.sleep(10)

    with pytest.raises(TaskTimeoutError, match="slow") as raised:
        SlowTask.perform_now()

    assert isinstance(raised.value, TimeoutError)
    assert _task_name(raised.value.task) == "slow"
    assert raised.value.timeout == 5


def test_attempt_within_its_timeout_succeeds(clock):
    class QuickEnough(Workflow):
        @task(timeout=5, output={"ok": bool})
        def quick(self, ctx):
            clock.sleep(3)
            return {"ok": True}

    run = QuickEnough.perform_now()

    assert run.output["quick"][0].ok is True


def test_timed_out_attempts_are_retried_until_retries_run_out(clock):
    attempts = []

    class AlwaysSlow(Workflow):
        @task(timeout=5, retry={"count": 2, "strategy": "linear", "base_delay": 1})
        def slow(self, ctx):
            attempts.append(len(attempts) + 1)
            clock.sleep(10)

    with (
        events.capture("task.retry") as captured,
        pytest.raises(TaskTimeoutError),
    ):
        AlwaysSlow.perform_now()

    assert attempts == [1, 2, 3]
    assert clock.sleeps == [10, 1, 10, 1, 10]
    assert all(
        event.payload["error_class"].endswith("TaskTimeoutError") for event in captured
    )
    assert len(captured) == 2


def test_timed_out_attempt_followed_by_a_fast_one_succeeds(clock):
    attempts = []

    class SlowOnce(Workflow):
        @task(timeout=5, retry=1, output={"attempt": int})
        def slow_once(self, ctx):
            attempts.append(len(attempts) + 1)
            clock.sleep(10 if len(attempts) == 1 else 1)
            return {"attempt": len(attempts)}

    run = SlowOnce.perform_now()

    assert attempts == [1, 2]
    assert run.output["slow_once"][0].attempt == 2


# Invalid retry options


@pytest.mark.parametrize(
    "retry",
    [
        -1,
        "3",
        {"count": -1},
        {"strategy": "fibonacci"},
        {"base_delay": -2},
        {"count": 3, "backoff": "exponential"},
    ],
)
def test_invalid_retry_option_is_rejected_at_definition(retry):
    with pytest.raises(InvalidOptionError, match="retry") as raised:

        class BadRetry(Workflow):
            @task(retry=retry)
            def fetch_data(self, ctx):
                pass

    assert isinstance(raised.value, ValueError)
    assert "retry" in raised.value.option
