"""Task option values, normalised and validated when a class is defined.

Each ``from_option`` accepts the user-facing forms of one ``@task`` option
and returns a frozen policy object, or raises InvalidOptionError naming the
option, the value and what was expected. Policies that involve time take
``now`` or a random source as arguments so they can be tested with numbers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from job_workflow.errors import InvalidOptionError

Predicate = Callable[[Any], bool]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_keys(option: str, value: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidOptionError(
            option,
            f"unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}",
        )


def _number(option: str, value: Any, *, minimum: float, strict: bool = False) -> float:
    if not _is_number(value) or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InvalidOptionError(option, f"expected a number {bound}, got {value!r}")
    return float(value)


def _integer(option: str, value: Any, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidOptionError(option, f"expected an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed iteration is tried again, and how long to wait."""

    count: int = 0
    strategy: Literal["linear", "exponential"] = "exponential"
    base_delay: float = 1.0
    jitter: bool = False

    @property
    def max_attempts(self) -> int:
        return self.count + 1

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        if self.strategy == "exponential":
            base = self.base_delay * 2 ** (retry - 1)
        else:
            base = self.base_delay
        if self.jitter:
            return float(base * (0.5 + rng.random()))
        return float(base)

    @classmethod
    def from_option(cls, value: Any) -> RetryPolicy:
        if value is None:
            return cls()
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(count=_integer("retry", value, minimum=0))
        if not isinstance(value, Mapping):
            raise InvalidOptionError(
                "retry", f"expected an int or a dict, got {value!r}"
            )
        _check_keys("retry", value, {"count", "strategy", "base_delay", "jitter"})
        strategy = value.get("strategy", "exponential")
        if strategy not in ("linear", "exponential"):
            raise InvalidOptionError(
                "retry.strategy",
                f"expected 'linear' or 'exponential', got {strategy!r}",
            )
        jitter = value.get("jitter", False)
        if not isinstance(jitter, bool):
            raise InvalidOptionError("retry.jitter", f"expected a bool, got {jitter!r}")
        return cls(
            count=_integer("retry.count", value.get("count", 3), minimum=0),
            strategy=strategy,
            base_delay=_number(
                "retry.base_delay", value.get("base_delay", 1), minimum=0
            ),
            jitter=jitter,
        )


DEFAULT_THROTTLE_TTL = 180.0


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    """A semaphore a task holds while it runs; ``key`` None means automatic."""

    limit: int
    key: str | None = None
    ttl: float = DEFAULT_THROTTLE_TTL

    @classmethod
    def from_option(cls, value: Any) -> ThrottleSpec | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(limit=_integer("throttle", value, minimum=1))
        if not isinstance(value, Mapping):
            raise InvalidOptionError(
                "throttle", f"expected an int limit or a dict, got {value!r}"
            )
        _check_keys("throttle", value, {"key", "limit", "ttl"})
        if "limit" not in value:
            raise InvalidOptionError("throttle", "the dict form needs a 'limit'")
        key = value.get("key")
        if key is not None and (not isinstance(key, str) or not key):
            raise InvalidOptionError("throttle.key", f"expected a str, got {key!r}")
        return cls(
            limit=_integer("throttle.limit", value["limit"], minimum=1),
            key=key,
            ttl=_number(
                "throttle.ttl",
                value.get("ttl", DEFAULT_THROTTLE_TTL),
                minimum=0,
                strict=True,
            ),
        )


@dataclass(frozen=True, slots=True)
class EnqueueSpec:
    """Whether iterations become sub-jobs, on which queue, how many at once."""

    condition: bool | Predicate = False
    queue: str | None = None
    concurrency: int | None = None

    def enabled(self, ctx: Any) -> bool:
        if callable(self.condition):
            return bool(self.condition(ctx))
        return self.condition

    @property
    def declared(self) -> bool:
        """True when the task may enqueue at all (for graphs and reports)."""
        return self.condition is not False

    @classmethod
    def from_option(cls, value: Any) -> EnqueueSpec:
        if value is None or value is False:
            return cls()
        if value is True or callable(value):
            return cls(condition=value)
        if not isinstance(value, Mapping):
            raise InvalidOptionError(
                "enqueue",
                f"expected a bool, a callable or a dict, got {value!r}",
            )
        _check_keys("enqueue", value, {"condition", "queue", "concurrency"})
        condition = value.get("condition", True)
        if not (isinstance(condition, bool) or callable(condition)):
            raise InvalidOptionError(
                "enqueue.condition", f"expected a bool or callable, got {condition!r}"
            )
        queue = value.get("queue")
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise InvalidOptionError("enqueue.queue", f"expected a str, got {queue!r}")
        concurrency = value.get("concurrency")
        if concurrency is not None:
            concurrency = _integer("enqueue.concurrency", concurrency, minimum=1)
        return cls(condition=condition, queue=queue, concurrency=concurrency)


@dataclass(frozen=True, slots=True)
class DependencyWait:
    """How a task waits for enqueued dependencies (see docs/dependency-wait)."""

    poll_timeout: float = 0.0
    poll_interval: float = 5.0
    reschedule_delay: float = 5.0

    @property
    def polling_only(self) -> bool:
        return self.poll_timeout <= 0

    @classmethod
    def from_option(cls, value: Any) -> DependencyWait:
        if value is None:
            return cls()
        if isinstance(value, bool):
            raise InvalidOptionError(
                "dependency_wait",
                f"{value!r} is not supported; use an int (poll_timeout seconds) "
                "or a dict such as {'poll_timeout': 30}",
            )
        if _is_number(value):
            return cls(poll_timeout=_number("dependency_wait", value, minimum=0))
        if not isinstance(value, Mapping):
            raise InvalidOptionError(
                "dependency_wait", f"expected an int or a dict, got {value!r}"
            )
        _check_keys(
            "dependency_wait",
            value,
            {"poll_timeout", "poll_interval", "reschedule_delay"},
        )
        return cls(
            poll_timeout=_number(
                "dependency_wait.poll_timeout", value.get("poll_timeout", 0), minimum=0
            ),
            poll_interval=_number(
                "dependency_wait.poll_interval",
                value.get("poll_interval", 5),
                minimum=0,
                strict=True,
            ),
            reschedule_delay=_number(
                "dependency_wait.reschedule_delay",
                value.get("reschedule_delay", 5),
                minimum=0,
            ),
        )


def bool_or_callable(option: str, value: Any) -> bool | Predicate:
    if isinstance(value, bool) or callable(value):
        return cast("bool | Predicate", value)
    raise InvalidOptionError(option, f"expected a bool or a callable, got {value!r}")


def optional_callable(option: str, value: Any) -> Callable[[Any], Any] | None:
    if value is None or callable(value):
        return cast("Callable[[Any], Any] | None", value)
    raise InvalidOptionError(option, f"expected a callable (ctx) -> ..., got {value!r}")


def timeout_option(value: Any) -> float | None:
    if value is None:
        return None
    return _number("timeout", value, minimum=0, strict=True)


def output_option(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidOptionError(
            "output", f"expected a dict of field name to type, got {value!r}"
        )
    return dict(value)
