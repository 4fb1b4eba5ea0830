"""Syntax tree to nested Python closures, folding constant sub-expressions on the way.

A sub-expression whose parts are all constant is evaluated once, here; if that fails, it stays a
closure so the error happens at evaluation, where ``false && 1 / 0`` can still absorb it. In a
budgeted program (see :mod:`safar.cel.checker`) every operation that may build a string or list
charges its size to the evaluation's budget.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, NamedTuple

from safar.cel import closures
from safar.cel.access import has, index, select
from safar.cel.arith import BINARY, logical_not, negate
from safar.cel.ast import (
    And,
    Binary,
    Call,
    Comprehension,
    Conditional,
    Expr,
    Has,
    Ident,
    Index,
    ListExpr,
    Literal,
    MapExpr,
    Or,
    Select,
    Unary,
)
from safar.cel.checker import is_type_denotation
from safar.cel.comprehensions import build
from safar.cel.errors import CelEvalError, CelSyntaxError
from safar.cel.functions import FUNCTIONS
from safar.cel.limits import BUDGET_KEY, Budget
from safar.cel.text import matcher, pattern
from safar.cel.values import (
    TYPES,
    UInt,
    greater,
    greater_equal,
    kind,
    less,
    less_equal,
    no_overload,
    type_name,
)

Eval = Callable[[Mapping[str, Any]], Any]

_ORDERINGS: Final = {
    "<": (less, operator.lt),
    "<=": (less_equal, operator.le),
    ">": (greater, operator.gt),
    ">=": (greater_equal, operator.ge),
}
_SIZED: Final = frozenset({str, bytes, list, dict})
_MAP_KEY_KINDS: Final = frozenset({str, int, UInt, bool})


class Code(NamedTuple):
    """A compiled sub-expression; ``constant`` ones also carry their ``value``."""

    fn: Eval
    constant: bool = False
    value: Any = None


def constant(value: Any) -> Code:
    """The code for a value known at compile time."""
    return Code(lambda _act: value, True, value)


def compile_tree(source: str, tree: Expr, names: Collection[str] | None, budgeted: bool) -> Eval:
    """The closure that evaluates ``tree`` against an activation."""
    return _Compiler(source, names, budgeted).compile(tree, frozenset()).fn


class _Compiler:
    def __init__(self, source: str, names: Collection[str] | None, budgeted: bool) -> None:
        self.source = source
        self.names = names
        self.budgeted = budgeted

    def fold(self, fn: Eval, *parts: Code) -> Code:
        """``fn`` as a constant if its parts are constant and it evaluates without error."""
        if all(part.constant for part in parts):
            try:
                return constant(fn({BUDGET_KEY: Budget()}))
            except CelEvalError:
                pass
        return Code(fn)

    def charged(self, fn: Eval) -> Eval:
        """``fn``, charging the size of strings and lists it returns, in budgeted programs."""
        if not self.budgeted:
            return fn

        def charge(act: Mapping[str, Any]) -> Any:
            value = fn(act)
            if type(value) in _SIZED:
                act[BUDGET_KEY].allocate(len(value))
            return value

        return charge

    def compile(self, node: Expr, scope: frozenset[str]) -> Code:
        if isinstance(node, Literal):
            return constant(node.value)
        if isinstance(node, Ident):
            if is_type_denotation(node, scope, self.names):
                return constant(TYPES[node.name])
            return Code(closures.variable(node.name))
        if isinstance(node, Select):
            return self.select(node, scope)
        if isinstance(node, Has):
            return self.has(node, scope)
        if isinstance(node, Index):
            return self.index(node, scope)
        if isinstance(node, Call):
            return self.call(node, scope)
        if isinstance(node, Unary):
            return self.unary(node, scope)
        if isinstance(node, Binary):
            return self.binary(node, scope)
        if isinstance(node, And | Or):
            return self.logical(node, scope)
        if isinstance(node, Conditional):
            return self.conditional(node, scope)
        if isinstance(node, ListExpr):
            return self.list(node, scope)
        if isinstance(node, MapExpr):
            return self.map(node, scope)
        return self.comprehension(node, scope)

    def variable_path(self, node: Expr, scope: frozenset[str]) -> tuple[str, ...] | None:
        """``("a", "b", "c")`` for ``a.b.c`` on a variable, else None."""
        fields: list[str] = []
        while isinstance(node, Select):
            fields.append(node.field)
            node = node.operand
        if isinstance(node, Ident) and not is_type_denotation(node, scope, self.names):
            return (node.name, *reversed(fields))
        return None

    def select(self, node: Select, scope: frozenset[str]) -> Code:
        path = self.variable_path(node, scope)
        if path is not None:
            return Code(closures.path(path[0], path[1:]))
        operand = self.compile(node.operand, scope)
        read, field = operand.fn, node.field
        return self.fold(lambda act: select(read(act), field), operand)

    def has(self, node: Has, scope: frozenset[str]) -> Code:
        operand = self.compile(node.operand, scope)
        read, field = operand.fn, node.field

        def has_field(act: Mapping[str, Any]) -> bool:
            value = read(act)
            if type(value) is dict:
                return field in value
            return has(value, field)

        return self.fold(has_field, operand)

    def index(self, node: Index, scope: frozenset[str]) -> Code:
        operand = self.compile(node.operand, scope)
        key = self.compile(node.index, scope)
        read, read_key = operand.fn, key.fn

        def indexed(act: Mapping[str, Any]) -> Any:
            container = read(act)
            k = read_key(act)
            if type(container) is dict and type(k) is str and k in container:
                return container[k]
            return index(container, k)

        return self.fold(indexed, operand, key)

    def call(self, node: Call, scope: frozenset[str]) -> Code:
        function = FUNCTIONS[node.function]
        parts = [self.compile(arg, scope) for arg in node.children()]
        impl = function.impl
        if node.function == "matches" and parts[1].constant:
            impl, parts = self.matches_constant(node, parts)
        fns = [part.fn for part in parts]
        fn: Eval
        if len(fns) == 1:
            (a,) = fns
            fn = lambda act: impl(a(act))  # noqa: E731
        elif len(fns) == 2 and parts[1].constant:
            a, b_value = fns[0], parts[1].value
            fn = lambda act: impl(a(act), b_value)  # noqa: E731
        elif len(fns) == 2:
            a, b = fns
            fn = lambda act: impl(a(act), b(act))  # noqa: E731
        else:
            fn = lambda act: impl(*[f(act) for f in fns])  # noqa: E731
        return self.fold(self.charged(fn) if function.allocates else fn, *parts)

    def matches_constant(self, node: Call, parts: list[Code]) -> tuple[Any, list[Code]]:
        """Compile a constant pattern now, so a bad one is a compile error with a position."""
        regex = parts[1].value
        if kind(regex) is not str:
            return FUNCTIONS["matches"].impl, parts
        try:
            compiled = pattern(regex)
        except CelEvalError as exc:
            argument = node.args[-1]
            raise CelSyntaxError.at(self.source, argument.start, exc.reason) from None
        return matcher(compiled), parts[:1]

    def unary(self, node: Unary, scope: frozenset[str]) -> Code:
        operand = self.compile(node.operand, scope)
        read = operand.fn
        if node.op == "-":
            return self.fold(lambda act: negate(read(act)), operand)

        def not_(act: Mapping[str, Any]) -> bool:
            value = read(act)
            if value is True:
                return False
            if value is False:
                return True
            return logical_not(value)

        return self.fold(not_, operand)

    def binary(self, node: Binary, scope: frozenset[str]) -> Code:
        left = self.compile(node.left, scope)
        right = self.compile(node.right, scope)
        a, b = left.fn, right.fn
        op = node.op
        fn: Eval
        if op in ("==", "!="):
            fn = closures.equal(a, b, right.constant, right.value, negate=op == "!=")
        elif op in _ORDERINGS:
            compare, fast = _ORDERINGS[op]
            fn = closures.order(a, b, right.constant, right.value, compare, fast)
        elif op == "in":
            fn = closures.within(a, b, right.constant, right.value)
        else:
            arithmetic = BINARY[op]
            fn = lambda act: arithmetic(a(act), b(act))  # noqa: E731
            if op == "+":
                fn = self.charged(fn)
        return self.fold(fn, left, right)

    def logical(self, node: And | Or, scope: frozenset[str]) -> Code:
        is_and = isinstance(node, And)
        absorbing = not is_and  # False decides an &&, True decides an ||
        codes = [self.compile(term, scope) for term in node.terms]
        if any(code.constant and code.value is absorbing for code in codes):
            return constant(absorbing)  # decides the result whatever the other terms do
        kept = [code for code in codes if not (code.constant and code.value is (not absorbing))]
        if not kept:
            return constant(not absorbing)
        if len(kept) == 1:
            # A lone term must still be checked to be a bool; keep the neutral constants so an
            # error names the operands as written.
            kept = codes
        fns = [code.fn for code in kept]
        fn = closures.logical_and(fns) if is_and else closures.logical_or(fns)
        return self.fold(fn, *kept)

    def conditional(self, node: Conditional, scope: frozenset[str]) -> Code:
        condition = self.compile(node.condition, scope)
        then = self.compile(node.then, scope)
        otherwise = self.compile(node.otherwise, scope)
        if condition.constant and type(condition.value) is bool:
            return then if condition.value else otherwise
        test, yes, no = condition.fn, then.fn, otherwise.fn

        def choose(act: Mapping[str, Any]) -> Any:
            value = test(act)
            if value is True:
                return yes(act)
            if value is False:
                return no(act)
            raise no_overload("_?_:_", value)

        return Code(choose)

    def list(self, node: ListExpr, scope: frozenset[str]) -> Code:
        elements = [self.compile(element, scope) for element in node.elements]
        fns = [element.fn for element in elements]
        return self.fold(self.charged(lambda act: [f(act) for f in fns]), *elements)

    def map(self, node: MapExpr, scope: frozenset[str]) -> Code:
        entries = [
            (self.compile(key, scope), self.compile(value, scope)) for key, value in node.entries
        ]
        fns = [(key.fn, value.fn) for key, value in entries]

        def build_map(act: Mapping[str, Any]) -> dict[Any, Any]:
            result: dict[Any, Any] = {}
            for read_key, read_value in fns:
                key = read_key(act)
                if kind(key) not in _MAP_KEY_KINDS:
                    raise CelEvalError(f"unsupported map key type {type_name(key)}")
                if key in result:
                    raise CelEvalError(f"duplicate map key {key!r}")
                result[key] = read_value(act)
            return result

        parts = [part for entry in entries for part in entry]
        return self.fold(self.charged(build_map), *parts)

    def comprehension(self, node: Comprehension, scope: frozenset[str]) -> Code:
        source = self.compile(node.range, scope)
        inner = scope | {node.var}
        predicate = None if node.predicate is None else self.compile(node.predicate, inner)
        transform = None if node.transform is None else self.compile(node.transform, inner)
        fn = build(
            node.macro,
            source.fn,
            node.var,
            None if predicate is None else predicate.fn,
            None if transform is None else transform.fn,
        )
        # The body depends on the loop variable, so only the range could be constant: no folding.
        return Code(fn)
