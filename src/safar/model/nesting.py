"""How deeply JSON taken in from outside may nest (objects and arrays).

Decoding, encoding, comparing and rendering nested values all recurse, and each stops at
Python's recursion limit: how deep it gets depends on how deep the stack already is. Without a
limit of its own, the API would accept an event nested a few hundred levels deep that a
processor, decoding it further down its stack, could never read, and would retry for ever; and
a body nested past the limit raised ``RecursionError``, a 500 that SDKs retry. So anything
nested deeper than :data:`MAX_NESTING` is refused where it comes in, far below every such limit
and far above what SDKs send (an event's ``context.library`` is three levels deep).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from safar.errors import ValidationError

MAX_NESTING: Final = 64


def nesting(value: Any) -> int:
    """How many levels of objects and arrays ``value`` holds (0 for a scalar), without
    recursing."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_nesting(raw: bytes, location: str) -> None:
    """Raise :class:`ValidationError` at ``location`` when the JSON text ``raw`` nests deeper
    than :data:`MAX_NESTING`. Text that is not JSON passes: its decoder reports it."""
    # No more brackets than the limit cannot nest deeper: nearly every document ends here.
    # ``bytes.count`` takes about 0.7 ns a byte here and ``find`` half that, so the arrays most
    # events lack are looked for before they are counted.
    openers = raw.count(b"{")
    if raw.find(b"[") >= 0:
        openers += raw.count(b"[")
    if openers <= MAX_NESTING:
        return
    try:
        value = msgspec.json.decode(raw)
    except RecursionError:
        raise too_deep(location) from None
    except msgspec.DecodeError:
        return
    if nesting(value) > MAX_NESTING:
        raise too_deep(location)


def too_deep(location: str) -> ValidationError:
    return ValidationError(
        f"nests objects and arrays more than {MAX_NESTING} levels deep", location
    )
