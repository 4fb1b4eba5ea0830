"""Reading into values: field selection ``m.f``, indexing ``x[i]``, ``has(m.f)`` and ``in``.

Only map keys and list positions are ever read; attributes of Python objects never are, so an
expression cannot reach anything the host did not put into the activation as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from safar.cel.errors import CelEvalError
from safar.cel.values import MISSING, UInt, equals, kind, map_get, no_overload, type_name

_KEY_KINDS: Final = frozenset({str, int, UInt, bool, float})


def select(value: Any, field: str) -> Any:
    """``value.field``: the map entry under the string key ``field``."""
    if type(value) is dict or isinstance(value, Mapping):
        try:
            return value[field]
        except KeyError:
            raise CelEvalError(f"no such key '{field}'") from None
    raise CelEvalError(f"cannot select field '{field}' from {type_name(value)}")


def has(value: Any, field: str) -> bool:
    """``has(value.field)``: whether the map has the key ``field``."""
    if type(value) is dict or isinstance(value, Mapping):
        return field in value
    raise CelEvalError(f"has() needs a map to test for '{field}', got {type_name(value)}")


def index(container: Any, key: Any) -> Any:
    """``container[key]``: a list element by position or a map value by key."""
    t = type(container)
    if t is list or t is tuple:
        return container[_position(key, len(container))]
    if t is dict or isinstance(container, Mapping):
        found = map_get(container, _map_key(key))
        if found is MISSING:
            raise CelEvalError(f"no such key {key!r}")
        return found
    if kind(container) is list:
        return container[_position(key, len(container))]
    raise no_overload("_[_]", container, key)


def _position(key: Any, size: int) -> int:
    k = kind(key)
    if k is int or k is UInt or (k is float and float(key).is_integer()):
        position = int(key)
    else:
        raise CelEvalError(f"list index must be an int, got {type_name(key)}")
    if not 0 <= position < size:
        raise CelEvalError(f"index {position} out of range for a list of {size}")
    return position


def _map_key(key: Any) -> Any:
    if kind(key) not in _KEY_KINDS:
        raise CelEvalError(f"unsupported map key type {type_name(key)}")
    return key


def member(item: Any, container: Any) -> bool:
    """``item in container``: list membership by CEL equality, or presence of a map key."""
    t = type(container)
    if t is list or t is tuple:
        if type(item) is str:
            # Strings are equal only to strings, so Python's own scan gives CEL's answer.
            return item in container
        return any(equals(item, element) for element in container)
    if t is dict or isinstance(container, Mapping):
        if kind(item) not in _KEY_KINDS:
            raise no_overload("@in", item, container)
        return map_get(container, item) is not MISSING
    if kind(container) is list:
        return any(equals(item, element) for element in container)
    raise no_overload("@in", item, container)
