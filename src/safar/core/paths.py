"""Dotted paths into JSON documents (``properties.revenue``, ``items.0.sku``)."""

from __future__ import annotations

from typing import Any


def dig(value: Any, path: str) -> Any:
    """The value at ``path`` (keys of objects, indexes of lists), or None when any part is
    missing. The empty path is the value itself."""
    for part in path.split(".") if path else ():
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
