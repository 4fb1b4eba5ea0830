"""Durations as people write them in definition files: ``90s``, ``30m``, ``1h``, ``3d``, ``2w``,
``1d12h``; stored as integer milliseconds.

A duration is one or more parts, each a whole number and a unit, largest unit first and each
unit at most once: ``w`` (7 days), ``d``, ``h``, ``m``, ``s`` and ``ms``. Spaces between parts are
allowed (``1d 12h``). Days are 24 hours of elapsed time; a wait that should land on a local time
of day uses ``wait: {until: "09:00"}`` instead.
"""

from __future__ import annotations

import re
from typing import Final

#: Unit -> milliseconds, largest first (the order parts must be written in).
UNITS: Final = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
#: The longest duration accepted: about a century; longer is a typo.
MAX_MS: Final = 36_500 * UNITS["d"]

# "ms" before "m" so that 500ms is not read as 500m followed by "s".
_PART: Final = re.compile(r"\s*(\d{1,15})\s*(ms|w|d|h|m|s)", re.ASCII)
_HELP: Final = "use a number and a unit s, m, h, d or w, e.g. 90m or 3d"


def parse_duration(text: str) -> int:
    """Milliseconds in ``text``; ``ValueError`` saying what is wrong and how to write it."""
    if not text.strip():
        raise ValueError(f"bad duration {text!r}: {_HELP}")
    units = list(UNITS)
    total = 0
    position = 0
    last = -1
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        rank = units.index(match[2])
        if rank <= last:
            raise ValueError(
                f"bad duration {text!r}: write each unit once, largest first, e.g. 1d12h"
            )
        last = rank
        total += int(match[1]) * UNITS[match[2]]
    if position == 0 or text[position:].strip():
        raise ValueError(f"bad duration {text!r}: {_HELP}")
    if total > MAX_MS:
        raise ValueError(f"bad duration {text!r}: at most {format_duration(MAX_MS)}")
    return total


def format_duration(ms: int) -> str:
    """``ms`` in the shortest form :func:`parse_duration` reads back: ``1d12h``, ``0s``."""
    if ms < 0:
        raise ValueError(f"a duration cannot be negative: {ms}")
    if ms == 0:
        return "0s"
    parts = []
    for unit, size in UNITS.items():
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
