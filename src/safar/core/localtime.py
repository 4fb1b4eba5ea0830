"""Local wall-clock time in a customer's timezone, for quiet hours and ``wait: {until: ...}``.

Instants are integer milliseconds since the epoch (UTC). Conversions use :mod:`zoneinfo`, so
they are right across daylight-saving changes:

- a local time skipped by a spring-forward (02:30 on 2026-03-08 in New York) means the first
  instant after the gap (03:00 EDT);
- a local time repeated by a fall-back (01:30 on 2026-11-01 in New York) means its first
  occurrence (01:30 EDT). A day's ``HH:MM`` happens once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

_SECOND: Final = timedelta(seconds=1)
_EPOCH: Final = datetime(1970, 1, 1)
#: Names the host resolves to its own zone: the result would depend on the machine.
_HOST_NAMES: Final = frozenset({"localtime", "posixrules"})


def parse_hhmm(text: str) -> tuple[int, int]:
    """``"HH:MM"`` (24-hour, two digits each) as ``(hour, minute)``; ``ValueError`` otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and hh.isdigit() and mm.isdigit()):
        raise ValueError(f"{text!r} is not a time of day; write HH:MM, e.g. 08:00 or 21:30")
    hour, minute = int(hh), int(mm)
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day; hours go 00-23, minutes 00-59")
    return hour, minute


@lru_cache(maxsize=1024)
def _load(name: str) -> ZoneInfo | None:
    # Failures are cached too: the name comes from a customer trait and repeats.
    if name in _HOST_NAMES:
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # bad key, unknown zone, a directory such as "Asia"
        return None


def zone(name: object, default: str = "UTC") -> ZoneInfo:
    """The IANA zone ``name`` (e.g. a ``timezone`` trait), or ``default`` when ``name`` is not a
    known zone name (missing, not a string, misspelt).

    Raises ``ValueError`` when ``default`` is not a known zone either: that is a configuration
    error, not a customer's.
    """
    if isinstance(name, str) and name:
        found = _load(name)
        if found is not None:
            return found
    fallback = _load(default)
    if fallback is None:
        raise ValueError(f"default timezone {default!r} is not an IANA zone name, e.g. UTC")
    return fallback


def _resolve(tz: ZoneInfo | str) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else zone(tz)


def local_clock(now_ms: int, tz: ZoneInfo | str) -> tuple[int, int, int]:
    """``(hour, minute, weekday)`` on the wall clock in ``tz`` at ``now_ms``; Monday is 0."""
    local = datetime.fromtimestamp(now_ms // 1000, _resolve(tz))
    return local.hour, local.minute, local.weekday()


def utc_text(ms: int) -> str:
    """``2026-11-20 10:00 UTC``: an instant as people read it in explanations."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _offset(seconds: int, tz: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(seconds, tz).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset // _SECOND


def _offset_of(naive: datetime, fold: int, tz: ZoneInfo) -> int:
    offset = naive.replace(tzinfo=tz, fold=fold).utcoffset()
    assert offset is not None
    return offset // _SECOND


def _instant(day: date, hour: int, minute: int, tz: ZoneInfo) -> int:
    """The instant (seconds) the wall clock in ``tz`` shows ``hour:minute`` on ``day``."""
    naive = datetime(day.year, day.month, day.day, hour, minute)
    wall = (naive - _EPOCH) // _SECOND
    # fold=0 takes the offset before a transition, fold=1 the one after (PEP 495).
    before = wall - _offset_of(naive, 0, tz)
    after = wall - _offset_of(naive, 1, tz)
    if before <= after:
        return before  # a normal time, or the first occurrence of a repeated one
    # In a gap: every instant in (after, before] is past it; the transition is the first
    # instant whose offset is no longer the pre-gap one. Transitions fall on whole seconds.
    pre_gap = _offset(after, tz)
    low, high = after, before
    while high - low > 1:
        mid = (low + high) // 2
        if _offset(mid, tz) == pre_gap:
            low = mid
        else:
            high = mid
    return high


def next_local_time(now_ms: int, hhmm: str, tz: ZoneInfo | str) -> int:
    """The first instant (ms) strictly after ``now_ms`` at which the wall clock in ``tz`` shows
    ``hhmm`` (``"HH:MM"``), DST-safe as the module docstring describes.

    ``tz`` is a zone or a zone name; an unknown name means UTC (use :func:`zone` to choose
    another fallback).
    """
    hour, minute = parse_hhmm(hhmm)
    tzinfo = _resolve(tz)
    today = datetime.fromtimestamp(now_ms // 1000, tzinfo).date()
    # Starting a day early costs one conversion and spares reasoning about fall-backs that
    # cross midnight; a whole skipped day (Samoa, 2011-12-30) can push the answer two days on.
    for days in range(-1, 3):
        at = _instant(today + timedelta(days=days), hour, minute, tzinfo) * 1000
        if at > now_ms:
            return at
    raise AssertionError("unreachable: a wall time recurs within two days")
