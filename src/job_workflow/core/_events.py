"""The event bus every part of the library reports through.

Events are dispatched only when someone listens: emitters ask
``bus._listening`` (or :meth:`EventBus.wants`) before they build a payload,
so a workflow with no subscriber pays one attribute read per event. A
handler that raises is logged and skipped; it never changes the outcome of
a workflow.

Besides subscribers, the library's own recorders (the simulator's trace)
attach as *taps*: called with the emitter's payload itself, before any
handler, with no :class:`Event` built and no copy made.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

_log = logging.getLogger("job_workflow")


class _EventFields(NamedTuple):
    name: str
    payload: dict[str, Any]
    duration_ms: float | None


class Event(_EventFields):
    """One event: its name, its payload, and for spans their duration.

    Immutable like a frozen dataclass, but a tuple: the bus builds one per
    event for every handler to share, and a simulation emits tens of
    thousands (the bus builds them without this ``__new__``).
    """

    __slots__ = ()

    def __new__(
        cls,
        name: str,
        payload: dict[str, Any] | None = None,
        duration_ms: float | None = None,
    ) -> Event:
        return super().__new__(
            cls, name, {} if payload is None else payload, duration_ms
        )


_new_event = cast(
    Callable[[tuple[str, dict[str, Any], float | None]], Event],
    functools.partial(tuple.__new__, Event),
)


Handler = Callable[[Event], Any]
Tap = Callable[[str, dict[str, Any], float | None], None]


class Subscription:
    """A registered handler; call :meth:`unsubscribe` to stop it."""

    __slots__ = ("_bus", "handler", "pattern")

    def __init__(self, bus: EventBus, pattern: str, handler: Handler) -> None:
        self._bus = bus
        self.pattern = pattern
        self.handler = handler

    def unsubscribe(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()


class EventBus:
    """Name/glob subscriptions with a per-name cache of matching handlers."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._cache: dict[str, tuple[Handler, ...]] = {}
        self._taps: tuple[Tap, ...] = ()
        # Whether anyone (subscriber or tap) hears events at all.
        self._listening = False
        self._lock = threading.Lock()

    def subscribe(self, pattern: str, handler: Handler) -> Subscription:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pattern must be a non-empty str, got {pattern!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        subscription = Subscription(self, pattern, handler)
        with self._lock:
            self._subscriptions.append(subscription)
            self._cache = {}
            self._listening = True
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            self._cache = {}
            self._listening = bool(self._subscriptions or self._taps)

    def _tap(self, tap: Tap) -> Callable[[], None]:
        """Call ``tap(name, payload, duration_ms)`` for every event; returns
        a callable that detaches it.

        For the library's own recorders, which must hear every event at the
        cost of as little as possible: a tap runs before the handlers and
        gets the emitter's payload, which it may read during the call only
        (the emitter may reuse it). A tap must not raise.
        """
        with self._lock:
            self._taps = (*self._taps, tap)
            self._listening = True

        def detach() -> None:
            with self._lock:
                taps = list(self._taps)
                if tap in taps:
                    taps.remove(tap)
                self._taps = tuple(taps)
                self._listening = bool(self._subscriptions or self._taps)

        return detach

    def handlers(self, name: str) -> tuple[Handler, ...]:
        cache = self._cache
        found = cache.get(name)
        if found is None:
            found = tuple(
                s.handler
                for s in self._subscriptions
                if fnmatch.fnmatchcase(name, s.pattern)
            )
            cache[name] = found
        return found

    def wants(self, name: str) -> bool:
        return bool(self._taps) or (
            bool(self._subscriptions) and bool(self.handlers(name))
        )

    def emit(
        self,
        name: str,
        payload: dict[str, Any],
        duration_ms: float | None = None,
        *,
        shared: bool = False,
    ) -> None:
        """Deliver one event. ``shared``: the emitter keeps using ``payload``,
        so the handlers get a copy of it (one, made only when some listen)."""
        for tap in self._taps:
            tap(name, payload, duration_ms)
        if not self._subscriptions:
            return
        handlers = self._cache.get(name)
        if handlers is None:
            handlers = self.handlers(name)
        if not handlers:
            return
        if shared:
            payload = dict(payload)
        event = _new_event((name, payload, duration_ms))
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                _report_handler_failure(name)

    @contextmanager
    def capture(self, pattern: str = "*") -> Iterator[list[Event]]:
        """Collect every matching event emitted inside the block."""
        captured: list[Event] = []
        subscription = self.subscribe(pattern, captured.append)
        try:
            yield captured
        finally:
            subscription.unsubscribe()


Carrier = Callable[[], dict[str, str]]
_carriers: list[Carrier] = []


def register_carrier(carrier: Carrier) -> Callable[[], None]:
    """Add a source of context to carry inside every job enqueued from here.

    The OpenTelemetry subscriber registers one that injects the W3C trace
    context, so a sub-job's spans join its parent's trace on any worker. The
    returned callable removes the carrier again.
    """
    _carriers.append(carrier)
    return lambda: _carriers.remove(carrier) if carrier in _carriers else None


def collect_carried() -> dict[str, str]:
    """The merged context of every registered carrier (empty when none)."""
    carried: dict[str, str] = {}
    for carrier in list(_carriers):
        try:
            carried.update(carrier())
        except Exception:
            _log.exception("context carrier failed", extra={"event": "carrier.error"})
    return carried


def _report_handler_failure(name: str) -> None:
    # Logging can fail too (a broken handler on our own logger); a workflow
    # must survive that as well, so this report is best effort.
    with contextlib.suppress(Exception):
        _log.exception(
            "event handler failed",
            extra={"event": "subscriber.error", "event_name": name},
        )


bus = EventBus()
subscribe = bus.subscribe
capture = bus.capture
