"""Dotted paths into JSON documents (``properties.revenue``, ``items.0.sku``)."""

from __future__ import annotations

import functools
from typing import Any


def dig(value: Any, path: str) -> Any:
    """The value at ``path`` (keys of objects, indexes of lists), or None when any part is
    missing. The empty path is the value itself."""
    for part in _parts(path):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


@functools.lru_cache(maxsize=10_000)
def _parts(path: str) -> tuple[str, ...]:
    """``path`` split into its parts, remembered: the same few paths are dug into for every
    event."""
    return tuple(path.split(".")) if path else ()
