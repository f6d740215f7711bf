"""Structured logs: a JSON formatter, log tags, and a subscriber that logs events.

The library logs on the stdlib logger ``job_workflow`` and never adds a
handler to it: the application decides where records go. To get one JSON
object per line::

    import logging
    from job_workflow.logging import JsonFormatter, LogSubscriber

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("job_workflow").addHandler(handler)
    logging.getLogger("job_workflow").setLevel(logging.INFO)
    LogSubscriber.subscribe()

Levels follow the events' weight: INFO for the lifecycle (workflow and task
start/complete, skip, enqueue, queue pause/resume), WARNING for a retry,
ERROR for a final failure (``task.error``, ``workflow.error``), DEBUG for
throttles, dependency waits and dry-run skips. Every record has a stable
``event`` field (the event name) and, except throttle and queue events
(whose payloads have none), ``job_name`` and ``job_id``;
docs/observability.md lists the fields of each event.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, time
from types import MappingProxyType
from typing import Any, Final

from job_workflow._subscribers import Subscriber
from job_workflow.core._events import Event

__all__ = [
    "LOGGER_NAME",
    "JsonFormatter",
    "LogSubscriber",
    "current_log_tags",
    "log_tags",
]

LOGGER_NAME: Final = "job_workflow"

# -- log tags ---------------------------------------------------------------

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_tags: ContextVar[Mapping[str, Any]] = ContextVar(
    "job_workflow_log_tags", default=_EMPTY
)

# Attributes every LogRecord has: an ``extra`` key among them makes logging
# raise, so tags may not use these names.
_RECORD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None))
) | {"message", "asctime", "taskName"}


@contextmanager
def log_tags(**tags: Any) -> Iterator[Mapping[str, Any]]:
    """Add ``tags`` as fields to every record formatted inside the block.

    Tags nest (an inner block adds to and may override the outer one) and
    follow the current thread or asyncio task, as a context variable does.
    They are read in the code that emits the record: a workflow started
    inside the block and run later by a worker thread does not see them.
    Names used by ``logging.LogRecord`` itself (``name``, ``msg``, ...) are
    refused with ValueError.
    """
    reserved = sorted(set(tags) & _RECORD_ATTRIBUTES)
    if reserved:
        raise ValueError(
            f"log tag name(s) {reserved} are attributes of logging.LogRecord; "
            "choose other names"
        )
    merged = MappingProxyType({**_tags.get(), **tags})
    token = _tags.set(merged)
    try:
        yield merged
    finally:
        _tags.reset(token)


def current_log_tags() -> dict[str, Any]:
    """The tags in effect here (a copy)."""
    return dict(_tags.get())


# -- the formatter ----------------------------------------------------------

_BASE_KEYS: Final = ("time", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """Format each record as one JSON object on one line.

    Keys, in order: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``event`` when the record has one, then ``static_fields``,
    the current :func:`log_tags`, every field passed through ``extra``, and
    for a record with an exception ``error_class``, ``error_message`` and
    ``traceback``. Dates and times are written in ISO 8601, sets and tuples
    as lists, any other value JSON cannot encode as its ``str()``. Output is
    ASCII (other characters are ``\\u`` escapes), so no stream encoding can
    break a line.
    """

    def __init__(self, *, static_fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._static = dict(static_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry = self.to_dict(record)
        try:
            return _ENCODER.encode(entry)
        except (TypeError, ValueError):  # circular or non-str keys deep inside
            return _ENCODER.encode({k: _encodable(v) for k, v in entry.items()})

    def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fields of ``record`` as the dict that :meth:`format` encodes."""
        entry: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            entry["event"] = event
        for fields in (self._static, _tags.get(), _extra(record)):
            for key, value in fields.items():
                if key not in _BASE_KEYS:
                    entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry.setdefault("error_class", type(exc).__name__)
            entry.setdefault("error_message", str(exc))
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return entry


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


_last_second: tuple[int, str] = (-1, "")


def _iso_utc(created: float) -> str:
    """``created`` as ``2024-01-02T03:04:05.123456Z`` (the date part cached)."""
    global _last_second
    second = int(created)
    cached_second, prefix = _last_second
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, prefix)
    micro = min(int((created - second) * 1_000_000), 999_999)
    return f"{prefix}.{micro:06d}Z"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


_ENCODER: Final = json.JSONEncoder(default=_default)


def _encodable(value: Any) -> Any:
    try:
        json.dumps(value, default=_default)
    except (TypeError, ValueError):
        return str(value)
    return value


# -- the subscriber ---------------------------------------------------------

DEBUG, INFO, WARNING, ERROR = (
    logging.DEBUG,
    logging.INFO,
    logging.WARNING,
    logging.ERROR,
)

LEVELS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "workflow.start": INFO,
        "workflow.complete": INFO,
        "workflow.error": ERROR,
        "task.start": INFO,
        "task.complete": INFO,
        "task.skip": INFO,
        "task.enqueue": INFO,
        "task.retry": WARNING,
        "task.error": ERROR,
        "queue.pause": INFO,
        "queue.resume": INFO,
        "throttle.acquire.start": DEBUG,
        "throttle.acquire.complete": DEBUG,
        "throttle.release": DEBUG,
        "dependent.wait.start": DEBUG,
        "dependent.wait.complete": DEBUG,
        "dependent.reschedule": DEBUG,
        "dry_run.skip": DEBUG,
    }
)
"""The level each logged event is written at."""

FIELDS: Final = (
    "job_name",
    "job_id",
    "task_name",
    "each_index",
    "retry_count",
    "attempt",
    "max_attempts",
    "delay_seconds",
    "error_class",
    "error_message",
    "concurrency_key",
    "concurrency_limit",
    "dependent_task_name",
    "sub_job_count",
    "reason",
    "reschedule_delay",
    "poll_count",
    "dry_run_name",
    "dry_run_index",
    "queue_name",
)
"""Payload fields copied to a record when the event has them."""

# A span event and the lifecycle event it pairs with are emitted one right
# after the other in the same thread: the span first on success, last on
# failure. The pair shares the record, so it can carry ``duration_ms``.
_AFTER_SPAN: Final = {
    "workflow.complete": "workflow",
    "task.complete": "task",
    "dependent.wait.complete": "dependent.wait",
    "throttle.acquire.complete": "throttle.acquire",
}
_BEFORE_SPAN: Final = {
    "workflow.error": "workflow",
    "task.retry": "task",
    "task.error": "task",
}
_SPAN_LEVEL: Final = {
    "workflow": INFO,
    "task": INFO,
    "dependent.wait": DEBUG,
    "throttle.acquire": DEBUG,
}
_IDENTITY: Final = ("job_id", "task_name", "each_index", "concurrency_key")

DEFAULT_MAX_LENGTH: Final = 1000
_THIS_FILE: Final = __file__


class LogSubscriber(Subscriber):
    """Write bus events as records on the ``job_workflow`` logger.

    Does no work for an event whose level the logger does not accept. Text
    values longer than ``max_length`` characters are cut. It never adds a
    handler: attach one (with :class:`JsonFormatter`) yourself.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        super().__init__()
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self.max_length = max_length
        self.failures = 0  # records a handler failed to write
        # Per thread: a failure record waiting for its span's duration, and
        # the last span's duration waiting for its completion record.
        self._waiting_record: dict[int, tuple[int, str, dict[str, Any]]] = {}
        self._last_span: dict[int, tuple[str, tuple[Any, ...], float]] = {}

    def _handlers(self) -> list[tuple[str, Callable[[Event], Any]]]:
        handlers: list[tuple[str, Callable[[Event], Any]]] = [
            (name, self._on_event) for name in LEVELS
        ]
        handlers += [(name, self._on_span) for name in _SPAN_LEVEL]
        return handlers

    def _stopped(self) -> None:
        for thread in list(self._waiting_record):
            self._flush(thread)
        self._last_span.clear()

    # -- events --

    def _on_event(self, event: Event) -> None:
        if "operation" in event.payload:  # a custom operation reusing a name
            return
        thread = threading.get_ident()
        if self._waiting_record:
            self._flush(thread)
        level = LEVELS[event.name]
        if not self.logger.isEnabledFor(level):
            return
        fields = self._fields(event)
        span = _AFTER_SPAN.get(event.name)
        if span is not None:
            last = self._last_span.pop(thread, None)
            if last is not None and last[:2] == (span, _identity(event.payload)):
                fields["duration_ms"] = round(last[2], 3)
        elif event.name in _BEFORE_SPAN:
            self._waiting_record[thread] = (level, event.name, fields)
            return
        self._write(level, event.name, fields)

    def _on_span(self, event: Event) -> None:
        if "operation" in event.payload:  # a custom ctx.instrument span
            return
        thread = threading.get_ident()
        waiting = self._waiting_record.pop(thread, None)
        if waiting is not None:
            level, name, fields = waiting
            if (
                _BEFORE_SPAN[name] == event.name
                and event.duration_ms is not None
                and _identity(fields) == _identity(event.payload)
            ):
                fields["duration_ms"] = round(event.duration_ms, 3)
            self._write(level, name, fields)
            return
        duration = event.duration_ms
        if duration is not None and self.logger.isEnabledFor(_SPAN_LEVEL[event.name]):
            identity = _identity(event.payload)
            self._last_span[thread] = (event.name, identity, duration)

    def _flush(self, thread: int) -> None:
        waiting = self._waiting_record.pop(thread, None)
        if waiting is not None:
            self._write(*waiting)

    # -- records --

    def _fields(self, event: Event) -> dict[str, Any]:
        payload = event.payload
        fields: dict[str, Any] = {"event": event.name}
        for key in FIELDS:
            if key in payload:
                fields[key] = self._cut(payload[key])
        return fields

    def _cut(self, value: Any) -> Any:
        if isinstance(value, str) and len(value) > self.max_length:
            cut = len(value) - self.max_length
            return f"{value[: self.max_length]}... [{cut} more characters]"
        return value

    def _write(self, level: int, name: str, fields: dict[str, Any]) -> None:
        tags = _tags.get()
        if tags:
            fields = {**tags, **fields}
        logger = self.logger
        try:
            # makeRecord + handle is logger.log without the caller lookup:
            # the caller would always be this method, so it is not worth a
            # stack walk per record.
            record = logger.makeRecord(
                logger.name,
                level,
                _THIS_FILE,
                0,
                "%s %s",
                (name, _Description(name, fields)),
                None,
                "_write",
                fields,
            )
            logger.handle(record)
        except Exception:
            # A handler that raises out of emit() (logging's own handlers
            # never do) must not reach the runner; there is nowhere left to
            # report it.
            self.failures += 1


def _identity(fields: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(fields.get(key) for key in _IDENTITY)


class _Description:
    """The human half of a message, built only if a handler formats the record."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.name = name
        self.fields = fields

    def __str__(self) -> str:
        f = self.fields
        subject = _subject(f)
        name = self.name
        error = f"{f.get('error_class')}: {f.get('error_message')}"
        if name == "task.retry":
            return (
                f"{subject} failed with {error}; retry {f.get('attempt')} of "
                f"{_retries(f)} in {f.get('delay_seconds')}s"
            )
        if name.endswith(".error"):
            return f"{subject} failed with {error}"
        if name == "task.skip":
            return f"{subject} skipped ({f.get('reason')})"
        if name == "task.enqueue":
            return f"{subject} enqueued {f.get('sub_job_count')} sub-job(s)"
        if name.startswith("throttle."):
            return f"{f.get('concurrency_key')} (limit {f.get('concurrency_limit')})"
        if name == "dependent.reschedule":
            return (
                f"{subject} rescheduled in {f.get('reschedule_delay')}s after "
                f"{f.get('poll_count')} poll(s) for {f.get('dependent_task_name')}"
            )
        if name.startswith("dependent."):
            return f"{subject} waits for {f.get('dependent_task_name')}"
        if name.startswith("queue."):
            return f"queue {f.get('queue_name')}"
        if name == "dry_run.skip":
            what = f.get("dry_run_name") or f"#{f.get('dry_run_index')}"
            return f"{subject} skipped {what} (dry run)"
        return subject


def _subject(f: Mapping[str, Any]) -> str:
    text = str(f.get("job_name", "?"))
    if f.get("task_name") is not None:
        text += f".{f['task_name']}"
    if f.get("each_index") is not None:
        text += f"[{f['each_index']}]"
    return f"{text} (job {f.get('job_id')})"


def _retries(f: Mapping[str, Any]) -> Any:
    total = f.get("max_attempts")
    return total - 1 if isinstance(total, int) else "?"
