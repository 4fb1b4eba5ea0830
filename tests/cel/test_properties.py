"""Properties against small reference models written independently of the implementation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from safar.cel import CelEvalError, compile_expression
from safar.cel.temporal import MAX_DURATION

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class Failure(Exception):
    """The reference model's "this is an error"."""


# --- int arithmetic -------------------------------------------------------------------------

Tree = Any  # ("lit", value, as_variable) | ("neg", tree) | (op, left, right)

int_values = st.one_of(st.integers(-20, 20), st.integers(INT_MIN, INT_MAX))
int_leaves = st.tuples(st.just("lit"), int_values, st.booleans())
int_trees = st.recursive(
    int_leaves,
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/", "%"]), inner, inner),
        st.tuples(st.just("neg"), inner),
    ),
    max_leaves=10,
)


def checked(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise Failure("overflow")
    return value


def reference_int(tree: Tree) -> int:
    """Integer semantics CEL specifies: 64-bit, division truncating toward zero."""
    if tree[0] == "lit":
        return int(tree[1])
    if tree[0] == "neg":
        return checked(-reference_int(tree[1]))
    op, a, b = tree[0], reference_int(tree[1]), reference_int(tree[2])
    if op == "+":
        return checked(a + b)
    if op == "-":
        return checked(a - b)
    if op == "*":
        return checked(a * b)
    if b == 0:
        raise Failure("division by zero")
    # Truncation toward zero, by magnitude: independent of Python's floor division.
    magnitude = abs(a) // abs(b)
    quotient = magnitude if (a >= 0) == (b >= 0) else -magnitude
    if op == "/":
        return checked(quotient)
    checked(quotient)  # CEL treats MIN % -1 as overflow, like MIN / -1
    return a - b * quotient


def render(tree: Tree, activation: dict[str, Any]) -> str:
    if tree[0] == "lit":
        if tree[2]:
            name = f"v{len(activation)}"
            activation[name] = tree[1]
            return name
        return f"({tree[1]})"
    if tree[0] == "neg":
        return f"-({render(tree[1], activation)})"
    return f"({render(tree[1], activation)} {tree[0]} {render(tree[2], activation)})"


@given(int_trees)
@settings(max_examples=300)
def test_int_arithmetic_matches_the_reference(tree: Tree) -> None:
    activation: dict[str, Any] = {}
    program = compile_expression(render(tree, activation))
    try:
        expected = reference_int(tree)
    except Failure:
        try:
            result = program.evaluate(activation)
        except CelEvalError:
            return
        raise AssertionError(f"{program.source} gave {result!r}, expected an error") from None
    result = program.evaluate(activation)
    assert type(result) is int
    assert result == expected


# --- logic with errors ----------------------------------------------------------------------

ERROR = "error"
NUMBER = "number"  # a non-bool: CEL's logical operators reject it, as they reject errors

# Leaf kinds, each written as a literal and as a variable read, so that folded and run-time
# paths are both exercised. (Keys are strings: a dict would merge True and 1.)
LEAVES: dict[Any, tuple[str, str]] = {
    True: ("true", "vt"),
    False: ("false", "vf"),
    ERROR: ("(1 / 0 == 1)", "m.missing"),
    NUMBER: ("1", "vn"),
}
LOGIC_ACTIVATION = {"vt": True, "vf": False, "vn": 1, "m": {}}

logic_leaves = st.tuples(
    st.just("leaf"), st.sampled_from([True, False, ERROR, NUMBER]), st.booleans()
)
logic_trees = st.recursive(
    logic_leaves,
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(["&&", "||"]), inner, inner),
        st.tuples(st.just("!"), inner),
        st.tuples(st.just("?:"), inner, inner, inner),
    ),
    max_leaves=12,
)


def reference_logic(tree: Tree) -> Any:
    """CEL's commutative logic: a deciding operand wins over errors in the other."""
    kind = tree[0]
    if kind == "leaf":
        return tree[1]
    if kind == "!":
        value = reference_logic(tree[1])
        return (not value) if isinstance(value, bool) else ERROR
    if kind == "?:":
        condition = reference_logic(tree[1])
        if condition is True:
            return reference_logic(tree[2])
        if condition is False:
            return reference_logic(tree[3])
        return ERROR
    values = [reference_logic(tree[1]), reference_logic(tree[2])]
    decisive = kind == "||"  # True decides ||, False decides &&
    if decisive in values:
        return decisive
    if all(isinstance(v, bool) for v in values):
        return not decisive
    return ERROR


def render_logic(tree: Tree) -> str:
    kind = tree[0]
    if kind == "leaf":
        literal, variable = LEAVES[tree[1]]
        return variable if tree[2] else literal
    if kind == "!":
        return f"!({render_logic(tree[1])})"
    if kind == "?:":
        parts = [render_logic(part) for part in tree[1:]]
        return f"(({parts[0]}) ? ({parts[1]}) : ({parts[2]}))"
    return f"({render_logic(tree[1])} {kind} {render_logic(tree[2])})"


@given(logic_trees)
@settings(max_examples=400)
def test_logic_with_errors_matches_the_reference(tree: Tree) -> None:
    program = compile_expression(render_logic(tree))
    expected = reference_logic(tree)
    if expected is ERROR:
        try:
            result = program.evaluate(LOGIC_ACTIVATION)
        except CelEvalError:
            return
        raise AssertionError(f"{program.source} gave {result!r}, expected an error")
    result = program.evaluate(LOGIC_ACTIVATION)
    if expected is NUMBER:
        assert result == 1 and type(result) is int, program.source
    else:
        assert result is expected, program.source
    assert program.test(LOGIC_ACTIVATION) is (expected is True)


def test_the_logic_reference_is_commutative_with_errors() -> None:
    error, false = ("leaf", ERROR, False), ("leaf", False, False)
    assert reference_logic(("&&", error, false)) is False
    assert reference_logic(("&&", false, error)) is False
    assert reference_logic(("||", error, ("leaf", True, False))) is True
    assert reference_logic(("&&", error, ("leaf", True, False))) is ERROR
    assert reference_logic(("||", ("leaf", NUMBER, False), ("leaf", True, False))) is True


# --- literals ---------------------------------------------------------------------------------


def escape(text: str, style: int) -> str:
    """``text`` as the body of a double-quoted CEL string, in one of several escape styles."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '\\"':
            out.append("\\" + ch)
        elif style == 1 or code < 0x20:
            out.append(f"\\U{code:08x}" if code > 0xFFFF else f"\\u{code:04x}")
        elif style == 2 and code < 0x100:
            out.append(f"\\{code:03o}" if code % 2 else f"\\x{code:02x}")
        else:
            out.append(ch)
    return "".join(out)


@given(st.text(max_size=40), st.integers(0, 2))
def test_string_literals_round_trip(text: str, style: int) -> None:
    assert compile_expression(f'"{escape(text, style)}"').evaluate({}) == text


@given(st.binary(max_size=40))
def test_bytes_literals_round_trip(data: bytes) -> None:
    body = "".join(f"\\x{b:02x}" if b % 3 else f"\\{b:03o}" for b in data)
    assert compile_expression(f'b"{body}"').evaluate({}) == data


@given(st.text(alphabet=st.characters(blacklist_characters="'\\"), max_size=40))
def test_raw_triple_quoted_strings_keep_their_text(text: str) -> None:
    if "''" in text or text.endswith("'"):
        return
    assert compile_expression(f"r'''{text}'''").evaluate({}) == text


# --- numbers across types ---------------------------------------------------------------------

numbers = st.one_of(
    st.integers(INT_MIN, INT_MAX),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, -0.0, 2.0**63, 2.0**64, float(INT_MAX)]),
)


@given(numbers, numbers)
def test_comparisons_across_int_and_double_are_exact(a: float, b: float) -> None:
    program = compile_expression("[a < b, a <= b, a > b, a >= b, a == b, a != b]")
    assert program.evaluate({"a": a, "b": b}) == [a < b, a <= b, a > b, a >= b, a == b, a != b]


@given(st.integers(0, 2**64 - 1), st.integers(INT_MIN, INT_MAX))
def test_uint_compares_with_int_by_value(u: int, i: int) -> None:
    program = compile_expression("[uint(u) < i, uint(u) == i, i >= uint(u)]")
    assert program.evaluate({"u": u, "i": i}) == [u < i, u == i, i >= u]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_string_of_a_double_reads_back_as_the_same_double(x: float) -> None:
    result = compile_expression("double(string(x))").evaluate({"x": x})
    assert result == x and math.copysign(1, result) == math.copysign(1, x)


@given(st.timedeltas(min_value=-MAX_DURATION, max_value=MAX_DURATION))
def test_durations_round_trip_through_strings(d: timedelta) -> None:
    assert compile_expression("duration(string(d)) == d").evaluate({"d": d}) is True


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_round_trip_through_strings(t: datetime) -> None:
    assert compile_expression("timestamp(string(t)) == t").evaluate({"t": t}) is True
