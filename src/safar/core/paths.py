"""Dotted paths into JSON documents (``properties.revenue``, ``items.0.sku``)."""

from __future__ import annotations

from typing import Any, Final

#: Paths split into their parts: the same few paths are dug into for every event.
_PARTS: dict[str, tuple[str, ...]] = {}
_PARTS_KEPT: Final = 10_000


def dig(value: Any, path: str) -> Any:
    """The value at ``path`` (keys of objects, indexes of lists), or None when any part is
    missing. The empty path is the value itself."""
    parts = _PARTS.get(path)
    if parts is None:
        if len(_PARTS) >= _PARTS_KEPT:
            _PARTS.clear()
        parts = _PARTS[path] = tuple(path.split(".")) if path else ()
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
