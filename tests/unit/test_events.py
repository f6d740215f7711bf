"""The event bus (guide topic: instrumentation; SPEC section 7).

Covers subscribing by exact name and by glob, unsubscribing, `events.capture`,
span and instant events, the event sequence and payloads of a run, failure
events, subscribers that raise, and custom `ctx.instrument` events.
"""

from contextlib import contextmanager

import pytest

from job_workflow import Workflow, argument, events, task, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock

SPAN_EVENTS = {"workflow", "task"}
TASK_EVENT_NAMES = {"task.start", "task", "task.complete", "task.error"}


class TwoTasks(Workflow):
    name = "tests.events.TwoTasks"

    @task
    def fetch(self, ctx):
        pass

    @task(depends_on=[fetch])
    def store(self, ctx):
        pass


class MapTask(Workflow):
    name = "tests.events.MapTask"

    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items)
    def visit(self, ctx):
        pass


class Failing(Workflow):
    name = "tests.events.Failing"

    @task
    def explode(self, ctx):
        raise ValueError("boom")


class Instrumented(Workflow):
    name = "tests.events.Instrumented"

    @task
    def call_api(self, ctx):
        with ctx.instrument("api_call", endpoint="/users", method="GET"):
            pass


class InstrumentedMap(Workflow):
    name = "tests.events.InstrumentedMap"

    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items)
    def process_item(self, ctx):
        with ctx.instrument("item_processing", item_id=ctx.each_value):
            pass


@pytest.fixture(autouse=True)
def _fresh_backend():
    with use_backend(MemoryBackend(mode="inline")):
        yield


@contextmanager
def subscribed(pattern, handler):
    """Subscribe `handler` for the duration of the block."""
    subscription = events.subscribe(pattern, handler)
    try:
        yield subscription
    finally:
        subscription.unsubscribe()


def names_of(captured):
    return [event.name for event in captured]


def the_one(captured, name):
    matching = [event for event in captured if event.name == name]
    assert len(matching) == 1, f"expected one {name!r}, got {names_of(captured)}"
    return matching[0]


# --- subscribing ------------------------------------------------------------


def test_subscribe_by_exact_name_receives_only_that_event():
    received = []
    with subscribed("workflow.start", received.append):
        TwoTasks.perform_now()

    assert names_of(received) == ["workflow.start"]


def test_exact_name_task_does_not_match_task_start():
    received = []
    with subscribed("task", received.append):
        TwoTasks.perform_now()

    assert names_of(received) == ["task", "task"]


def test_glob_pattern_receives_matching_events_only():
    received = []
    with subscribed("task.*", received.append):
        TwoTasks.perform_now()

    names = names_of(received)
    assert names == ["task.start", "task.complete", "task.start", "task.complete"]


def test_glob_with_leading_star_matches_any_prefix():
    received = []
    with subscribed("*.start", received.append):
        TwoTasks.perform_now()

    assert names_of(received) == ["workflow.start", "task.start", "task.start"]


def test_star_receives_every_event():
    received = []
    with subscribed("*", received.append), events.capture() as captured:
        TwoTasks.perform_now()

    assert names_of(received) == names_of(captured)
    assert {"workflow.start", "task", "workflow.complete"} <= set(names_of(received))


def test_unsubscribe_stops_delivery():
    received = []
    subscription = events.subscribe("*", received.append)
    TwoTasks.perform_now()
    delivered = len(received)

    subscription.unsubscribe()
    TwoTasks.perform_now()

    assert delivered > 0
    assert len(received) == delivered


def test_handlers_for_unrelated_patterns_are_not_called():
    calls = []
    patterns = ["queue.*", "throttle.*", "dependent.*", "dry_run.skip", "tasks"]
    subscriptions = [events.subscribe(p, calls.append) for p in patterns]
    try:
        TwoTasks.perform_now()
    finally:
        for subscription in subscriptions:
            subscription.unsubscribe()

    assert calls == []


# --- capture ----------------------------------------------------------------


def test_capture_collects_events_emitted_inside_the_block_only():
    with events.capture() as captured:
        TwoTasks.perform_now()
    inside = list(captured)

    TwoTasks.perform_now()

    assert names_of(inside)[0] == "workflow.start"
    assert names_of(inside)[-1] == "workflow.complete"
    assert names_of(captured) == names_of(inside)


def test_capture_filters_by_pattern():
    with events.capture("workflow*") as captured:
        TwoTasks.perform_now()

    assert names_of(captured) == ["workflow.start", "workflow", "workflow.complete"]


# --- spans and instants -----------------------------------------------------


def test_span_events_carry_a_non_negative_float_duration():
    with events.capture() as captured:
        TwoTasks.perform_now()

    spans = [event for event in captured if event.name in SPAN_EVENTS]
    assert len(spans) == 3
    for event in spans:
        assert isinstance(event.duration_ms, float), event.name
        assert event.duration_ms >= 0


def test_instant_events_have_no_duration():
    with events.capture() as captured:
        TwoTasks.perform_now()

    instants = [event for event in captured if event.name not in SPAN_EVENTS]
    assert len(instants) == 6
    for event in instants:
        assert event.duration_ms is None, event.name


# --- sequence and payloads --------------------------------------------------


def test_two_task_workflow_emits_the_full_sequence_in_order():
    with events.capture() as captured:
        TwoTasks.perform_now()

    assert [(e.name, e.payload.get("task_name")) for e in captured] == [
        ("workflow.start", None),
        ("task.start", "fetch"),
        ("task", "fetch"),
        ("task.complete", "fetch"),
        ("task.start", "store"),
        ("task", "store"),
        ("task.complete", "store"),
        ("workflow", None),
        ("workflow.complete", None),
    ]


def test_every_event_of_a_run_names_the_workflow_and_job():
    with events.capture() as captured:
        run = TwoTasks.perform_now()

    assert captured
    for event in captured:
        assert event.payload["job_name"] == "tests.events.TwoTasks", event.name
        assert event.payload["job_id"] == run.job_id, event.name


def test_task_events_carry_task_name_each_index_and_retry_count():
    with events.capture("task*") as captured:
        TwoTasks.perform_now()

    assert len(captured) == 6
    for event in captured:
        assert event.payload["task_name"] in {"fetch", "store"}
        assert event.payload["each_index"] is None
        assert event.payload["retry_count"] == 0


def test_map_task_events_carry_each_index():
    with events.capture("task.start") as captured:
        MapTask.perform_now(items=[10, 20, 30])

    assert [e.payload["each_index"] for e in captured] == [0, 1, 2]
    assert {e.payload["task_name"] for e in captured} == {"visit"}


def test_retry_count_grows_with_each_attempt():
    attempts = []

    class FlakyOnce(Workflow):
        name = "tests.events.FlakyOnce"

        @task(retry=1)
        def flaky(self, ctx):
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("transient")

    with use_clock(ManualClock()), events.capture("task.start") as captured:
        FlakyOnce.perform_now()

    assert [e.payload["retry_count"] for e in captured] == [0, 1]


# --- failure ----------------------------------------------------------------


def test_failing_task_emits_task_error_and_workflow_error():
    with events.capture() as captured, pytest.raises(ValueError, match="boom"):
        Failing.perform_now()

    names = names_of(captured)
    assert "workflow.complete" not in names
    assert "task.complete" not in names
    assert names.index("task.start") < names.index("task.error")
    assert names.index("task.error") < names.index("workflow.error")

    error = the_one(captured, "task.error")
    assert error.payload["task_name"] == "explode"
    assert error.payload["error_class"].rsplit(".", 1)[-1] == "ValueError"
    assert error.payload["error_message"] == "boom"


def test_workflow_error_names_the_workflow_and_job():
    with events.capture() as captured, pytest.raises(ValueError):
        Failing.perform_now()

    start = the_one(captured, "workflow.start")
    failure = the_one(captured, "workflow.error")
    assert failure.payload["job_name"] == "tests.events.Failing"
    assert failure.payload["job_id"] == start.payload["job_id"]


# --- raising subscribers ----------------------------------------------------


def test_raising_subscriber_does_not_change_the_outcome():
    def explode(event):
        raise RuntimeError(f"subscriber failed on {event.name}")

    received = []
    with subscribed("*", explode), subscribed("*", received.append):
        run = TwoTasks.perform_now()

    assert run.status == "succeeded"
    assert names_of(received)[0] == "workflow.start"
    assert names_of(received)[-1] == "workflow.complete"
    assert len(received) == 9


def test_raising_task_start_subscriber_still_lets_the_body_run():
    ran = []

    class Recorded(Workflow):
        name = "tests.events.Recorded"

        @task
        def work(self, ctx):
            ran.append("work")

    def explode(event):
        raise RuntimeError("subscriber failed")

    with subscribed("task.start", explode):
        run = Recorded.perform_now()

    assert run.status == "succeeded"
    assert ran == ["work"]


def test_raising_subscriber_does_not_mask_a_task_failure():
    def explode(event):
        raise RuntimeError("subscriber failed")

    with subscribed("*", explode), pytest.raises(ValueError, match="boom"):
        Failing.perform_now()


# --- custom instrumentation -------------------------------------------------


def test_instrument_emits_an_event_named_after_the_operation():
    with events.capture() as captured:
        run = Instrumented.perform_now()

    event = the_one(captured, "api_call")
    assert event.payload["endpoint"] == "/users"
    assert event.payload["method"] == "GET"
    assert event.payload["job_name"] == "tests.events.Instrumented"
    assert event.payload["job_id"] == run.job_id
    assert event.payload["task_name"] == "call_api"
    assert event.payload["each_index"] is None


def test_instrument_event_is_a_span_inside_its_task():
    with events.capture() as captured:
        Instrumented.perform_now()

    names = names_of(captured)
    event = the_one(captured, "api_call")
    assert isinstance(event.duration_ms, float)
    assert event.duration_ms >= 0
    assert names.index("task.start") < names.index("api_call") < names.index("task")


def test_instrument_in_a_map_task_carries_each_index():
    with events.capture("item_processing") as captured:
        InstrumentedMap.perform_now(items=[7, 8])

    assert [e.payload["each_index"] for e in captured] == [0, 1]
    assert [e.payload["item_id"] for e in captured] == [7, 8]
    assert {e.payload["task_name"] for e in captured} == {"process_item"}


# --- payload ownership and the library's taps ----------------------------------


def test_each_event_s_handlers_get_a_payload_of_their_own():
    """A handler may keep or change its payload: the run's next events are
    built from the runner's own, untouched."""
    seen, kept = [], []

    def meddle(event):
        seen.append(event.payload["task_name"])
        kept.append(event.payload)
        event.payload["task_name"] = "changed"

    with subscribed("task*", meddle):
        TwoTasks.perform_now()

    assert seen == ["fetch"] * 3 + ["store"] * 3  # start, span, complete
    assert len({id(payload) for payload in kept}) == len(kept)


def test_a_tap_hears_every_event_before_the_handlers():
    from job_workflow.core._events import bus

    heard = []
    order = []

    def tap(name, payload, duration_ms):
        heard.append((name, payload.get("task_name"), duration_ms is not None))
        order.append(("tap", name))

    detach = bus._tap(tap)
    try:
        assert bus.wants("anything at all")
        with subscribed("task.start", lambda e: order.append(("handler", e.name))):
            TwoTasks.perform_now()
    finally:
        detach()

    assert [name for name, _, _ in heard] == [
        "workflow.start",
        "task.start",
        "task",
        "task.complete",
        "task.start",
        "task",
        "task.complete",
        "workflow",
        "workflow.complete",
    ]
    assert ("task", "fetch", True) in heard
    first = order.index(("tap", "task.start"))
    assert order[first + 1] == ("handler", "task.start")
    assert not bus.wants("anything at all")


def test_a_simulation_s_trace_is_what_was_emitted_whatever_handlers_do():
    from job_workflow.simulator import Simulation

    def meddle(event):
        event.payload.pop("task_name", None)

    plain = Simulation(workers=2, seed=1).run(TwoTasks)
    with subscribed("*", meddle):
        meddled = Simulation(workers=2, seed=1).run(TwoTasks)

    assert meddled.trace == plain.trace
    assert [e.detail.get("task_name") for e in meddled.trace if e.event == "task"] == [
        "fetch",
        "store",
    ]
