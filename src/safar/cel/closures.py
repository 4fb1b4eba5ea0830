"""Closure factories for the hot paths: variable paths, comparisons, ``in``, ``&&`` and ``||``.

Each returns a function of the activation. Fast paths test exact Python types and fall back to
the general operation (which also produces the error) for anything else, so they change speed,
never results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Final

from safar.cel.access import member, select
from safar.cel.errors import CelEvalError
from safar.cel.values import UInt, equals, no_overload

Eval = Callable[[Mapping[str, Any]], Any]
Compare = Callable[[Any, Any], bool]

# Types whose Python == is CEL == when both sides have the same type.
_PLAIN_EQUALITY: Final = frozenset({str, int, bool, float, bytes, UInt, type(None), timedelta})


def variable(name: str) -> Eval:
    """The value of a variable of the activation (or of a comprehension)."""

    def read(act: Mapping[str, Any]) -> Any:
        try:
            return act[name]
        except KeyError:
            raise CelEvalError(f"no value for variable '{name}'") from None

    return read


def path(name: str, fields: tuple[str, ...]) -> Eval:
    """``name.f1.f2…``: plain dict lookups while every step is a dict, else the general walk."""
    read = variable(name)

    def walk(act: Mapping[str, Any]) -> Any:
        value = read(act)
        for field in fields:
            value = select(value, field)
        return value

    if len(fields) == 1:
        (f1,) = fields

        def path1(act: Mapping[str, Any]) -> Any:
            try:
                value = act[name]
                if type(value) is dict:
                    return value[f1]
            except KeyError:
                pass
            return walk(act)

        return path1
    if len(fields) == 2:
        f1, f2 = fields

        def path2(act: Mapping[str, Any]) -> Any:
            try:
                value = act[name]
                if type(value) is dict:
                    value = value[f1]
                    if type(value) is dict:
                        return value[f2]
            except KeyError:
                pass
            return walk(act)

        return path2
    if len(fields) == 3:
        f1, f2, f3 = fields

        def path3(act: Mapping[str, Any]) -> Any:
            try:
                value = act[name]
                if type(value) is dict:
                    value = value[f1]
                    if type(value) is dict:
                        value = value[f2]
                        if type(value) is dict:
                            return value[f3]
            except KeyError:
                pass
            return walk(act)

        return path3
    return walk


def equal(left: Eval, right: Eval, constant: bool, value: Any, negate: bool) -> Eval:
    """``left == right`` (or ``!=``), specialised when ``right`` is a constant."""
    if constant and (value is True or value is False or value is None):
        if negate:
            return lambda act: left(act) is not value
        return lambda act: left(act) is value
    if constant and type(value) in _PLAIN_EQUALITY:
        kind_of_value = type(value)
        numeric = kind_of_value in (int, float, UInt)

        def equal_constant(act: Mapping[str, Any]) -> bool:
            a = left(act)
            t = type(a)
            if t is kind_of_value or (numeric and (t is int or t is float)):
                return (a == value) is not negate
            return equals(a, value) is not negate

        return equal_constant

    def equal_any(act: Mapping[str, Any]) -> bool:
        a = left(act)
        b = right(act)
        t = type(a)
        if t is type(b) and t in _PLAIN_EQUALITY:
            return (a == b) is not negate
        return equals(a, b) is not negate

    return equal_any


def order(
    left: Eval, right: Eval, constant: bool, value: Any, compare: Compare, fast: Compare
) -> Eval:
    """An ordering by ``compare``; against a constant number, plain ``fast`` for int and double."""
    if constant and type(value) in (int, float):

        def order_constant(act: Mapping[str, Any]) -> bool:
            a = left(act)
            t = type(a)
            if t is int or t is float:
                return fast(a, value)
            return compare(a, value)

        return order_constant
    return lambda act: compare(left(act), right(act))


def within(left: Eval, right: Eval, constant: bool, value: Any) -> Eval:
    """``left in right``; against a constant list of strings, a set lookup."""
    if constant and type(value) is list and value and all(type(v) is str for v in value):
        strings = frozenset(value)

        def in_strings(act: Mapping[str, Any]) -> bool:
            item = left(act)
            if type(item) is str:
                return item in strings
            return member(item, value)

        return in_strings
    return lambda act: member(left(act), right(act))


def logical_and(terms: list[Eval]) -> Eval:
    """CEL ``&&``: false if any term is false, even if others fail; else any error; else true."""
    if len(terms) == 2:
        first, second = terms

        def and2(act: Mapping[str, Any]) -> bool:
            try:
                a = first(act)
            except CelEvalError as error:
                try:
                    b = second(act)
                except CelEvalError:
                    raise error from None
                if b is False:
                    return False
                raise
            if a is False:
                return False
            b = second(act)
            if b is False:
                return False
            if a is True and b is True:
                return True
            raise no_overload("_&&_", a, b)

        return and2
    return _logical(terms, stop=False, symbol="_&&_")


def logical_or(terms: list[Eval]) -> Eval:
    """CEL ``||``: true if any term is true, even if others fail; else any error; else false."""
    if len(terms) == 2:
        first, second = terms

        def or2(act: Mapping[str, Any]) -> bool:
            try:
                a = first(act)
            except CelEvalError as error:
                try:
                    b = second(act)
                except CelEvalError:
                    raise error from None
                if b is True:
                    return True
                raise
            if a is True:
                return True
            b = second(act)
            if b is True:
                return True
            if a is False and b is False:
                return False
            raise no_overload("_||_", a, b)

        return or2
    return _logical(terms, stop=True, symbol="_||_")


def _logical(terms: list[Eval], stop: bool, symbol: str) -> Eval:
    go_on = not stop

    def logical(act: Mapping[str, Any]) -> bool:
        error: CelEvalError | None = None
        for term in terms:
            try:
                value = term(act)
            except CelEvalError as exc:
                error = error or exc
                continue
            if value is stop:
                return not go_on
            if value is not go_on and error is None:
                error = no_overload(symbol, value)
        if error is not None:
            raise error
        return go_on

    return logical
