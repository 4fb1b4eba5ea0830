"""Cron expressions for scheduled journey entry: five fields, in UTC.

``minute hour day-of-month month day-of-week``, each ``*``, a number, a range ``1-5``, a step
``*/15`` or ``1-30/2`` or ``5/15`` (from 5 to the end), or a comma list of these. Months may be
written ``jan``-``dec`` and weekdays ``sun``-``sat`` (any case); weekday 0 and 7 are Sunday.
``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly`` and ``@yearly``
(``@annually``) are shorthands.

As in Vixie cron (and POSIX), when both day-of-month and day-of-week are restricted a day matches
when *either* does: ``0 9 1 * mon`` fires on the 1st and on every Monday. A field that starts
with ``*`` counts as unrestricted for this rule, so ``0 9 */2 * mon`` means odd days that are
Mondays.
"""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final

_MONTHS: Final = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_WEEKDAYS: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: (name, lowest, highest, names for lowest onwards)
_FIELDS: Final = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
#: Every valid expression fires within this many years (29 February on a given weekday: 28).
_SEARCH_YEARS: Final = 30


class CronError(ValueError):
    """A cron expression that cannot be read, or that never fires."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: the allowed values of each field, sorted."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    #: 0 is Sunday.
    weekdays: tuple[int, ...]
    #: Whether day-of-month / day-of-week started with ``*`` (see the module docstring).
    any_day: bool
    any_weekday: bool

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Whether the schedule fires on this date (at some time)."""
        if month not in self.months:
            return False
        in_month = day in self.days
        in_week = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, after_ms: int) -> int:
        """The first firing time strictly after ``after_ms`` (ms since the epoch, UTC)."""
        t = _EPOCH + timedelta(minutes=after_ms // 60_000 + 1)
        limit = t.year + _SEARCH_YEARS
        while t.year <= limit:
            if not self.day_matches(t.year, t.month, t.day):
                t = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
                continue
            hour = _first_at_least(self.hours, t.hour)
            if hour is None:
                t = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0)
            minute = _first_at_least(self.minutes, t.minute)
            if minute is None:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return (t.replace(minute=minute) - _EPOCH) // _MS
        raise CronError("the schedule never fires")  # parse_cron refuses such expressions


def _first_at_least(values: tuple[int, ...], low: int) -> int | None:
    index = bisect.bisect_left(values, low)
    return values[index] if index < len(values) else None


@lru_cache(maxsize=256)
def parse_cron(expr: str) -> Cron:
    """Read ``expr``; :class:`CronError` says which field is wrong and why."""
    text = _MACROS.get(expr.strip().lower(), expr)
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            f"bad cron expression {expr!r}: it needs 5 fields (minute hour day-of-month month "
            f"day-of-week), e.g. '0 9 * * mon', not {len(fields)}"
        )
    values = [_field(field, *spec) for field, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = sorted({day % 7 for day in values[4]})
    cron = Cron(
        minutes=tuple(values[0]),
        hours=tuple(values[1]),
        days=tuple(values[2]),
        months=tuple(values[3]),
        weekdays=tuple(weekdays),
        any_day=fields[2].startswith("*"),
        any_weekday=fields[4].startswith("*"),
    )
    if cron.any_day or cron.any_weekday:
        # Only day-of-month can rule out every date, e.g. "0 0 30 2 *".
        longest = max(
            29 if month == 2 else calendar.monthrange(2001, month)[1] for month in cron.months
        )
        if cron.days[0] > longest:
            names = ", ".join(_MONTHS[month - 1] for month in cron.months)
            raise CronError(
                f"bad cron expression {expr!r}: it never fires, as day {cron.days[0]} "
                f"does not occur in {names}"
            )
    return cron


def next_after(expr: str, after_ms: int) -> int:
    """The first time ``expr`` fires strictly after ``after_ms``, in ms since the epoch (UTC)."""
    return parse_cron(expr).next_after(after_ms)


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> list[int]:
    found: set[int] = set()
    for part in text.split(","):
        found.update(_part(part, name, low, high, names))
    return sorted(found)


def _part(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> range:
    def bad(why: str) -> CronError:
        return CronError(f"bad {name} {text!r}: {why}")

    span, slash, step_text = text.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
            raise bad("the step after '/' must be a whole number above 0")
        step = int(step_text)
    if span == "*":
        return range(low, high + 1, step)
    first_text, dash, last_text = span.partition("-")
    first = _value(first_text, name, low, high, names)
    if dash:
        last = _value(last_text, name, low, high, names)
        if last < first:
            raise bad(f"a range goes from low to high, e.g. {min(first, last)}-{max(first, last)}")
    else:
        last = high if slash else first
    return range(first, last + 1, step)


def _value(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    lowered = text.strip().lower()
    if lowered in names:
        return low + names.index(lowered)
    if not (lowered.isascii() and lowered.isdigit()):
        known = f" or a name {names[0]}-{names[-1]}" if names else ""
        raise CronError(f"bad {name} {text!r}: use a number {low}-{high}{known}")
    value = int(lowered)
    if not low <= value <= high:
        raise CronError(f"bad {name} {text!r}: out of range {low}-{high}")
    return value
