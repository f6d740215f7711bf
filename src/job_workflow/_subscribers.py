"""What the log and OpenTelemetry subscribers share: subscribing to the bus.

``subscribe()`` and ``unsubscribe()`` work on an instance, or on the class,
where they act on one default instance of that class (made on first use)::

    LogSubscriber.subscribe()                 # the class's default instance
    LogSubscriber(logger=my_logger).subscribe()
    with LogSubscriber(logger=my_logger):     # inside the block only
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

from job_workflow.core._events import Event, Subscription, bus

S = TypeVar("S", bound="Subscriber")
_defaults_lock = threading.Lock()


class _OnInstanceOrDefault:
    """A method that, looked up on the class, runs on the class's default instance.

    The call returns the instance it acted on, so
    ``sub = OpenTelemetrySubscriber(tracer_provider=p).subscribe()`` reads well.
    """

    def __init__(self, method: Callable[[Any], None]) -> None:
        self._method = method
        self.__doc__ = method.__doc__

    def __get__(self, instance: S | None, owner: type[S]) -> Callable[[], S]:
        target = instance if instance is not None else owner.default()
        method = self._method

        def call() -> S:
            method(target)
            return target

        call.__doc__ = self.__doc__
        return call


class Subscriber:
    """Base of the bus subscribers: one set of subscriptions, made at most once."""

    _defaults: ClassVar[dict[type[Subscriber], Subscriber]] = {}

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._subscribe_lock = threading.Lock()

    @classmethod
    def default(cls: type[S]) -> S:
        """The instance that ``Class.subscribe()`` and ``Class.unsubscribe()`` use."""
        with _defaults_lock:
            found = Subscriber._defaults.get(cls)
            if found is None:
                found = Subscriber._defaults[cls] = cls()
        return cast(S, found)

    @property
    def subscribed(self) -> bool:
        return bool(self._subscriptions)

    def _subscribe(self) -> None:
        """Start receiving events (a second call does nothing)."""
        with self._subscribe_lock:
            if self._subscriptions:
                return
            self._started()
            self._subscriptions = [
                bus.subscribe(pattern, handler) for pattern, handler in self._handlers()
            ]

    def _unsubscribe(self) -> None:
        """Stop receiving events (safe to call when not subscribed)."""
        with self._subscribe_lock:
            subscriptions, self._subscriptions = self._subscriptions, []
            for subscription in subscriptions:
                subscription.unsubscribe()
            if subscriptions:
                self._stopped()

    subscribe = _OnInstanceOrDefault(_subscribe)
    unsubscribe = _OnInstanceOrDefault(_unsubscribe)

    def __enter__(self: S) -> S:
        """``with Subscriber(...):`` subscribes inside the block only."""
        self._subscribe()
        return self

    def __exit__(self, *exc: object) -> None:
        self._unsubscribe()

    # -- what subclasses provide --

    def _handlers(self) -> list[tuple[str, Callable[[Event], Any]]]:
        raise NotImplementedError

    def _started(self) -> None:
        """Called before the first subscription is made."""

    def _stopped(self) -> None:
        """Called after the last subscription is removed."""
