"""CEL values as Python values, their type names, equality and ordering.

CEL ``int`` is Python ``int``, ``uint`` is :class:`UInt` (an ``int`` subclass arithmetic keeps
apart), ``double`` is ``float``, ``string``/``bytes``/``bool``/``null`` are ``str``/``bytes``/
``bool``/``None``, lists are ``list`` (or ``tuple`` from the host), maps are ``dict`` (or any
``Mapping``), timestamps are aware ``datetime`` and durations ``timedelta``. Hot paths test
``type(x) is …`` (``bool`` is an ``int`` subclass, so ``isinstance`` would confuse them); the
slow paths accept host subclasses through :func:`kind`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from safar.cel.errors import CelEvalError

INT_MIN: Final = -(1 << 63)
INT_MAX: Final = (1 << 63) - 1
UINT_MAX: Final = (1 << 64) - 1


class UInt(int):
    """A CEL ``uint``: a non-negative 64-bit integer, distinct from ``int`` in arithmetic."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{int(self)}u"


class CelType:
    """A CEL type as a value, what ``type(x)`` returns and ``int``, ``string``, … denote."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _Missing:
    """The marker for an absent map key (``None`` is CEL ``null``)."""

    __slots__ = ()


MISSING: Final = _Missing()

TYPES: Final = {
    name: CelType(name)
    for name in (
        "int",
        "uint",
        "double",
        "bool",
        "string",
        "bytes",
        "list",
        "map",
        "null_type",
        "type",
        "dyn",
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
    )
}
TYPE_DENOTATIONS: Final = frozenset(name for name in TYPES if "." not in name)
"""Identifiers that name a type unless a variable of that name is declared."""

_BY_PYTHON_TYPE: Final[dict[type, CelType]] = {
    bool: TYPES["bool"],
    int: TYPES["int"],
    UInt: TYPES["uint"],
    float: TYPES["double"],
    str: TYPES["string"],
    bytes: TYPES["bytes"],
    list: TYPES["list"],
    tuple: TYPES["list"],
    dict: TYPES["map"],
    type(None): TYPES["null_type"],
    datetime: TYPES["google.protobuf.Timestamp"],
    timedelta: TYPES["google.protobuf.Duration"],
    CelType: TYPES["type"],
}
NUMERIC: Final = frozenset({int, UInt, float})
"""Python types of CEL numbers; ``bool`` is deliberately not one."""


def kind(value: Any) -> type | None:
    """The canonical Python type of a CEL value (host subclasses folded in), or None."""
    t = type(value)
    if t in _BY_PYTHON_TYPE:
        return list if t is tuple else t
    for base in (bool, UInt, int, float, str, bytes, datetime, timedelta):
        if isinstance(value, base):
            return base
    if isinstance(value, Mapping):
        return dict
    if isinstance(value, list | tuple):
        return list
    return None


def type_of(value: Any) -> CelType:
    """CEL's ``type(value)``."""
    k = kind(value)
    if k is None:
        raise CelEvalError(f"unsupported value of Python type {type(value).__name__}")
    return _BY_PYTHON_TYPE[k]


def type_name(value: Any) -> str:
    """The CEL type name of ``value`` for messages; timestamps and durations by short name."""
    k = kind(value)
    if k is datetime:
        return "timestamp"
    if k is timedelta:
        return "duration"
    if k is None:
        return f"unsupported {type(value).__name__}"
    return _BY_PYTHON_TYPE[k].name


def no_overload(function: str, *args: Any) -> CelEvalError:
    """The ``no_matching_overload`` error for ``function`` applied to ``args``."""
    types = ", ".join(type_name(a) for a in args)
    return CelEvalError(f"no matching overload for '{function}' on ({types})")


def aware(value: datetime) -> datetime:
    """A timestamp with a zone: naive datetimes from the host are taken as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def equals(a: Any, b: Any) -> bool:
    """CEL ``==``: numbers compare across int/uint/double; other mixed types are unequal."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is list or ta is tuple:
            return _lists_equal(a, b)
        if ta is dict:
            return _maps_equal(a, b)
        if ta is datetime:
            return bool(aware(a) == aware(b))
        return bool(a == b)
    if ta in NUMERIC and tb in NUMERIC:
        return bool(a == b)
    ka, kb = kind(a), kind(b)
    if ka is None or kb is None:
        return False
    if ka in NUMERIC and kb in NUMERIC:
        return bool(a == b)
    if ka is not kb:
        return False
    if ka is list:
        return _lists_equal(a, b)
    if ka is dict:
        return _maps_equal(a, b)
    if ka is datetime:
        return bool(aware(a) == aware(b))
    return bool(a == b)


def _lists_equal(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(equals(x, y) for x, y in zip(a, b, strict=True))


def _maps_equal(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> bool:
    if len(a) != len(b):
        return False
    for key, value in a.items():
        other = map_get(b, key)
        if other is MISSING or not equals(value, other):
            return False
    return True


def map_get(m: Mapping[Any, Any], key: Any) -> Any:
    """``m[key]`` by CEL key equality, or :data:`MISSING`.

    Python hashes ``True``, ``1`` and ``1.0`` alike; CEL keeps bool keys apart from numbers but
    finds ``1`` under ``1u`` or ``1.0``. Only the keys 0 and 1 can collide, so only they are
    checked against the key actually stored.
    """
    if type(key) is str:
        return m.get(key, MISSING)
    found = m.get(key, MISSING)
    if found is MISSING:
        return MISSING
    key_is_bool = type(key) is bool
    if key_is_bool or key == 0 or key == 1:
        for stored, value in m.items():
            if (type(stored) is bool) is key_is_bool and stored == key:
                return value
        return MISSING
    return found


def _ordering(symbol: str, op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ta, tb = type(a), type(b)
        if (ta is tb and ta in _FAST_ORDERED) or (ta in NUMERIC and tb in NUMERIC):
            return op(a, b)
        ka, kb = kind(a), kind(b)
        if ka in NUMERIC and kb in NUMERIC:
            return op(a, b)
        if ka is kb and ka in _ORDERED:
            if ka is datetime:
                return op(aware(a), aware(b))
            return op(a, b)
        raise no_overload(symbol, a, b)

    return compare


_FAST_ORDERED: Final = frozenset({int, UInt, float, str, bytes, bool, timedelta})
# Timestamps take the slow path: a naive host datetime must not meet an aware one in ``<``.
_ORDERED: Final = _FAST_ORDERED | {datetime}
less = _ordering("_<_", operator.lt)
less_equal = _ordering("_<=_", operator.le)
greater = _ordering("_>_", operator.gt)
greater_equal = _ordering("_>=_", operator.ge)
