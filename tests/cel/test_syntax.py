"""Syntax errors name the problem and where it is (1-based line and column)."""

from __future__ import annotations

import pytest

from safar.cel import CelError, CelSyntaxError, compile_expression
from safar.errors import SafarError, ValidationError

SYNTAX_ERRORS: list[tuple[str, int, int, str]] = [
    ("(1 + 2", 1, 7, "expected ')' but found end of expression"),
    ("1 +", 1, 4, "expected an expression but found end of expression"),
    ("", 1, 1, "expected an expression but found end of expression"),
    ("  // only a comment", 1, 20, "expected an expression but found end of expression"),
    ("a.b.)", 1, 5, "expected a field name after '.' but found ')'"),
    ("a.1", 1, 2, "expected an operator or the end but found number 0.1"),
    ("1 2", 1, 3, "expected an operator or the end but found number 2"),
    ("a b", 1, 3, "expected an operator or the end but found identifier 'b'"),
    ("f(1,)", 1, 5, "expected an expression but found ')'"),
    ("x ? 1", 1, 6, "expected ':' of the conditional ?: but found end of expression"),
    ("[1, 2", 1, 6, "expected ',' or ']' but found end of expression"),
    ("{1: 2", 1, 6, "expected ',' or '}' but found end of expression"),
    ("{1 2}", 1, 4, "expected ':' after the map key but found number 2"),
    ("a[1", 1, 4, "expected ']' but found end of expression"),
    ("'abc", 1, 1, "unterminated string literal (a newline ends it"),
    ("'a\nb'", 1, 1, "unterminated string literal"),
    ('"""abc', 1, 1, "unterminated string literal"),
    ("r'abc", 1, 1, "unterminated string literal"),
    (r'"\q"', 1, 2, "invalid escape sequence \\q"),
    (r'"\u12"', 1, 2, "\\u needs 4 hexadecimal digits"),
    (r'"\xZZ"', 1, 2, "\\x needs 2 hexadecimal digits"),
    (r'"\ud800"', 1, 2, "\\ud800 is not a Unicode code point"),
    (r'"\U00110000"', 1, 2, "\\U00110000 is not a Unicode code point"),
    (r'b"\u0041"', 1, 3, "\\u escapes are not allowed in bytes"),
    (r'"\400"', 1, 2, "invalid escape sequence \\4"),
    ("9223372036854775808", 1, 1, "int literal 9223372036854775808 is out of range"),
    ("-9223372036854775809", 1, 2, "int literal -9223372036854775809 is out of range"),
    ("18446744073709551616u", 1, 1, "uint literal 18446744073709551616u is out of range"),
    ("1e999", 1, 1, "double literal 1e999 is out of range"),
    ("a # b", 1, 3, "unexpected character '#'"),
    ("a == 'é' && b == é", 1, 18, "unexpected character 'é'"),
    ("if", 1, 1, "'if' is a reserved word"),
    ("a.while", 1, 3, "'while' is a reserved word"),
    ("a.in", 1, 3, "expected a field name after '.' but found 'in'"),
    ("Foo{a: 1}", 1, 4, "message construction (Type{...}) is not supported"),
    ("a &&\n  (b ||\n   c", 3, 5, "expected ')' but found end of expression"),
    ("a\n  + )", 2, 5, "expected an expression but found ')'"),
    ("has(a)", 1, 1, "has() takes one field selection, e.g. has(a.b)"),
    ("has(a.b, c.d)", 1, 1, "has() takes one field selection"),
    ("[1].all(1, true)", 1, 5, "the first argument of all() must be a variable name"),
    ("[1].all(.x, true)", 1, 5, "the first argument of all() must be a variable name"),
    ("[1].all(x)", 1, 5, "all() takes (x, predicate)"),
    ("[1].map(x, y, z, w)", 1, 5, "map() takes (x, transform)"),
]


@pytest.mark.parametrize(
    ("source", "line", "column", "message"), SYNTAX_ERRORS, ids=[c[0] for c in SYNTAX_ERRORS]
)
def test_syntax_error_names_the_problem_and_position(
    source: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(CelSyntaxError) as raised:
        compile_expression(source)
    error = raised.value
    assert (error.line, error.column) == (line, column), str(error)
    assert message in error.reason
    assert str(error).startswith(f"line {line}, column {column}: ")


def test_the_documented_message_shape() -> None:
    with pytest.raises(CelSyntaxError) as raised:
        compile_expression("(event.type")
    assert str(raised.value) == "line 1, column 12: expected ')' but found end of expression"
    assert raised.value.location == "line 1, column 12"
    assert raised.value.reason == "expected ')' but found end of expression"


def test_syntax_errors_are_validation_errors() -> None:
    with pytest.raises(CelSyntaxError) as raised:
        compile_expression("1 +")
    assert isinstance(raised.value, CelError)
    assert isinstance(raised.value, ValidationError)
    assert isinstance(raised.value, SafarError)
    assert raised.value.status == 400


def test_columns_count_characters_not_bytes() -> None:
    with pytest.raises(CelSyntaxError) as raised:
        compile_expression("'éé' + #")
    assert raised.value.column == 8


def test_lines_restart_columns() -> None:
    with pytest.raises(CelSyntaxError) as raised:
        compile_expression("true &&\n\n    false &&\n  )")
    assert (raised.value.line, raised.value.column) == (4, 3)


def test_unknown_macro_shapes_are_ordinary_method_calls() -> None:
    # `exists` with the right shape is a macro; a macro name used otherwise is reported clearly.
    with pytest.raises(CelSyntaxError, match=r"all\(\) is a macro"):
        compile_expression("all([1], x)")
    with pytest.raises(CelSyntaxError, match=r"has\(\) is a macro; write it as has\(a.b\)"):
        compile_expression("a.has(b)")
