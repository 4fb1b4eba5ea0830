"""Compiling an expression once into a :class:`Program`, and running it many times."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from safar.cel.checker import check
from safar.cel.compiler import compile_tree
from safar.cel.errors import CelEvalError
from safar.cel.limits import BUDGET_KEY, Budget
from safar.cel.parser import parse


class Program:
    """A compiled CEL expression. Immutable and safe to share between threads.

    ``references`` holds the dotted paths the expression reads from its variables, up to the
    first step that is not a field selection: ``event.properties.items.exists(i, …)`` reads
    ``event.properties.items``; ``profile.traits["vip"]`` reads ``profile.traits``.
    """

    __slots__ = ("_budgeted", "_fn", "_references", "_source")

    def __init__(
        self,
        source: str,
        references: frozenset[str],
        fn: Callable[[Mapping[str, Any]], Any],
        budgeted: bool,
    ) -> None:
        self._source = source
        self._references = references
        self._fn = fn
        self._budgeted = budgeted

    @property
    def source(self) -> str:
        """The expression as written."""
        return self._source

    @property
    def references(self) -> frozenset[str]:
        """Dotted paths read from the variables, e.g. ``{"event.properties.price"}``."""
        return self._references

    def __repr__(self) -> str:
        return f"Program({self.source!r})"

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The value of the expression with these variables; raises :class:`CelEvalError`.

        The result may share lists and maps with the activation and with the program's
        constants: treat it as read-only.
        """
        try:
            if self._budgeted:
                activation = {**activation, BUDGET_KEY: Budget()}
            return self._fn(activation)
        except CelEvalError:
            raise
        except RecursionError:
            raise CelEvalError("value is nested too deeply to evaluate") from None
        except Exception as exc:
            # A host value that misbehaves (an odd Mapping, a raising __eq__) must not escape
            # as anything but an evaluation error.
            raise CelEvalError(f"evaluation failed: {type(exc).__name__}: {exc}") from exc

    def test(self, activation: Mapping[str, Any]) -> bool:
        """Whether the expression is exactly ``true``: an error or a non-bool is ``False``."""
        try:
            return self.evaluate(activation) is True
        except CelEvalError:
            return False


def compile_expression(source: str, names: Collection[str] | None = None) -> Program:
    """Parse, check and compile a CEL expression; raises :class:`CelSyntaxError`.

    ``names``, when given, are the variables the expression may use (Safar passes
    ``{"event", "profile", "journey", "now"}``); any other root identifier is an error.
    """
    tree = parse(source)
    analysis = check(source, tree, names)
    fn = compile_tree(source, tree, names, analysis.budgeted)
    return Program(source, analysis.references, fn, analysis.budgeted)
