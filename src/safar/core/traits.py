"""Profile traits: last write wins, by the event's time, not by when it arrived.

Each trait key keeps the value of the write with the greatest ``(timestamp, message_id)``; two
different values under the same stamp (the same message id from two sources) are ordered by their
canonical JSON, so the winner never depends on arrival order. Combining the traits of merged
profiles is the same rule applied per key, and so is recomputing them from the trait history.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from safar.model.profiles import StampedValue, TraitWrite

_encode = msgspec.json.Encoder(order="sorted").encode


def wins(new: StampedValue, old: StampedValue) -> bool:
    """Whether ``new`` replaces ``old``; equal writes do not replace each other."""
    if new.timestamp != old.timestamp:
        return new.timestamp > old.timestamp
    if new.message_id != old.message_id:
        return new.message_id > old.message_id
    return _encode(new.value) > _encode(old.value)


def write(traits: dict[str, StampedValue], key: str, value: StampedValue) -> bool:
    """Apply one write to ``traits`` in place; returns whether it changed anything."""
    current = traits.get(key)
    if current is None or wins(value, current):
        traits[key] = value
        return True
    return False


def combine(sources: Iterable[dict[str, StampedValue]]) -> dict[str, StampedValue]:
    """The traits of a profile made of profiles with these traits."""
    combined: dict[str, StampedValue] = {}
    for traits in sources:
        for key, value in traits.items():
            write(combined, key, value)
    return combined


def replay(writes: Iterable[TraitWrite]) -> dict[str, StampedValue]:
    """The traits these writes leave, in any order."""
    traits: dict[str, StampedValue] = {}
    for w in writes:
        write(traits, w.key, StampedValue(w.value, w.timestamp, w.message_id))
    return traits


def values(traits: dict[str, StampedValue]) -> dict[str, Any]:
    """The plain ``{key: value}`` view of stamped traits, keys sorted."""
    return {key: traits[key].value for key in sorted(traits)}
