"""The parsed expression: small immutable nodes, each with ``start``, its offset in the source.

Operators keep their own node kinds rather than becoming calls, ``&&`` and ``||`` are n-ary (a
chain of 40 ``||`` is one node, not 40 levels), and macros are already expanded: ``has(a.b)`` is
:class:`Has`, ``xs.all(x, p)`` is a :class:`Comprehension`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: int, UInt, float, str, bytes, bool or None."""

    start: int
    value: Any

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Ident:
    """A variable name (of the activation or of an enclosing comprehension) or a type name."""

    start: int
    name: str
    root: bool = False
    """Written ``.name``: a variable of the activation even inside a comprehension."""

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Select:
    """``operand.field``."""

    start: int
    operand: Expr
    field: str

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Has:
    """``has(operand.field)``."""

    start: int
    operand: Expr
    field: str

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Index:
    """``operand[index]``."""

    start: int
    operand: Expr
    index: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.operand, self.index)


@dataclass(frozen=True, slots=True)
class Call:
    """``function(args)`` or ``target.function(args)``."""

    start: int
    function: str
    args: tuple[Expr, ...]
    target: Expr | None = None
    """The receiver of ``target.function(args)``; None for ``function(args)``."""

    def children(self) -> tuple[Expr, ...]:
        return self.args if self.target is None else (self.target, *self.args)


@dataclass(frozen=True, slots=True)
class Unary:
    """``!operand`` or ``-operand``."""

    start: int
    op: str  # "!" or "-"
    operand: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True, slots=True)
class Binary:
    """An arithmetic, comparison or ``in`` operator."""

    start: int
    op: str  # + - * / % == != < <= > >= in
    left: Expr
    right: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class And:
    """``a && b && …``, flattened."""

    start: int
    terms: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.terms


@dataclass(frozen=True, slots=True)
class Or:
    """``a || b || …``, flattened."""

    start: int
    terms: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.terms


@dataclass(frozen=True, slots=True)
class Conditional:
    """``condition ? then : otherwise``."""

    start: int
    condition: Expr
    then: Expr
    otherwise: Expr

    def children(self) -> tuple[Expr, ...]:
        return (self.condition, self.then, self.otherwise)


@dataclass(frozen=True, slots=True)
class ListExpr:
    """``[elements]``."""

    start: int
    elements: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.elements


@dataclass(frozen=True, slots=True)
class MapExpr:
    """``{key: value, …}``."""

    start: int
    entries: tuple[tuple[Expr, Expr], ...]

    def children(self) -> tuple[Expr, ...]:
        return tuple(part for entry in self.entries for part in entry)


@dataclass(frozen=True, slots=True)
class Comprehension:
    """``range.macro(var, …)``: ``all``, ``exists``, ``exists_one``, ``filter`` take
    ``predicate``; ``map`` takes ``transform`` and optionally ``predicate`` (a filter first)."""

    start: int
    macro: str
    range: Expr
    var: str
    predicate: Expr | None
    transform: Expr | None

    def children(self) -> tuple[Expr, ...]:
        parts = (self.range, self.predicate, self.transform)
        return tuple(part for part in parts if part is not None)


Expr: TypeAlias = (
    Literal
    | Ident
    | Select
    | Has
    | Index
    | Call
    | Unary
    | Binary
    | And
    | Or
    | Conditional
    | ListExpr
    | MapExpr
    | Comprehension
)
"""Any node."""
