"""Recurring schedules declared with ``@schedule`` on a workflow class.

Expressions are five-field cron or a few English phrases that we translate to
cron, so every schedule has one normal form (``Schedule.cron``) that the SQL
scheduler and the simulator can both fire from.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from job_workflow.errors import InvalidOptionError

_EVERY_N = re.compile(r"^every\s+(\d+)\s+(minute|hour|day)s?$")
_EVERY_ONE = re.compile(r"^every\s+(minute|hour|day)$")
_EVERY_DAY_AT = re.compile(r"^every\s+day\s+at\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?$")


@dataclass(frozen=True, slots=True)
class Schedule:
    """One recurring run of a workflow with fixed arguments."""

    key: str
    expression: str
    cron: str
    args: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    description: str | None = None

    def next_after(self, moment: _dt.datetime) -> _dt.datetime:
        """The first fire time strictly after ``moment``."""
        result: _dt.datetime = croniter(self.cron, moment).get_next(_dt.datetime)
        return result


def to_cron(expression: str) -> str:
    """Normalise a schedule expression to five-field cron, or raise."""
    text = " ".join(expression.strip().lower().split())
    cron = _phrase_to_cron(text) or text
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise InvalidOptionError(
            "schedule",
            f"cannot parse {expression!r}: expected five-field cron such as "
            "'0 9 * * *' or a phrase such as 'every 5 minutes', 'every hour', "
            "'every day at 9am'",
        )
    return cron


def _phrase_to_cron(text: str) -> str | None:
    if match := _EVERY_ONE.match(text):
        return _every(1, match.group(1))
    if match := _EVERY_N.match(text):
        return _every(int(match.group(1)), match.group(2))
    if match := _EVERY_DAY_AT.match(text):
        return _daily_at(match.group(1), match.group(2), match.group(3))
    return None


def _every(n: int, unit: str) -> str | None:
    limits = {"minute": 59, "hour": 23, "day": 31}
    if not 1 <= n <= limits[unit]:
        return None
    step = "*" if n == 1 else f"*/{n}"
    if unit == "minute":
        return f"{step} * * * *"
    if unit == "hour":
        return f"0 {step} * * *"
    return f"0 0 {step} * *"


def _daily_at(
    hour_text: str, minute_text: str | None, meridiem: str | None
) -> str | None:
    hour, minute = int(hour_text), int(minute_text or 0)
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return f"{minute} {hour} * * *"
