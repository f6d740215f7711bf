"""Per-iteration and per-task overhead of the runner.

Runs a 10,000-iteration map task and a 1,000-task chain with perform_now on
the inline memory backend, with no subscriber, with one subscriber on every
event, with the log subscriber (INFO, JSON-formatting every record and
dropping it) and with the OpenTelemetry subscriber (SDK, in-memory
exporter), and prints microseconds per map iteration and per task. Task
bodies do nothing, so the figures are the library's own cost.

    .venv/bin/python benchmarks/core_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from job_workflow import Workflow, argument, events, task, use_backend
from job_workflow.backends.memory import MemoryBackend

MAP_ITERATIONS = 10_000
CHAIN_TASKS = 1_000


class MapBench(Workflow):
    name = "bench.map"
    n = argument(int)

    @task(each=lambda ctx: range(ctx.arguments.n), output={"value": int})
    def square(self, ctx: Any) -> dict[str, int]:
        return {"value": ctx.each_value}


def _chain_workflow(length: int) -> type[Workflow]:
    body: dict[str, Any] = {"name": "bench.chain", "__qualname__": "ChainBench"}
    previous: Any = None
    for i in range(length):

        def step(self: Any, ctx: Any) -> dict[str, int]:
            return {"value": 1}

        declared = task(
            name=f"t{i}",
            depends_on=[previous] if previous is not None else [],
            output={"value": int},
        )(step)
        body[f"t{i}"] = declared
        previous = declared
    return type("ChainBench", (Workflow,), body)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return min(timings), statistics.median(timings)


Teardown = Callable[[], None]


def _measure(
    label: str, setup: Callable[[], Teardown], repeat: int, after_run: Teardown
) -> None:
    chain = _chain_workflow(CHAIN_TASKS)

    def run_map() -> None:
        MapBench.perform_now(n=MAP_ITERATIONS)
        after_run()

    def run_chain() -> None:
        chain.perform_now()
        after_run()

    teardown = setup()
    try:
        with use_backend(MemoryBackend()):
            best_map, median_map = _best(run_map, repeat)
            best_chain, median_chain = _best(run_chain, repeat)
    finally:
        teardown()
    per_iteration = best_map / MAP_ITERATIONS * 1e6
    per_task = best_chain / CHAIN_TASKS * 1e6
    print(
        f"{label:<58} map: {per_iteration:7.2f} us/iteration "
        f"(median {median_map / MAP_ITERATIONS * 1e6:.2f})   "
        f"chain: {per_task:7.2f} us/task "
        f"(median {median_chain / CHAIN_TASKS * 1e6:.2f})"
    )


def _nothing() -> None:
    pass


def _no_subscriber() -> Teardown:
    return _nothing


def _counting_subscriber() -> Teardown:
    received = [0]

    def handler(event: events.Event) -> None:
        received[0] += 1

    return events.subscribe("*", handler).unsubscribe


class _FormatAndDrop(logging.Handler):
    """Like logging.NullHandler, but formats each record (the JSON cost)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def _log_subscriber() -> Teardown:
    from job_workflow.logging import JsonFormatter, LogSubscriber

    logger = logging.getLogger("job_workflow")
    handler = _FormatAndDrop()
    handler.setFormatter(JsonFormatter())
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    subscriber = LogSubscriber().subscribe()

    def teardown() -> None:
        subscriber.unsubscribe()
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved

    return teardown


def _otel_subscriber() -> tuple[Callable[[], Teardown], Teardown]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from job_workflow.otel import OpenTelemetrySubscriber

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def setup() -> Teardown:
        return OpenTelemetrySubscriber(tracer_provider=provider).subscribe().unsubscribe

    return setup, exporter.clear  # keep memory flat between runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{MAP_ITERATIONS:,}-iteration map and {CHAIN_TASKS:,}-task chain, "
        f"best of {args.repeat} (target: < 30 us per map iteration, no subscriber)"
    )
    _measure("no subscriber", _no_subscriber, args.repeat, _nothing)
    _measure("one subscriber, every event", _counting_subscriber, args.repeat, _nothing)
    _measure(
        "log subscriber (INFO, to a NullHandler-like handler)",
        _log_subscriber,
        args.repeat,
        _nothing,
    )
    otel_setup, clear_spans = _otel_subscriber()
    _measure(
        "OpenTelemetry subscriber (in-memory exporter)",
        otel_setup,
        args.repeat,
        clear_spans,
    )


if __name__ == "__main__":
    main()
