"""Compile-time checks on the syntax tree, and what the compiler needs to know from them.

Checks: every root identifier is a declared variable (when names are given) or a type name;
every call names a known function, in a call style and with an argument count it accepts.
Finds: the dotted paths the expression reads from its variables (``references``) and whether
evaluation needs a :class:`~safar.cel.limits.Budget` (comprehensions, or many allocations).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final

from safar.cel.ast import (
    Binary,
    Call,
    Comprehension,
    Expr,
    Has,
    Ident,
    ListExpr,
    MapExpr,
    Select,
)
from safar.cel.errors import CelSyntaxError
from safar.cel.functions import FUNCTIONS, MACROS
from safar.cel.values import TYPE_DENOTATIONS

UNBUDGETED_ALLOCATIONS: Final = 16
"""Allocating nodes an expression without comprehensions may have before it gets a budget:
each runs at most once and is capped in size, so a few of them cannot add up to much."""


@dataclass(frozen=True, slots=True)
class Analysis:
    references: frozenset[str]
    budgeted: bool


def is_type_denotation(node: Ident, scope: frozenset[str], names: Collection[str] | None) -> bool:
    """Whether ``node`` names a type (``int``, ``string``, …) rather than a variable."""
    return (
        node.name in TYPE_DENOTATIONS
        and node.name not in scope
        and (names is None or node.name not in names)
    )


def check(source: str, tree: Expr, names: Collection[str] | None) -> Analysis:
    """Check ``tree`` (see the module docstring); raises :class:`CelSyntaxError`."""
    walker = _Walker(source, names)
    walker.visit(tree, frozenset())
    budgeted = walker.comprehensions > 0 or walker.allocations > UNBUDGETED_ALLOCATIONS
    return Analysis(frozenset(walker.references), budgeted)


@dataclass
class _Walker:
    source: str
    names: Collection[str] | None
    references: set[str] = field(default_factory=set)
    comprehensions: int = 0
    allocations: int = 0

    def error(self, node: Expr, message: str) -> CelSyntaxError:
        return CelSyntaxError.at(self.source, node.start, message)

    def visit(self, node: Expr, scope: frozenset[str]) -> None:
        path = self.path(node, scope)
        if path is not None:
            # A read from a variable: record the whole dotted path, not each prefix of it.
            self.references.add(path)
            return
        if isinstance(node, Ident):
            self.ident(node, scope)
        elif isinstance(node, Comprehension):
            self.comprehensions += 1
            self.visit(node.range, scope)
            inner = scope | {node.var}
            for part in (node.predicate, node.transform):
                if part is not None:
                    self.visit(part, inner)
            return
        elif isinstance(node, Call):
            self.call(node)
        elif isinstance(node, ListExpr | MapExpr) or (isinstance(node, Binary) and node.op == "+"):
            self.allocations += 1
        for child in node.children():
            self.visit(child, scope)

    def path(self, node: Expr, scope: frozenset[str]) -> str | None:
        """``a.b.c`` for a field selection chain on a variable (or ``has()`` of one)."""
        if isinstance(node, Ident):
            if (node.name in scope and not node.root) or is_type_denotation(
                node, scope, self.names
            ):
                return None
            self.ident(node, scope)
            return node.name
        if isinstance(node, Select | Has):
            prefix = self.path(node.operand, scope)
            return None if prefix is None else f"{prefix}.{node.field}"
        return None

    def ident(self, node: Ident, scope: frozenset[str]) -> None:
        if node.name in scope:
            if node.root:
                raise self.error(
                    node,
                    f"'.{node.name}' is hidden by the comprehension variable '{node.name}';"
                    " rename the variable",
                )
            return
        if self.names is None or node.name in self.names:
            return
        if is_type_denotation(node, scope, self.names):
            return
        known = ", ".join(sorted(self.names))
        raise self.error(node, f"unknown variable '{node.name}' (known: {known})")

    def call(self, node: Call) -> None:
        name = node.function
        function = FUNCTIONS.get(name)
        if function is None:
            if name in MACROS:
                usage = "has(a.b)" if name == "has" else f"items.{name}(x, …)"
                raise self.error(node, f"{name}() is a macro; write it as {usage}")
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(node, f"unknown function '{name}'{hint}")
        if function.allocates:
            self.allocations += 1
        count = len(node.args)
        if node.target is None:
            if count in function.global_arities:
                return
            if not function.global_arities:
                raise self.error(node, f"{name}() is a method; call it as x.{name}(…)")
            raise self.error(
                node, f"{name}() takes {_counts(function.global_arities)}, got {count}"
            )
        if count in function.method_arities:
            return
        if not function.method_arities:
            raise self.error(node, f"{name}() is not a method; call it as {name}(x)")
        raise self.error(
            node, f"method {name}() takes {_counts(function.method_arities)}, got {count}"
        )


def _counts(arities: frozenset[int]) -> str:
    ordered = sorted(arities)
    text = " or ".join(str(n) for n in ordered)
    return f"{text} argument{'' if ordered == [1] else 's'}"
