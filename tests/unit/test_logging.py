"""Structured logs (SPEC §7, STYLE habit 11; Ruby guide STRUCTURED_LOGGING.md).

Every test attaches a handler with ``JsonFormatter`` writing to a StringIO,
runs workflows with ``LogSubscriber`` subscribed, parses every line as JSON
and checks the fields and levels of each event type: lifecycle at INFO,
retries at WARNING, final failures at ERROR, throttles, dependency waits,
reschedules and dry-run skips at DEBUG. Also: ``log_tags``, the formatter on
its own (exceptions, extras, odd values), truncation, nothing logged (or
even built) below the logger's level, and subscribing through the class.
All waits run on a ManualClock.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import datetime, timedelta

import pytest

from job_workflow import (
    Queue,
    Workflow,
    argument,
    events,
    task,
    use_backend,
    use_clock,
)
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.logging import (
    FIELDS,
    LEVELS,
    JsonFormatter,
    LogSubscriber,
    current_log_tags,
    log_tags,
)

LOGGER = logging.getLogger("job_workflow")
CLOCK: list[ManualClock] = []  # the test's clock, for task bodies that take time


class Capture:
    """A JsonFormatter handler on the job_workflow logger, into a StringIO."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())

    def lines(self) -> list[dict]:
        """Every line parsed as one JSON object (any other line fails)."""
        text = self.stream.getvalue()
        assert text.endswith("\n") or not text
        return [json.loads(line) for line in text.splitlines()]

    def events(self, name: str | None = None) -> list[dict]:
        found = [line for line in self.lines() if "event" in line]
        return [line for line in found if name is None or line["event"] == name]

    def names(self) -> list[str]:
        return [line["event"] for line in self.events()]


@pytest.fixture
def clock():
    with use_clock(ManualClock()) as manual:
        CLOCK[:] = [manual]
        yield manual
    CLOCK.clear()


@pytest.fixture
def backend(clock):
    with use_backend(MemoryBackend()) as inline:
        yield inline


@pytest.fixture
def queued(clock):
    with use_backend(MemoryBackend("queued")) as queued_backend:
        yield queued_backend


@pytest.fixture
def capture():
    captured = Capture()
    level, handlers = LOGGER.level, list(LOGGER.handlers)
    LOGGER.addHandler(captured.handler)
    LOGGER.setLevel(logging.DEBUG)
    yield captured
    LOGGER.removeHandler(captured.handler)
    LOGGER.setLevel(level)
    assert LOGGER.handlers == handlers


@pytest.fixture
def subscriber():
    sub = LogSubscriber().subscribe()
    yield sub
    sub.unsubscribe()


def drain(backend: MemoryBackend) -> None:
    backend.drain(threads=3, timeout=30)


def check_line(line: dict, level: str, **fields: object) -> None:
    assert line["level"] == level, line
    assert line["logger"] == "job_workflow"
    stamp = datetime.fromisoformat(line["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert line["message"].startswith(line["event"] + " ")
    for key, value in fields.items():
        assert line[key] == value, (key, line)


# --- workflows ----------------------------------------------------------------


class Simple(Workflow):
    name = "tests.logging.Simple"

    @task(output={"n": int})
    def fetch(self, ctx):
        CLOCK[0].advance(1.5)  # a task that takes 1.5 virtual seconds
        return {"n": 1}

    @task(depends_on=[fetch])
    def store(self, ctx):
        pass


flaky_calls: list[int] = []


class Flaky(Workflow):
    name = "tests.logging.Flaky"

    @task(retry={"count": 2, "strategy": "linear", "base_delay": 4})
    def pull(self, ctx):
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise ConnectionError("reset by peer")


class Broken(Workflow):
    name = "tests.logging.Broken"

    @task(retry=1)
    def explode(self, ctx):
        raise ValueError("x" * 5000)


class Skips(Workflow):
    name = "tests.logging.Skips"

    @task(condition=lambda ctx: False)
    def never(self, ctx):
        pass

    @task
    def always(self, ctx):
        pass


class FanOut(Workflow):
    name = "tests.logging.FanOut"

    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, enqueue=True, output={"v": int})
    def double(self, ctx):
        return {"v": ctx.each_value * 2}

    @task(depends_on=[double], output={"total": int})
    def total(self, ctx):
        return {"total": sum(o.v for o in ctx.output["double"])}


class Rescheduling(Workflow):
    name = "tests.logging.Rescheduling"

    @task(enqueue=True)
    def slow(self, ctx):
        CLOCK[0].advance(10)

    @task(
        depends_on=[slow],
        dependency_wait={"poll_timeout": 1, "poll_interval": 1, "reschedule_delay": 3},
    )
    def after(self, ctx):
        pass


class Throttled(Workflow):
    name = "tests.logging.Throttled"

    @task(throttle={"key": "tests.logging.api", "limit": 1, "ttl": 30})
    def call(self, ctx):
        pass


class DryRunning(Workflow):
    name = "tests.logging.DryRunning"
    dry_run = True

    @task
    def send(self, ctx):
        ctx.skip_in_dry_run(lambda: None, name="email")


# --- lifecycle at INFO --------------------------------------------------------


def test_a_successful_run_logs_its_lifecycle_at_info(backend, capture, subscriber):
    run = Simple.perform_now()

    assert capture.names() == [
        "workflow.start",
        "task.start",
        "task.complete",
        "task.start",
        "task.complete",
        "workflow.complete",
    ]
    start, fetch_start, fetch_done, _, _, done = capture.events()
    ids = {"job_name": "tests.logging.Simple", "job_id": run.job_id}
    check_line(start, "INFO", **ids)
    check_line(fetch_start, "INFO", task_name="fetch", each_index=None, **ids)
    check_line(fetch_start, "INFO", retry_count=0)
    check_line(fetch_done, "INFO", task_name="fetch", duration_ms=1500.0, **ids)
    check_line(done, "INFO", duration_ms=1500.0, **ids)
    assert "duration_ms" not in start
    assert start["message"] == f"workflow.start tests.logging.Simple (job {run.job_id})"


def test_every_line_of_every_run_is_one_json_object(queued, capture, subscriber):
    FanOut.perform_later(items=[1, 2, 3])
    Rescheduling.perform_later()
    drain(queued)

    lines = capture.lines()  # json.loads on every line
    assert len(lines) > 20
    for line in lines:
        assert set(line) >= {"time", "level", "logger", "message", "event"}
        assert line["level"] == logging.getLevelName(LEVELS[line["event"]])
        assert set(line) - {"time", "level", "logger", "message", "event"} <= {
            *FIELDS,
            "duration_ms",
        }


def test_task_skip_is_info_with_its_reason(backend, capture, subscriber):
    run = Skips.perform_now()

    [skip] = capture.events("task.skip")
    check_line(
        skip, "INFO", task_name="never", reason="condition_not_met", job_id=run.job_id
    )
    assert "skipped (condition_not_met)" in skip["message"]


def test_task_enqueue_is_info_and_sub_jobs_log_their_own_ids(
    queued, capture, subscriber
):
    handle = FanOut.perform_later(items=[1, 2, 3])
    drain(queued)

    [enqueue] = capture.events("task.enqueue")
    check_line(enqueue, "INFO", task_name="double", sub_job_count=3)
    check_line(enqueue, "INFO", job_id=handle.job_id)
    sub_starts = [e for e in capture.events("task.start") if e["task_name"] == "double"]
    assert sorted(e["each_index"] for e in sub_starts) == [0, 1, 2]
    sub_ids = {e["job_id"] for e in sub_starts}
    assert len(sub_ids) == 3
    assert handle.job_id not in sub_ids
    [total] = [e for e in capture.events("task.complete") if e["task_name"] == "total"]
    assert total["job_id"] == handle.job_id


def test_queue_pause_and_resume_are_info(queued, capture, subscriber):
    Queue.pause("tests-logging")
    Queue.resume("tests-logging")

    pause, resume = capture.events()
    check_line(pause, "INFO", event="queue.pause", queue_name="tests-logging")
    check_line(resume, "INFO", event="queue.resume", queue_name="tests-logging")


# --- retries at WARNING, final failures at ERROR ------------------------------


def test_a_retry_is_one_warning_with_attempt_delay_and_error(
    backend, capture, subscriber
):
    flaky_calls.clear()
    run = Flaky.perform_now()

    [retry] = capture.events("task.retry")
    check_line(
        retry,
        "WARNING",
        job_id=run.job_id,
        task_name="pull",
        each_index=None,
        retry_count=0,
        attempt=1,
        max_attempts=3,
        delay_seconds=4.0,
        error_class="ConnectionError",
        error_message="reset by peer",
        duration_ms=0.0,
    )
    assert (
        "failed with ConnectionError: reset by peer; retry 1 of 2 in 4.0s"
        in (retry["message"])
    )
    assert [line["level"] for line in capture.events()].count("WARNING") == 1
    [second_start] = capture.events("task.start")[1:]
    assert second_start["retry_count"] == 1
    assert capture.events("workflow.complete")[0]["duration_ms"] == 4000.0


def test_a_final_failure_is_error_once_for_the_task_and_once_for_the_workflow(
    backend, capture, subscriber
):
    with pytest.raises(ValueError):
        Broken.perform_now()

    errors = [line for line in capture.events() if line["level"] == "ERROR"]
    assert [line["event"] for line in errors] == ["task.error", "workflow.error"]
    task_error, workflow_error = errors
    check_line(task_error, "ERROR", task_name="explode", retry_count=1)
    check_line(task_error, "ERROR", error_class="ValueError")
    check_line(workflow_error, "ERROR", error_class="ValueError")
    assert "duration_ms" in task_error
    assert "duration_ms" in workflow_error
    assert capture.names()[-1] == "workflow.error"


def test_long_values_are_truncated(backend, capture, subscriber):
    with pytest.raises(ValueError):
        Broken.perform_now()

    for line in capture.events("task.error") + capture.events("task.retry"):
        message = line["error_message"]
        assert message.startswith("x" * 1000)
        assert message.endswith("... [4000 more characters]")
        assert len(message) < 1100


def test_max_length_is_configurable(backend, capture):
    with LogSubscriber(max_length=10), pytest.raises(ValueError):
        Broken.perform_now()

    [error] = capture.events("task.error")
    assert error["error_message"] == "xxxxxxxxxx... [4990 more characters]"


# --- DEBUG: throttles, dependency waits, dry runs -----------------------------


def test_throttle_events_are_debug_with_key_limit_and_wait(
    queued, clock, capture, subscriber
):
    # Someone else holds the only slot for 30 s: the task waits for its ttl.
    assert queued.semaphore_acquire("tests.logging.api", 1, 30, "other", clock.now())
    Throttled.perform_later()
    drain(queued)

    names = [n for n in capture.names() if n.startswith("throttle.")]
    assert names == [
        "throttle.acquire.start",
        "throttle.acquire.complete",
        "throttle.release",
    ]
    for line in capture.events():
        if line["event"].startswith("throttle."):
            check_line(
                line,
                "DEBUG",
                concurrency_key="tests.logging.api",
                concurrency_limit=1,
            )
    [acquired] = capture.events("throttle.acquire.complete")
    assert 30_000 <= acquired["duration_ms"] <= 31_000


def test_dependency_wait_and_reschedule_are_debug(queued, capture, subscriber):
    handle = Rescheduling.perform_later()
    # One worker: the parent must reschedule to let its sub-job run.
    queued.drain(threads=1, timeout=30)

    names = [n for n in capture.names() if n.startswith("dependent.")]
    assert names[0] == "dependent.wait.start"
    assert "dependent.reschedule" in names
    assert names[-1] == "dependent.wait.complete"
    for line in capture.events():
        if line["event"].startswith("dependent."):
            check_line(
                line,
                "DEBUG",
                job_id=handle.job_id,
                task_name="after",
                dependent_task_name="slow",
            )
    reschedule = capture.events("dependent.reschedule")[0]
    assert reschedule["reschedule_delay"] == 3
    assert reschedule["poll_count"] >= 1
    assert capture.events("dependent.wait.complete")[0]["duration_ms"] >= 0
    # a rescheduled job logs workflow.start again when it resumes
    starts = capture.events("workflow.start")
    assert len(starts) >= 2
    assert {s["job_id"] for s in starts} == {handle.job_id}


def test_dry_run_skip_is_debug(backend, capture, subscriber):
    run = DryRunning.perform_now()

    [skip] = capture.events("dry_run.skip")
    check_line(
        skip,
        "DEBUG",
        job_id=run.job_id,
        task_name="send",
        dry_run_name="email",
        dry_run_index=0,
    )


# --- levels and laziness ------------------------------------------------------


def test_nothing_is_logged_below_the_configured_level(queued, capture, subscriber):
    LOGGER.setLevel(logging.INFO)
    FanOut.perform_later(items=[1, 2])
    Rescheduling.perform_later()
    drain(queued)
    flaky_calls.clear()
    with use_backend(MemoryBackend()):
        Flaky.perform_now()

    levels = {line["level"] for line in capture.lines()}
    assert levels == {"INFO", "WARNING"}
    assert not [n for n in capture.names() if n.startswith(("throttle", "dependent"))]

    LOGGER.setLevel(logging.WARNING)
    before = len(capture.lines())
    with use_backend(MemoryBackend()):
        Simple.perform_now()
    assert len(capture.lines()) == before


def test_no_work_is_done_for_a_level_the_logger_does_not_accept(
    backend, capture, subscriber, monkeypatch
):
    built = []
    original = LogSubscriber._fields

    def counting(self, event):
        built.append(event.name)
        return original(self, event)

    monkeypatch.setattr(LogSubscriber, "_fields", counting)
    LOGGER.setLevel(logging.ERROR)
    flaky_calls.clear()
    Flaky.perform_now()
    Simple.perform_now()

    assert built == []
    assert capture.lines() == []


def test_the_message_is_only_formatted_when_a_handler_formats_it(backend, subscriber):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep()
    LOGGER.addHandler(keep)
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)
    try:
        Simple.perform_now()
    finally:
        LOGGER.removeHandler(keep)
        LOGGER.setLevel(level)
    assert records
    # the human part of the message is a lazy argument, not a prebuilt string
    assert all(r.msg == "%s %s" and not isinstance(r.args[1], str) for r in records)
    assert records[0].event == "workflow.start"
    assert records[0].job_name == "tests.logging.Simple"


# --- log tags -----------------------------------------------------------------


def test_log_tags_add_fields_to_every_record_inside_the_block(
    backend, capture, subscriber
):
    with log_tags(tenant="acme", request_id="r-1"):
        Simple.perform_now()
    Simple.perform_now()

    lines = capture.lines()
    tagged, untagged = lines[: len(lines) // 2], lines[len(lines) // 2 :]
    assert all(line["tenant"] == "acme" for line in tagged)
    assert all(line["request_id"] == "r-1" for line in tagged)
    assert not any("tenant" in line for line in untagged)


def test_log_tags_nest_and_restore(capture):
    other = logging.getLogger("tests.logging.app")
    other.addHandler(capture.handler)
    other.setLevel(logging.INFO)
    other.propagate = False
    try:
        with log_tags(tenant="acme", region="eu"):
            with log_tags(region="us", user=7) as tags:
                assert dict(tags) == {"tenant": "acme", "region": "us", "user": 7}
                other.info("inner")
            assert current_log_tags() == {"tenant": "acme", "region": "eu"}
            other.info("outer")
        other.info("none")
    finally:
        other.removeHandler(capture.handler)
        other.propagate = True

    inner, outer, none = capture.lines()
    assert (inner["tenant"], inner["region"], inner["user"]) == ("acme", "us", 7)
    assert (outer["tenant"], outer["region"]) == ("acme", "eu")
    assert "user" not in outer
    assert "tenant" not in none
    assert "event" not in none
    assert current_log_tags() == {}


def test_log_tags_refuse_names_of_log_record_attributes():
    with pytest.raises(ValueError, match="name"), log_tags(name="x"):
        pass
    with pytest.raises(ValueError, match="message"), log_tags(message="x"):
        pass


# --- the formatter on its own -------------------------------------------------


def make_record(msg="hello %s", args=("world",), **extra) -> logging.LogRecord:
    logger = logging.getLogger("tests.logging.formatter")
    return logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, msg, args, None, extra=extra
    )


def test_formatter_writes_base_keys_event_and_extra_fields_in_order():
    record = make_record(event="custom.thing", job_id="j1", count=3)
    line = JsonFormatter(static_fields={"service": "etl"}).format(record)

    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:5] == ["time", "level", "logger", "message", "event"]
    assert data["message"] == "hello world"
    assert data["logger"] == "tests.logging.formatter"
    assert (data["event"], data["job_id"], data["count"]) == ("custom.thing", "j1", 3)
    assert data["service"] == "etl"
    assert data["time"].endswith("Z")
    parsed = datetime.fromisoformat(data["time"])
    assert abs(parsed.timestamp() - record.created) < 1e-3


def test_formatter_writes_exceptions_as_class_message_and_traceback():
    try:
        raise KeyError("missing")
    except KeyError:
        record = make_record(msg="failed", args=())
        record.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(record))

    assert data["error_class"] == "KeyError"
    assert data["error_message"] == "'missing'"
    assert data["traceback"].startswith("Traceback (most recent call last)")
    assert "KeyError: 'missing'" in data["traceback"]


def test_formatter_keeps_going_with_values_json_cannot_encode():
    class Thing:
        def __str__(self):
            return "a thing"

    nested = {(1, 2): "tuple key"}
    record = make_record(thing=Thing(), when=datetime(2024, 1, 2), nested=nested)
    data = json.loads(JsonFormatter().format(record))

    assert data["thing"] == "a thing"
    assert data["when"] == "2024-01-02T00:00:00"
    assert data["nested"] == str(nested)


def test_formatter_output_is_ascii_and_round_trips_other_characters():
    record = make_record(msg="réseau coupé %s", args=("東京",), city="Zürich")
    line = JsonFormatter().format(record)

    assert line.isascii()
    data = json.loads(line)
    assert (data["message"], data["city"]) == ("réseau coupé 東京", "Zürich")


def test_formatter_never_lets_fields_override_the_base_keys():
    with log_tags(time="tag-time", level="tag-level"):
        data = json.loads(
            JsonFormatter(static_fields={"logger": "x"}).format(make_record())
        )
    assert data["level"] == "INFO"
    assert data["logger"] == "tests.logging.formatter"
    assert data["time"] != "tag-time"


# --- subscribing --------------------------------------------------------------


def test_subscribing_through_the_class_uses_one_default_instance(backend, capture):
    first = LogSubscriber.subscribe()
    again = LogSubscriber.subscribe()
    try:
        assert first is again is LogSubscriber.default()
        assert first.subscribed
        Simple.perform_now()
    finally:
        LogSubscriber.unsubscribe()
    assert not first.subscribed
    assert capture.names().count("workflow.start") == 1  # not logged twice

    Simple.perform_now()
    assert capture.names().count("workflow.start") == 1  # nothing after unsubscribe


def test_the_subscriber_never_configures_handlers():
    handlers = list(LOGGER.handlers)
    level, propagate = LOGGER.level, LOGGER.propagate
    sub = LogSubscriber().subscribe()
    sub.unsubscribe()
    assert LOGGER.handlers == handlers
    assert (LOGGER.level, LOGGER.propagate) == (level, propagate)


def test_a_custom_operation_named_like_a_library_event_is_not_logged_as_it(
    backend, capture, subscriber
):
    class Confusing(Workflow):
        name = "tests.logging.Confusing"

        @task
        def work(self, ctx):
            with ctx.instrument("task"):
                pass

    Confusing.perform_now()
    assert capture.names().count("task.start") == 1


def test_a_handler_that_raises_does_not_change_the_outcome(backend, capture):
    class Exploding(logging.Handler):
        def emit(self, record):
            raise RuntimeError("disk full")

        def handleError(self, record):  # logging's own isolation, made loud
            raise RuntimeError("handler failed")

    exploding = Exploding()
    LOGGER.addHandler(exploding)
    try:
        with LogSubscriber(), events.capture("workflow.complete") as done:
            run = Simple.perform_now()
    finally:
        LOGGER.removeHandler(exploding)
    assert run.status == "succeeded"
    assert len(done) == 1
