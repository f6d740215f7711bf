"""Virtual time for the simulator: it moves only when the simulation says so."""

from __future__ import annotations

import random


class VirtualClock:
    """A clock whose time jumps from event to event and never goes backwards.

    The runner never sleeps on it directly (it yields ``Sleep`` effects that
    the simulation schedules); ``sleep`` exists for code that waits inside a
    task body, such as ``ctx.throttle``, and simply moves time forward.
    """

    def __init__(self, start: float, rng: random.Random) -> None:
        self._start = start
        self._now = start
        self._random = rng

    @property
    def random(self) -> random.Random:
        return self._random

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    def advance_to(self, moment: float) -> None:
        if moment > self._now:
            self._now = moment
