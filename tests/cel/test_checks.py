"""Compile-time checks (variables, functions, arity, constant patterns) and ``references``."""

from __future__ import annotations

import pytest

from safar.cel import CelEvalError, CelSyntaxError, compile_expression
from tests.cel.conformance_cases import NAMES


def syntax_error(source: str, names: frozenset[str] | None = NAMES) -> CelSyntaxError:
    with pytest.raises(CelSyntaxError) as raised:
        compile_expression(source, names)
    return raised.value


def test_unknown_variable_is_named_with_the_known_ones() -> None:
    error = syntax_error("evnt.type == 'track'")
    assert str(error) == (
        "line 1, column 1: unknown variable 'evnt' (known: event, journey, now, profile)"
    )


def test_unknown_variable_inside_a_comprehension() -> None:
    error = syntax_error("event.properties.items.exists(i, j.sku == 'A')")
    assert error.reason.startswith("unknown variable 'j'")
    assert error.column == 34


def test_a_loop_variable_is_not_visible_outside_its_macro() -> None:
    assert syntax_error("[1].exists(i, true) && i == 1").reason.startswith("unknown variable 'i'")


def test_root_qualified_name_hidden_by_a_loop_variable_is_rejected() -> None:
    error = syntax_error("[1].exists(event, .event == 1)")
    assert "'.event' is hidden by the comprehension variable" in error.reason


def test_type_names_are_allowed_alongside_declared_variables() -> None:
    assert compile_expression("type(event) == map", NAMES).evaluate({"event": {}}) is True


def test_a_declared_variable_wins_over_a_type_name() -> None:
    program = compile_expression("int + 1", {"int"})
    assert program.evaluate({"int": 41}) == 42
    assert program.references == {"int"}


def test_without_names_any_variable_compiles_and_a_missing_one_fails_at_evaluation() -> None:
    program = compile_expression("anything.goes")
    with pytest.raises(CelEvalError, match="no value for variable 'anything'"):
        program.evaluate({})
    assert program.evaluate({"anything": {"goes": 1}}) == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("foo(1)", "unknown function 'foo'"),
        ("'a'.startWith('a')", "unknown function 'startWith' (did you mean 'startsWith'?)"),
        ("__import__('os')", "unknown function '__import__'"),
        ("size(1, 2)", "size() takes 1 argument, got 2"),
        ("'a'.size(1)", "method size() takes 0 arguments, got 1"),
        ("contains('a', 'b')", "contains() is a method; call it as x.contains(…)"),
        ("'2026'.timestamp()", "timestamp() is not a method; call it as timestamp(x)"),
        ("now.getHours(1, 2)", "method getHours() takes 0 or 1 arguments, got 2"),
        ("'a,b'.split()", "method split() takes 1 or 2 arguments, got 0"),
        ("int()", "int() takes 1 argument, got 0"),
        ("matches('a')", "matches() takes 2 arguments, got 1"),
    ],
)
def test_calls_are_checked_at_compile_time(source: str, message: str) -> None:
    assert syntax_error(source).reason == message


def test_a_bad_constant_pattern_is_a_compile_error_at_the_pattern() -> None:
    error = syntax_error("event.type.matches('[')")
    assert error.column == 20
    assert error.reason.startswith("invalid regular expression '['")


def test_a_too_long_constant_pattern_is_a_compile_error() -> None:
    assert "exceeds 1,000" in syntax_error(f"'a'.matches('{'a' * 1001}')").reason


@pytest.mark.parametrize(
    ("source", "references"),
    [
        ("event.properties.price >= 10", {"event.properties.price"}),
        ("profile.traits.vip == true", {"profile.traits.vip"}),
        (
            "has(profile.traits.timezone) && now - timestamp(profile.traits.signed_up_at)"
            " > duration('720h')",
            {"profile.traits.timezone", "now", "profile.traits.signed_up_at"},
        ),
        ("'gold' in profile.traits.tags", {"profile.traits.tags"}),
        ("event.properties.items.exists(i, i.sku.startsWith('A'))", {"event.properties.items"}),
        (
            "event.properties.items.exists(i, i.price > profile.traits.min)",
            {
                "event.properties.items",
                "profile.traits.min",
            },
        ),
        ("profile.traits['vip']", {"profile.traits"}),
        ("event.properties.items[0].sku", {"event.properties.items"}),
        ("profile.traits.name.startsWith('S')", {"profile.traits.name"}),
        ("size(event.properties) > 0", {"event.properties"}),
        ("now", {"now"}),
        (".event.type", {"event.type"}),
        ("event.a.b == event.a.b && event.a.c", {"event.a.b", "event.a.c"}),
        ("[1].exists(event, event == 1)", set()),
        ("[{'a': 1}][0].a + 1", set()),
        ("type(1) == int", set()),
    ],
)
def test_references_are_the_variable_paths_read(source: str, references: set[str]) -> None:
    program = compile_expression(source, NAMES)
    assert program.references == frozenset(references)
    assert program.source == source
