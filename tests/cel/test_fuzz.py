"""Whatever the input, compiling raises only CelSyntaxError and evaluating only CelEvalError."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from safar.cel import CelEvalError, CelSyntaxError, compile_expression
from tests.cel.conformance_cases import ACTIVATION, NAMES

# Pieces of CEL, some valid and some not, joined with spaces into token soup.
VOCABULARY = [
    *"()[]{}.,:?!-+*/%<>",
    "==", "!=", "<=", ">=", "&&", "||", "in", "true", "false", "null",
    "0", "1", "-1", "2.5", "1e3", "7u", "0x1F", "9223372036854775807", "'a'", '"b"', "b'c'",
    "r'\\d'", "'''x'''", "event", "profile", "journey", "now", "x", "i", "properties", "price",
    "traits", "tags", "items", "size", "has", "all", "exists", "exists_one", "map", "filter",
    "int", "uint", "double", "string", "bytes", "bool", "type", "dyn", "timestamp", "duration",
    "matches", "startsWith", "contains", "split", "join", "getHours", "'Asia/Tehran'",
    "'2026-01-01T00:00:00Z'", "'1h'", "'['", "if", "#", "'unterminated", "\\", "\n",
]  # fmt: skip
soup = st.lists(st.sampled_from(VOCABULARY), max_size=25).map(" ".join)
# Shapes that parse more often than random soup: calls and selections on the variables.
calls = st.builds(
    "{}.{}({}) {} {}".format,
    st.sampled_from(["event.properties", "profile.traits.tags", "now", "'abc'", "[1, 'a']", "{}"]),
    st.sampled_from(["size", "contains", "startsWith", "matches", "getHours", "split", "join"]),
    st.sampled_from(["", "'a'", "1", "'+03:30'", "'a', 2", "now"]),
    st.sampled_from(["==", "<", "+", "in", "&&"]),
    st.sampled_from(["1", "'a'", "true", "null", "[1]", "now", "event"]),
)


def outcome(source: str) -> None:
    try:
        program = compile_expression(source, NAMES)
    except CelSyntaxError:
        return
    with contextlib.suppress(CelEvalError):
        program.evaluate(ACTIVATION)
    assert isinstance(program.test(ACTIVATION), bool)


@given(st.text(max_size=60))
def test_any_text_fails_only_with_syntax_errors(source: str) -> None:
    outcome(source)


@given(soup)
@settings(max_examples=400)
def test_token_soup_fails_only_with_cel_errors(source: str) -> None:
    outcome(source)


@given(calls)
@settings(max_examples=300)
def test_calls_on_real_values_fail_only_with_cel_errors(source: str) -> None:
    outcome(source)


def test_very_long_numbers_are_syntax_errors() -> None:
    for source in ("1" * 5000, "0x" + "f" * 5000, "1" * 400 + ".5", "1" * 50 + "u"):
        try:
            compile_expression(source)
        except CelSyntaxError as error:
            assert "out of range" in error.reason
        else:
            raise AssertionError(f"{source[:20]}… compiled")
