"""Timestamps and durations: parsing, formatting, arithmetic in range, calendar accessors.

Python's ``datetime`` and ``timedelta`` carry microseconds, so CEL's nanoseconds are truncated
to microseconds on the way in. Ranges are CEL's: timestamps from year 1 to 9999 (what
``datetime`` allows anyway), durations within ±315,576,000,000 seconds (about 10,000 years).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from safar.cel.errors import CelEvalError
from safar.cel.values import aware

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DURATION: Final = timedelta(seconds=315_576_000_000)
_MICROSECOND: Final = timedelta(microseconds=1)
_SECOND: Final = timedelta(seconds=1)
_MAX_MICROS: Final = MAX_DURATION // _MICROSECOND

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_NANOS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_FIXED_ZONE = re.compile(r"([+-])(\d{2}):(\d{2})", re.ASCII)
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,3}")


# Profiles keep timestamps as strings, so the same few are parsed on every evaluation; results
# are immutable and failures are not cached, so a cache is safe and bounded.
@lru_cache(maxsize=4096)
def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp with a zone or ``Z``, as an aware UTC datetime."""
    match = _TIMESTAMP.fullmatch(text) if len(text) <= 40 else None
    if match is None:
        raise CelEvalError(f"timestamp {_quote(text)} is not RFC 3339, e.g. 2026-01-31T09:30:00Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micros = int((match[7] or "0").ljust(6, "0")[:6])
    offset = timedelta(0)
    if match[9]:
        offset = timedelta(hours=int(match[10]), minutes=int(match[11]))
        if match[9] == "-":
            offset = -offset
    try:
        local = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CelEvalError(f"timestamp {_quote(text)} is out of range or invalid") from None


def timestamp_from_seconds(seconds: int) -> datetime:
    """The timestamp ``seconds`` after the Unix epoch."""
    try:
        return EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise CelEvalError(f"timestamp of {seconds} seconds is out of range") from None


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` and no trailing zeros in the fraction, as cel-go prints it."""
    utc = aware(value).astimezone(UTC)
    # Not strftime: its %Y does not pad years before 1000 on every platform.
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """A Go-style duration: ``"1h30m"``, ``"3600s"``, ``"1.5h"``, ``"-2m"``, ``"250ms"``."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if len(text) > 64 or not body:
        raise _bad_duration(text)
    if body == "0":
        return timedelta(0)
    nanos = 0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None or not (match[1] or match[2]):
            raise _bad_duration(text)
        unit = _NANOS[match[3]]
        fraction = match[2] or ""
        nanos += int(match[1] or "0") * unit
        if fraction:
            nanos += int(fraction) * unit // 10 ** len(fraction)
        position = match.end()
    micros = nanos // 1000
    if micros > _MAX_MICROS:
        raise CelEvalError(f"duration {_quote(text)} is out of range")
    return timedelta(microseconds=-micros if text[0] == "-" else micros)


def _bad_duration(text: str) -> CelEvalError:
    return CelEvalError(
        f"duration {_quote(text)} is not valid; use a number and unit (h, m, s, ms, us, ns)"
        ' such as "1h30m", "90s" or "1.5h"'
    )


def format_duration(value: timedelta) -> str:
    """Seconds with a fraction only when needed, as cel-go prints it: ``"5400s"``, ``"1.5s"``."""
    micros = value // _MICROSECOND
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), 1_000_000)
    text = f"{sign}{whole}"
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return text + "s"


def check_duration(value: timedelta) -> timedelta:
    """``value`` if within CEL's duration range, else an evaluation error."""
    if -MAX_DURATION <= value <= MAX_DURATION:
        return value
    raise CelEvalError("duration is out of range (more than 315,576,000,000 seconds)")


def check_timestamp(compute: Any, *args: Any) -> datetime:
    """``compute(*args)`` as a timestamp, an evaluation error if it leaves year 1 to 9999."""
    try:
        result: datetime = compute(*args)
    except OverflowError:
        raise CelEvalError("timestamp is out of range (years 1 to 9999)") from None
    return result


def seconds_since_epoch(value: datetime) -> int:
    """Whole seconds since the Unix epoch, rounded down, as CEL's ``int(timestamp)``."""
    return (aware(value) - EPOCH) // _SECOND


def duration_in(value: timedelta, unit_micros: int) -> int:
    """Whole units in ``value``, truncated toward zero (``getHours`` and friends)."""
    micros = value // _MICROSECOND
    whole = abs(micros) // unit_micros
    return whole if micros >= 0 else -whole


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """``"UTC"``, a fixed offset like ``"+03:30"`` or an IANA name like ``"Asia/Tehran"``."""
    fixed = _FIXED_ZONE.fullmatch(name)
    if fixed:
        offset = timedelta(hours=int(fixed[2]), minutes=int(fixed[3]))
        return timezone(-offset if fixed[1] == "-" else offset)
    if name == "UTC":
        return UTC
    # The pattern also keeps path tricks ("../", absolute paths) away from the zone database.
    if len(name) <= 64 and _ZONE_NAME.fullmatch(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise CelEvalError(f"unknown time zone {_quote(name)}; use an IANA name like Asia/Tehran")


def local(value: datetime, zone_name: str | None) -> datetime:
    """``value`` as wall-clock time in the zone (UTC when no zone is given)."""
    if zone_name is None:
        return aware(value).astimezone(UTC)
    try:
        return aware(value).astimezone(zone(zone_name))
    except OverflowError:
        raise CelEvalError("timestamp is out of range in that time zone") from None


def _quote(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")
