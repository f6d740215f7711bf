"""Clocks: the real one, and a manual virtual one for tests.

Every wait in the library goes through a clock's ``sleep``, so a test that
installs a :class:`ManualClock` (``job_workflow.use_clock``) never sleeps for
real and can read back each delay from ``clock.sleeps``.
"""

from __future__ import annotations

import random as _random
import threading
import time

__all__ = ["ManualClock", "SystemClock"]


class SystemClock:
    """Wall time, real sleeps, and an unseeded random source."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = _random.Random(seed)

    @property
    def random(self) -> _random.Random:
        return self._random

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """Virtual time that moves only when someone sleeps or calls ``advance``.

    ``sleep`` returns at once after moving time forward, and records the
    requested delay in ``sleeps``. Thread-safe, never goes backwards.
    """

    def __init__(self, start: float = 1_700_000_000.0, seed: int = 0) -> None:
        self._now = float(start)
        self._start = float(start)
        self._random = _random.Random(seed)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    @property
    def random(self) -> _random.Random:
        return self._random

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        if seconds < 0:
            raise ValueError(f"a clock never goes backwards (advance({seconds!r}))")
        with self._lock:
            self._now += seconds
