"""Table-driven conformance: every case in ``conformance_cases`` evaluates as written."""

from __future__ import annotations

import math
from typing import Any

import pytest

from safar.cel import CelEvalError, compile_expression
from tests.cel.conformance_cases import ACTIVATION, ERROR_CASES, NAMES, VALUE_CASES


def same(actual: Any, expected: Any) -> bool:
    """Equal in value and in type, recursively (``1``, ``1.0``, ``1u`` and ``True`` differ)."""
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same(actual[k], expected[k]) for k in expected
        )
    if isinstance(expected, float) and math.isnan(expected):
        return math.isnan(actual)
    return bool(actual == expected)


@pytest.mark.parametrize(("expression", "expected"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_value(expression: str, expected: Any) -> None:
    result = compile_expression(expression, NAMES).evaluate(ACTIVATION)
    assert same(result, expected), f"{expression} gave {result!r}, expected {expected!r}"


@pytest.mark.parametrize(("expression", "message"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error(expression: str, message: str) -> None:
    program = compile_expression(expression, NAMES)
    with pytest.raises(CelEvalError) as raised:
        program.evaluate(ACTIVATION)
    assert message in str(raised.value)
    assert not program.test(ACTIVATION)


def test_the_table_checks_types_not_just_values() -> None:
    assert not same(1, 1.0)
    assert not same(True, 1)
    assert not same([1], [1.0])
    assert not same({"a": 1}, {"a": True})
    assert same([{"a": float("nan")}], [{"a": float("nan")}])
