"""Safety limits: source size, nesting, sizes of built values, evaluation budget."""

from __future__ import annotations

import pytest

from safar.cel import CelEvalError, CelSyntaxError, compile_expression
from safar.cel.limits import MAX_DEPTH, MAX_LIST, MAX_SOURCE, MAX_STRING


def test_source_length_is_bounded() -> None:
    at_limit = "1" + " " * (MAX_SOURCE - 1)
    assert compile_expression(at_limit).evaluate({}) == 1
    with pytest.raises(CelSyntaxError, match="is 8,193 characters long; the limit is 8,192"):
        compile_expression(at_limit + " ")


def nested_parens(levels: int) -> str:
    return "(" * levels + "1" + ")" * levels


def test_parentheses_nest_to_the_limit_and_no_further() -> None:
    assert compile_expression(nested_parens(MAX_DEPTH - 1)).evaluate({}) == 1
    with pytest.raises(CelSyntaxError, match="nested too deeply"):
        compile_expression(nested_parens(MAX_DEPTH))


@pytest.mark.parametrize(
    "source",
    [
        "[" * 5000,
        "(" * 5000,
        "!" * 5000 + "true",
        "-" * 5000 + "x",
        "1" + " + 1" * 1000,
        "a" + ".b" * 1000,
        "a" + "[0]" * 1000,
        "x ? 1 : " * 500 + "2",
        "f(" * 2000,
    ],
    ids=["lists", "parens", "nots", "minus", "sum", "selects", "indexes", "ternary", "calls"],
)
def test_deep_or_long_chains_are_syntax_errors_not_crashes(source: str) -> None:
    with pytest.raises(CelSyntaxError, match="nested too deeply"):
        compile_expression(source[:MAX_SOURCE])


def test_the_minimums_cel_promises_are_met() -> None:
    # cel-spec: at least 32 nested levels, 32 terms of one operator, 32 selections, 32 args.
    assert compile_expression(nested_parens(32)).evaluate({}) == 1
    assert compile_expression(" + ".join(["1"] * 32)).evaluate({}) == 32
    assert compile_expression("a" + ".b" * 32).evaluate({"a": _chain(32)}) == "end"
    assert compile_expression(str(list(range(32)))).evaluate({}) == list(range(32))
    assert compile_expression(" && ".join(["true"] * 32)).evaluate({}) is True


def _chain(depth: int) -> object:
    value: object = "end"
    for _ in range(depth):
        value = {"b": value}
    return value


def test_long_and_or_chains_are_flat_and_fine() -> None:
    terms = " || ".join(["x == 1"] * 700) + " || x == 2"
    program = compile_expression(terms)
    assert program.evaluate({"x": 2}) is True
    assert program.evaluate({"x": 3}) is False


def test_string_concatenation_is_capped() -> None:
    half = "x" * (MAX_STRING // 2 + 1)
    program = compile_expression("s + s")
    with pytest.raises(CelEvalError, match="string of 1,048,578 characters exceeds 1,048,576"):
        program.evaluate({"s": half})
    assert len(compile_expression("s + 'a'").evaluate({"s": half})) == len(half) + 1


def test_bytes_concatenation_is_capped() -> None:
    with pytest.raises(CelEvalError, match="exceed"):
        compile_expression("b + b").evaluate({"b": b"x" * (MAX_STRING // 2 + 1)})


def test_list_concatenation_is_capped() -> None:
    half = list(range(MAX_LIST // 2 + 1))
    with pytest.raises(CelEvalError, match="list of 100,002 elements exceeds 100,000"):
        compile_expression("l + l").evaluate({"l": half})


def test_join_checks_the_length_before_joining() -> None:
    program = compile_expression("l.map(x, s).join()")
    with pytest.raises(CelEvalError, match="exceeds 1,048,576"):
        program.evaluate({"l": list(range(10)), "s": "x" * 200_000})


def test_split_is_capped() -> None:
    with pytest.raises(CelEvalError, match="exceeds 100,000"):
        compile_expression("s.split('')").evaluate({"s": "x" * (MAX_LIST + 1)})


def test_nested_comprehensions_run_out_of_iterations() -> None:
    program = compile_expression("l.all(a, l.all(b, true))")
    with pytest.raises(CelEvalError, match="exceeds 1,000,000 comprehension iterations"):
        program.evaluate({"l": list(range(1001))})
    # The budget is per evaluation: a smaller input in the next one is fine.
    assert program.evaluate({"l": list(range(900))}) is True


def test_allocation_inside_comprehensions_is_bounded() -> None:
    program = compile_expression("l.map(x, s + s)")
    with pytest.raises(CelEvalError, match="allocates more than 10,000,000"):
        program.evaluate({"l": list(range(30)), "s": "x" * 400_000})


def test_many_allocations_without_comprehensions_are_bounded_too() -> None:
    many = "[" + ", ".join(["s + s"] * 20) + "]"
    with pytest.raises(CelEvalError, match="allocates more than 10,000,000"):
        compile_expression(many).evaluate({"s": "x" * 300_000})


def test_a_long_dynamic_pattern_is_an_evaluation_error() -> None:
    with pytest.raises(CelEvalError, match="regular expression of 1,001 characters"):
        compile_expression("'a'.matches(p)").evaluate({"p": "a" * 1001})


def test_deeply_nested_values_are_an_evaluation_error_not_a_crash() -> None:
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CelEvalError, match="nested too deeply"):
        compile_expression("a == b").evaluate({"a": deep, "b": deep})
