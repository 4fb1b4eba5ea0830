"""Timestamp and duration accessors: ``getFullYear``, ``getHours``, … with an optional zone.

Timestamps read in UTC unless a zone is given (``now.getHours("Asia/Tehran")``); the zero-based
ones (``getMonth``, ``getDayOfMonth``, ``getDayOfYear``, ``getDayOfWeek`` with 0 for Sunday) follow
CEL, not Python. On a duration, ``getHours``/``getMinutes``/``getSeconds``/``getMilliseconds``
give the whole duration in that unit, truncated toward zero, as cel-go does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from safar.cel.temporal import duration_in, local
from safar.cel.values import kind, no_overload

# Microseconds per unit for the duration overloads.
_MICROS: Final = {
    "getHours": 3_600_000_000,
    "getMinutes": 60_000_000,
    "getSeconds": 1_000_000,
    "getMilliseconds": 1_000,
}


def _field(name: str, read: Callable[[datetime], int]) -> Callable[..., int]:
    unit = _MICROS.get(name)

    def accessor(value: Any, zone_name: Any = None) -> int:
        k = kind(value)
        if k is datetime:
            if zone_name is None:
                return read(local(value, None))
            if kind(zone_name) is str:
                return read(local(value, zone_name))
        elif k is timedelta and unit is not None and zone_name is None:
            return duration_in(value, unit)
        if zone_name is None:
            raise no_overload(name, value)
        raise no_overload(name, value, zone_name)

    accessor.__name__ = name
    return accessor


ACCESSORS: Final = {
    "getFullYear": _field("getFullYear", lambda d: d.year),
    "getMonth": _field("getMonth", lambda d: d.month - 1),
    "getDayOfMonth": _field("getDayOfMonth", lambda d: d.day - 1),
    "getDate": _field("getDate", lambda d: d.day),
    "getDayOfWeek": _field("getDayOfWeek", lambda d: d.isoweekday() % 7),
    "getDayOfYear": _field("getDayOfYear", lambda d: d.timetuple().tm_yday - 1),
    "getHours": _field("getHours", lambda d: d.hour),
    "getMinutes": _field("getMinutes", lambda d: d.minute),
    "getSeconds": _field("getSeconds", lambda d: d.second),
    "getMilliseconds": _field("getMilliseconds", lambda d: d.microsecond // 1000),
}
"""Accessor name to ``accessor(value, zone=None)``."""
