"""Type conversions: ``int()``, ``uint()``, ``double()``, ``string()``, ``bool()``, ``bytes()``,
``timestamp()``, ``duration()``, ``dyn()`` and ``type()``, with cel-go's parsing and ranges."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from safar.cel.errors import CelEvalError
from safar.cel.limits import check_bytes
from safar.cel.temporal import (
    format_duration,
    format_timestamp,
    parse_duration,
    parse_timestamp,
    seconds_since_epoch,
    timestamp_from_seconds,
)
from safar.cel.values import (
    INT_MAX,
    INT_MIN,
    UINT_MAX,
    CelType,
    UInt,
    kind,
    no_overload,
    type_of,
)

# ASCII digits only: \d and int() would also take digits of other scripts.
_INT_TEXT = re.compile(r"[+-]?\d{1,25}", re.ASCII)
_UINT_TEXT = re.compile(r"\+?\d{1,25}", re.ASCII)
_DOUBLE_TEXT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE | re.ASCII
)
_TRUE: Final = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "false", "FALSE", "False"})
# Doubles at or beyond ±2**63 (±2**64 for uint) do not fit, whatever their fraction.
_TWO_63: Final = 9.223372036854775808e18
_TWO_64: Final = 1.8446744073709551616e19


def to_int(value: Any) -> int:
    """``int(x)`` for int, uint, double (truncated toward zero), string and timestamp."""
    k = kind(value)
    if k is int:
        return int(value)
    if k is UInt:
        if value > INT_MAX:
            raise CelEvalError(f"uint {int(value)} is out of int range")
        return int(value)
    if k is float:
        if math.isnan(value) or not -_TWO_63 <= value < _TWO_63:
            raise CelEvalError(f"double {value!r} is out of int range")
        return int(value)
    if k is str:
        if not _INT_TEXT.fullmatch(value):
            raise CelEvalError(f"cannot convert string {_short(value)} to int")
        number = int(value)
        if not INT_MIN <= number <= INT_MAX:
            raise CelEvalError(f"string {_short(value)} is out of int range")
        return number
    if k is datetime:
        return seconds_since_epoch(value)
    raise no_overload("int", value)


def to_uint(value: Any) -> UInt:
    """``uint(x)`` for int, uint, double (truncated toward zero) and string."""
    k = kind(value)
    if k is int or k is UInt:
        if not 0 <= value <= UINT_MAX:
            raise CelEvalError(f"int {int(value)} is out of uint range")
        return UInt(value)
    if k is float:
        if math.isnan(value) or not 0 <= value < _TWO_64:
            raise CelEvalError(f"double {value!r} is out of uint range")
        return UInt(int(value))
    if k is str:
        if not _UINT_TEXT.fullmatch(value) or int(value) > UINT_MAX:
            raise CelEvalError(f"cannot convert string {_short(value)} to uint")
        return UInt(int(value))
    raise no_overload("uint", value)


def to_double(value: Any) -> float:
    """``double(x)`` for int, uint, double and string."""
    k = kind(value)
    if k is float:
        return float(value)
    if k is int or k is UInt:
        try:
            return float(value)
        except OverflowError:
            raise CelEvalError("integer too large to convert to double") from None
    if k is str:
        if len(value) > 400 or not _DOUBLE_TEXT.fullmatch(value):
            raise CelEvalError(f"cannot convert string {_short(value)} to double")
        return float(value)
    raise no_overload("double", value)


def to_string(value: Any) -> str:
    """``string(x)`` for every scalar; doubles print as cel-go's ``%g`` does."""
    k = kind(value)
    if k is str:
        return str(value)
    if k is bool:
        return "true" if value else "false"
    if k is int or k is UInt:
        return str(int(value))
    if k is float:
        return format_double(value)
    if k is bytes:
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise CelEvalError("bytes are not valid UTF-8") from None
    if k is datetime:
        return format_timestamp(value)
    if k is timedelta:
        return format_duration(value)
    raise no_overload("string", value)


def format_double(value: float) -> str:
    """Go's ``%g``: shortest digits, exponent form below 1e-4 or from 1e6 up (``1e+06``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)
    point = len(digit_tuple) + exponent  # decimal point position relative to the digits
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def to_bool(value: Any) -> bool:
    """``bool(x)`` for bool and the strings Go's ``strconv.ParseBool`` accepts."""
    k = kind(value)
    if k is bool:
        return bool(value)
    if k is str:
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise CelEvalError(f"cannot convert string {_short(value)} to bool")
    raise no_overload("bool", value)


def to_bytes(value: Any) -> bytes:
    """``bytes(x)``: a string's UTF-8 encoding, or bytes unchanged."""
    k = kind(value)
    if k is bytes:
        return bytes(value)
    if k is str:
        return check_bytes(value.encode("utf-8"))
    raise no_overload("bytes", value)


def to_timestamp(value: Any) -> datetime:
    """``timestamp(x)`` from an RFC 3339 string, seconds since the epoch, or a timestamp."""
    k = kind(value)
    if k is str:
        return parse_timestamp(value)
    if k is datetime:
        return value  # type: ignore[no-any-return]
    if k is int:
        return timestamp_from_seconds(value)
    raise no_overload("timestamp", value)


def to_duration(value: Any) -> timedelta:
    """``duration(x)`` from a string like ``"1h30m"``, or a duration."""
    k = kind(value)
    if k is str:
        return parse_duration(value)
    if k is timedelta:
        return value  # type: ignore[no-any-return]
    raise no_overload("duration", value)


def dyn(value: Any) -> Any:
    """``dyn(x)``: ``x``; it only matters to type checkers, which Safar's CEL has none of."""
    return value


def type_value(value: Any) -> CelType:
    """``type(x)``."""
    return type_of(value)


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")
