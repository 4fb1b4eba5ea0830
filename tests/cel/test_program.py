"""The public API: ``Program.evaluate`` and ``Program.test``, host values, isolation."""

from __future__ import annotations

import copy
import enum
import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

import safar.cel
from safar.cel import CelError, CelEvalError, Program, compile_expression
from safar.cel.values import UInt
from tests.cel.conformance_cases import ACTIVATION, NAMES


def test_public_api_is_exactly_this() -> None:
    assert sorted(safar.cel.__all__) == [
        "CelError",
        "CelEvalError",
        "CelSyntaxError",
        "Program",
        "compile_expression",
    ]
    assert issubclass(CelEvalError, CelError)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", False),
        ("'true'", False),
        ("null", False),
        ("[true]", False),
        ("profile.traits.missing", False),
        ("1 / 0 == 1", False),
        ("profile.traits.vip", True),
    ],
)
def test_test_is_true_only_for_exactly_true(source: str, expected: bool) -> None:
    assert compile_expression(source, NAMES).test(ACTIVATION) is expected


def test_evaluation_errors_are_validation_errors_with_a_message() -> None:
    with pytest.raises(CelEvalError) as raised:
        compile_expression("profile.traits.vip + 1", NAMES).evaluate(ACTIVATION)
    assert str(raised.value) == "no matching overload for '_+_' on (bool, int)"
    assert raised.value.status == 400


def test_a_program_is_reusable_and_describes_itself() -> None:
    program = compile_expression("x * 2")
    assert isinstance(program, Program)
    assert [program.evaluate({"x": n}) for n in (1, 2, 3)] == [2, 4, 6]
    assert repr(program) == "Program('x * 2')"


def test_the_activation_is_never_changed() -> None:
    before = copy.deepcopy(ACTIVATION)
    for source in (
        "[1, 2].exists(event, event == 2)",
        "event.properties.items.map(i, i.sku + '!')",
        "profile.traits.tags + ['x']",
    ):
        compile_expression(source, NAMES).evaluate(ACTIVATION)
    assert before == ACTIVATION


class Obj:
    """A host object: its attributes must stay out of reach."""

    secret = "s3cret"

    def __getitem__(self, key: str) -> str:
        return "from __getitem__"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("o.secret", "cannot select field 'secret' from unsupported Obj"),
        ("o['secret']", "no matching overload for '_[_]' on (unsupported Obj, string)"),
        ("has(o.secret)", "has() needs a map"),
        ("event.__class__", "no such key '__class__'"),
        ("event.properties.__len__", "no such key '__len__'"),
    ],
)
def test_python_attributes_are_out_of_reach(source: str, message: str) -> None:
    with pytest.raises(CelEvalError, match=re.escape(message)):
        compile_expression(source).evaluate({"o": Obj(), **ACTIVATION})


class Broken(Mapping[str, Any]):
    """A host mapping that fails in a way CEL knows nothing about."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("database down")

    def __iter__(self) -> Iterator[str]:
        return iter(["a"])

    def __len__(self) -> int:
        return 1


def test_unexpected_host_failures_become_evaluation_errors() -> None:
    program = compile_expression("m.a == 1")
    with pytest.raises(CelEvalError, match="evaluation failed: RuntimeError: database down"):
        program.evaluate({"m": Broken()})
    assert program.test({"m": Broken()}) is False


def test_host_mappings_tuples_and_subclasses_are_accepted() -> None:
    class Plan(enum.IntEnum):
        PRO = 2

    class Name(str):
        pass

    activation = {
        "m": MappingProxyType({"a": {"b": 1}}),
        "t": ("a", "b"),
        "plan": Plan.PRO,
        "name": Name("sara"),
    }
    checks = [
        "m.a.b == 1",
        "has(m.a)",
        "'a' in m",
        "'a' in t && size(t) == 2 && t == ['a', 'b'] && t + ['c'] == ['a', 'b', 'c']",
        "t.exists(x, x == 'b') && t[1] == 'b'",
        "plan + 1 == 3 && plan == 2 && type(plan) == int",
        "name.startsWith('s') && name == 'sara' && name + '!' == 'sara!'",
    ]
    for source in checks:
        assert compile_expression(source).evaluate(activation) is True, source


def test_a_naive_datetime_is_taken_as_utc() -> None:
    program = compile_expression("now == timestamp('2026-11-23T12:00:00Z') && now < later")
    naive = datetime(2026, 11, 23, 12, 0)
    assert program.evaluate({"now": naive, "later": datetime(2026, 11, 24, tzinfo=UTC)}) is True


def test_uint_results_stay_uint() -> None:
    value = compile_expression("uint(x) * 2u").evaluate({"x": 21})
    assert type(value) is UInt
    assert value == 42
    assert repr(value) == "42u"


def test_type_values_print_their_name() -> None:
    assert repr(compile_expression("type(now)").evaluate({"now": datetime.now(UTC)})) == (
        "google.protobuf.Timestamp"
    )


def test_programs_are_safe_to_share_between_threads() -> None:
    program = compile_expression("items.map(i, i * n).filter(x, x % 2 == 0).size()")

    def run(n: int) -> int:
        return int(program.evaluate({"items": list(range(100)), "n": n}))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, [1, 2, 3, 4] * 25))
    assert results == [50, 100, 50, 100] * 25


def test_constant_subexpressions_are_folded_but_errors_wait_for_evaluation() -> None:
    # Folded: the parse of the duration happens once, at compile time.
    program = compile_expression("duration('720h') < d")
    assert program.test({"d": compile_expression("duration('721h')").evaluate({})})
    # Not folded: a constant error stays an error of evaluation, absorbable by &&.
    assert compile_expression("x && 1 / 0 == 1").evaluate({"x": False}) is False
    with pytest.raises(CelEvalError, match="division by zero"):
        compile_expression("x && 1 / 0 == 1").evaluate({"x": True})
