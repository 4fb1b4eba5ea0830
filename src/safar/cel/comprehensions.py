"""The loop macros as closures: ``all``, ``exists``, ``exists_one``, ``filter`` and ``map``.

They run over a list's elements or a map's keys, binding the loop variable in the scope: the
evaluation's private copy of the activation (see :class:`~safar.cel.program.Program`), where a
shadowed name is put back when the loop ends. Every iteration is paid for up front from the
evaluation's :class:`~safar.cel.limits.Budget`.

Errors follow CEL: ``all`` is false as soon as one predicate is false and ``exists`` true as soon
as one is true, whatever errors other elements raised; otherwise the first error is raised.
``exists_one``, ``filter`` and ``map`` raise any error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from safar.cel.errors import CelEvalError
from safar.cel.limits import BUDGET_KEY, Budget, check_list_size
from safar.cel.values import MISSING, kind, no_overload, type_name

Eval = Callable[[Mapping[str, Any]], Any]
Scope = Any  # a dict in practice; typed loosely because closures take it as a Mapping


def _domain(value: Any, macro: str) -> Any:
    t = type(value)
    if t is list or t is dict or t is tuple:
        return value
    if kind(value) in (list, dict):
        return value
    raise CelEvalError(f"{macro}() needs a list or a map, got {type_name(value)}")


def _pay(scope: Scope, items: Any) -> None:
    budget: Budget = scope[BUDGET_KEY]
    budget.iterate(len(items))


def _restore(scope: Scope, var: str, previous: Any) -> None:
    if previous is MISSING:
        scope.pop(var, None)
    else:
        scope[var] = previous


def build(
    macro: str, source: Eval, var: str, predicate: Eval | None, transform: Eval | None
) -> Eval:
    """The closure evaluating ``source.macro(var, …)``."""
    if macro == "all":
        assert predicate is not None
        return _quantifier(source, var, predicate, stop=False, symbol="_&&_", macro=macro)
    if macro == "exists":
        assert predicate is not None
        return _quantifier(source, var, predicate, stop=True, symbol="_||_", macro=macro)
    if macro == "exists_one":
        assert predicate is not None
        return _exists_one(source, var, predicate)
    if macro == "filter":
        assert predicate is not None
        return _map(source, var, predicate, None, "filter")
    assert transform is not None
    return _map(source, var, predicate, transform, "map")


def _quantifier(
    source: Eval, var: str, predicate: Eval, stop: bool, symbol: str, macro: str
) -> Eval:
    """``all`` (stops at False) or ``exists`` (stops at True)."""

    go_on = not stop

    def quantify(scope: Scope) -> bool:
        items = _domain(source(scope), macro)
        _pay(scope, items)
        previous = scope.get(var, MISSING)
        error: CelEvalError | None = None
        try:
            for item in items:
                scope[var] = item
                try:
                    result = predicate(scope)
                except CelEvalError as exc:
                    error = error or exc
                    continue
                if result is stop:
                    return not go_on
                if result is not go_on and error is None:
                    error = no_overload(symbol, result)
        finally:
            _restore(scope, var, previous)
        if error is not None:
            raise error
        return go_on

    return quantify


def _exists_one(source: Eval, var: str, predicate: Eval) -> Eval:
    def exists_one(scope: Scope) -> bool:
        items = _domain(source(scope), "exists_one")
        _pay(scope, items)
        previous = scope.get(var, MISSING)
        count = 0
        try:
            for item in items:
                scope[var] = item
                result = predicate(scope)
                if result is True:
                    count += 1
                elif result is not False:
                    raise no_overload("exists_one", result)
        finally:
            _restore(scope, var, previous)
        return count == 1

    return exists_one


def _map(
    source: Eval, var: str, predicate: Eval | None, transform: Eval | None, macro: str
) -> Eval:
    def mapped(scope: Scope) -> list[Any]:
        items = _domain(source(scope), macro)
        _pay(scope, items)
        check_list_size(len(items))
        previous = scope.get(var, MISSING)
        out: list[Any] = []
        try:
            for item in items:
                scope[var] = item
                if predicate is not None:
                    keep = predicate(scope)
                    if keep is False:
                        continue
                    if keep is not True:
                        raise no_overload(macro, keep)
                out.append(item if transform is None else transform(scope))
        finally:
            _restore(scope, var, previous)
        return out

    return mapped
