"""Arithmetic operators, dispatched on the Python types of both operands.

CEL has no implicit numeric conversions; Safar adds one: ``int`` mixed with ``double`` in
``+ - * /`` gives a ``double`` (event properties arrive as JSON numbers, and ``price * 2`` should
not depend on whether the sender wrote ``10`` or ``10.0``). ``int`` and ``uint`` results are
checked for 64-bit overflow; ``double`` follows IEEE 754 (``1.0 / 0.0`` is infinity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from safar.cel.errors import CelEvalError
from safar.cel.limits import check_bytes, check_list_size, check_str
from safar.cel.temporal import check_duration, check_timestamp
from safar.cel.values import INT_MAX, INT_MIN, UINT_MAX, UInt, aware, kind, no_overload

Operator = Callable[[Any, Any], Any]


def _int(value: int, symbol: str) -> int:
    if INT_MIN <= value <= INT_MAX:
        return value
    raise CelEvalError(f"integer overflow in '{symbol}'")


def _uint(value: int, symbol: str) -> UInt:
    if 0 <= value <= UINT_MAX:
        return UInt(value)
    raise CelEvalError(f"unsigned integer overflow in '{symbol}'")


def _float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        raise CelEvalError("integer too large to convert to double") from None


def _truncated_quotient(a: int, b: int) -> int:
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


def _div_int(a: int, b: int) -> int:
    if b == 0:
        raise CelEvalError("division by zero")
    return _int(_truncated_quotient(a, b), "_/_")


def _mod_int(a: int, b: int) -> int:
    if b == 0:
        raise CelEvalError("modulus by zero")
    if a == INT_MIN and b == -1:
        raise CelEvalError("integer overflow in '_%_'")
    return a - b * _truncated_quotient(a, b)


def _div_uint(a: int, b: int) -> UInt:
    if b == 0:
        raise CelEvalError("division by zero")
    return UInt(a // b)


def _mod_uint(a: int, b: int) -> UInt:
    if b == 0:
        raise CelEvalError("modulus by zero")
    return UInt(a % b)


def _div_float(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or a != a:
            return float("nan")
        # The sign of a zero divisor matters in IEEE 754: 1.0 / -0.0 is -infinity.
        negative = (a < 0) != (math.copysign(1.0, b) < 0)
        return float("-inf") if negative else float("inf")
    return a / b


def _concat_list(a: Any, b: Any) -> list[Any]:
    check_list_size(len(a) + len(b))
    return [*a, *b]


def _ts_plus(a: datetime, b: timedelta) -> datetime:
    return check_timestamp(lambda: aware(a) + b)


def _ts_minus_duration(a: datetime, b: timedelta) -> datetime:
    return check_timestamp(lambda: aware(a) - b)


def _numbers(int_op: Operator, uint_op: Operator, float_op: Operator) -> dict[Any, Operator]:
    return {
        (int, int): int_op,
        (UInt, UInt): uint_op,
        (float, float): float_op,
        (int, float): lambda a, b: float_op(_float(a), b),
        (float, int): lambda a, b: float_op(a, _float(b)),
    }


_ADD: Final[dict[Any, Operator]] = {
    **_numbers(
        lambda a, b: _int(a + b, "_+_"),
        lambda a, b: _uint(a + b, "_+_"),
        lambda a, b: a + b,
    ),
    (str, str): lambda a, b: check_str(a + b),
    (bytes, bytes): lambda a, b: check_bytes(a + b),
    (list, list): _concat_list,
    (datetime, timedelta): _ts_plus,
    (timedelta, datetime): lambda a, b: _ts_plus(b, a),
    (timedelta, timedelta): lambda a, b: check_duration(a + b),
}
_SUB: Final[dict[Any, Operator]] = {
    **_numbers(
        lambda a, b: _int(a - b, "_-_"),
        lambda a, b: _uint(a - b, "_-_"),
        lambda a, b: a - b,
    ),
    (datetime, datetime): lambda a, b: check_duration(aware(a) - aware(b)),
    (datetime, timedelta): _ts_minus_duration,
    (timedelta, timedelta): lambda a, b: check_duration(a - b),
}
_MUL: Final = _numbers(
    lambda a, b: _int(a * b, "_*_"),
    lambda a, b: _uint(a * b, "_*_"),
    lambda a, b: a * b,
)
_DIV: Final = _numbers(_div_int, _div_uint, _div_float)
_MOD: Final[dict[Any, Operator]] = {(int, int): _mod_int, (UInt, UInt): _mod_uint}


def _dispatch(table: dict[Any, Operator], symbol: str) -> Operator:
    def apply(a: Any, b: Any) -> Any:
        function = table.get((type(a), type(b)))
        if function is None:
            # Host subclasses and tuples: look again by canonical kind.
            function = table.get((kind(a), kind(b)))
            if function is None:
                raise no_overload(symbol, a, b)
        return function(a, b)

    return apply


add = _dispatch(_ADD, "_+_")
subtract = _dispatch(_SUB, "_-_")
multiply = _dispatch(_MUL, "_*_")
divide = _dispatch(_DIV, "_/_")
modulo = _dispatch(_MOD, "_%_")
BINARY: Final = {"+": add, "-": subtract, "*": multiply, "/": divide, "%": modulo}


def negate(value: Any) -> Any:
    """CEL unary ``-``: ``int``, ``double`` and ``duration``."""
    t = type(value)
    if t is int:
        return _int(-value, "-_")
    if t is float:
        return -value
    if t is timedelta:
        return check_duration(-value)
    k = kind(value)
    if k is int or k is float:
        return negate(k(value))
    raise no_overload("-_", value)


def logical_not(value: Any) -> bool:
    """CEL ``!``: booleans only."""
    if value is True:
        return False
    if value is False:
        return True
    raise no_overload("!_", value)
