"""The functions an expression may call, and how: as ``f(x)``, as ``x.f()``, with how many
arguments. Macros (``has``, ``all``, ``exists``, ``exists_one``, ``map``, ``filter``) are not here:
the parser expands them.

Every implementation takes the receiver (if any) first, then the arguments, so ``size(x)`` and
``x.size()`` share one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from safar.cel import conversions, text
from safar.cel.accessors import ACCESSORS


@dataclass(frozen=True, slots=True)
class Function:
    """A callable name: its implementation and the arities it accepts in each call style."""

    name: str
    impl: Callable[..., Any]
    global_arities: frozenset[int] = frozenset()
    """Argument counts accepted as ``f(a, …)``."""
    method_arities: frozenset[int] = frozenset()
    """Argument counts accepted as ``x.f(a, …)``, not counting ``x``."""
    allocates: bool = False
    """Whether the result can be a new string or list as large as the inputs."""


def _global(
    name: str, impl: Callable[..., Any], *arities: int, allocates: bool = False
) -> Function:
    return Function(name, impl, global_arities=frozenset(arities), allocates=allocates)


def _method(
    name: str, impl: Callable[..., Any], *arities: int, allocates: bool = False
) -> Function:
    return Function(name, impl, method_arities=frozenset(arities), allocates=allocates)


_ALL: Final = [
    Function("size", text.size, frozenset({1}), frozenset({0})),
    Function("matches", text.matches, frozenset({2}), frozenset({1})),
    _method("contains", text.contains, 1),
    _method("startsWith", text.starts_with, 1),
    _method("endsWith", text.ends_with, 1),
    _method("lowerAscii", text.lower_ascii, 0, allocates=True),
    _method("upperAscii", text.upper_ascii, 0, allocates=True),
    _method("trim", text.trim, 0, allocates=True),
    _method("split", text.split, 1, 2, allocates=True),
    _method("join", text.join, 0, 1, allocates=True),
    _global("int", conversions.to_int, 1),
    _global("uint", conversions.to_uint, 1),
    _global("double", conversions.to_double, 1),
    _global("string", conversions.to_string, 1, allocates=True),
    _global("bool", conversions.to_bool, 1),
    _global("bytes", conversions.to_bytes, 1, allocates=True),
    _global("dyn", conversions.dyn, 1),
    _global("type", conversions.type_value, 1),
    _global("timestamp", conversions.to_timestamp, 1),
    _global("duration", conversions.to_duration, 1),
    *(_method(name, accessor, 0, 1) for name, accessor in ACCESSORS.items()),
]
FUNCTIONS: Final = {function.name: function for function in _ALL}
"""Every function by name."""

MACROS: Final = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
"""Names the parser expands; they are not functions."""
