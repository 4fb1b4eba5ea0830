"""Tokens to a syntax tree: recursive descent for the structure, operator precedence for the
binary operators, macro expansion on the way.

Precedence, loosest first: ``?:``, ``||``, ``&&``, relations (``< <= > >= == != in``), ``+ -``,
``* / %``, unary ``! -``, then member access, indexing and calls. Recursion happens only for
nested sub-expressions and is bounded by :data:`~safar.cel.limits.MAX_DEPTH`; the finished tree
is measured again, so long left-leaning chains like ``a + b + … + z`` are bounded too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

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
from safar.cel.errors import CelSyntaxError
from safar.cel.lexer import RESERVED, Token, tokenize
from safar.cel.limits import MAX_DEPTH, MAX_SOURCE
from safar.cel.values import INT_MAX, INT_MIN, UINT_MAX, UInt

_PRECEDENCE: Final = {
    "||": 1,
    "&&": 2,
    **dict.fromkeys(("==", "!=", "<", "<=", ">", ">=", "in"), 3),
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
}
_LOOP_MACROS: Final = {
    "all": (2,),
    "exists": (2,),
    "exists_one": (2,),
    "filter": (2,),
    "map": (2, 3),
}
_CONSTANTS: Final = {"true": True, "false": False, "null": None}
_T = TypeVar("_T")


def parse(source: str) -> Expr:
    """The syntax tree of ``source``; raises :class:`CelSyntaxError`."""
    if len(source) > MAX_SOURCE:
        raise CelSyntaxError.at(
            source,
            MAX_SOURCE,
            f"expression is {len(source):,} characters long; the limit is {MAX_SOURCE:,}",
        )
    parser = _Parser(source, tokenize(source))
    tree = parser.expression()
    last = parser.peek()
    if last.kind != "eof":
        raise parser.error(last, f"expected an operator or the end but found {describe(last)}")
    _check_depth(source, tree)
    return tree


def describe(token: Token) -> str:
    """A token as error messages name it."""
    if token.kind == "eof":
        return "end of expression"
    if token.kind == "ident":
        return f"identifier '{token.value}'"
    if token.kind in ("int", "uint", "double"):
        return f"number {token.value}"
    if token.kind in ("string", "bytes"):
        return f"{token.kind} {token.value!r}"
    return f"'{token.kind}'"


class _Parser:
    def __init__(self, source: str, tokens: list[Token]) -> None:
        self.source = source
        self.tokens = tokens
        self.position = 0
        self.nesting = 0

    def peek(self) -> Token:
        return self.tokens[self.position]

    def advance(self) -> Token:
        token = self.tokens[self.position]
        if token.kind != "eof":
            self.position += 1
        return token

    def expect(self, kind: str, what: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise self.error(token, f"expected {what} but found {describe(token)}")
        return self.advance()

    def error(self, token: Token, message: str) -> CelSyntaxError:
        return CelSyntaxError.at(self.source, token.start, message)

    def expression(self) -> Expr:
        """``or ['?' or ':' expression]``, one level of nesting deeper."""
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(self.peek(), _too_deep())
        condition = self.binary()
        if self.peek().kind == "?":
            question = self.advance()
            then = self.binary()
            self.expect(":", "':' of the conditional ?:")
            otherwise = self.expression()
            condition = Conditional(question.start, condition, then, otherwise)
        self.nesting -= 1
        return condition

    def binary(self) -> Expr:
        """Binary operators by precedence climbing on an explicit stack (no recursion)."""
        operands = [self.unary()]
        operators: list[Token] = []
        while (precedence := _PRECEDENCE.get(self.peek().kind)) is not None:
            while operators and _PRECEDENCE[operators[-1].kind] >= precedence:
                self._reduce(operands, operators.pop())
            operators.append(self.advance())
            operands.append(self.unary())
        while operators:
            self._reduce(operands, operators.pop())
        return operands[0]

    @staticmethod
    def _reduce(operands: list[Expr], operator: Token) -> None:
        right = operands.pop()
        left = operands.pop()
        if operator.kind == "&&":
            # && and || are associative and commutative in CEL, so chains flatten to one node.
            terms = (*_terms(left, And), *_terms(right, And))
            operands.append(And(operator.start, terms))
        elif operator.kind == "||":
            operands.append(Or(operator.start, (*_terms(left, Or), *_terms(right, Or))))
        else:
            operands.append(Binary(operator.start, operator.kind, left, right))

    def unary(self) -> Expr:
        operators: list[Token] = []
        while self.peek().kind in ("!", "-"):
            operators.append(self.advance())
        node: Expr | None = None
        if operators and operators[-1].kind == "-" and self.peek().kind in ("int", "double"):
            # A minus sign on a literal is part of it, so the smallest int can be written.
            minus = operators.pop()
            literal = self.number(self.advance(), negative=True)
            node = Literal(minus.start, literal.value)
        node = self.member(node)
        for operator in reversed(operators):
            node = Unary(operator.start, operator.kind, node)
        return node

    def member(self, node: Expr | None) -> Expr:
        if node is None:
            node = self.primary()
        while True:
            token = self.peek()
            if token.kind == ".":
                self.advance()
                name = self.field_name()
                if self.peek().kind == "(":
                    node = self.method(name, node, self.arguments())
                else:
                    node = Select(name.start, node, name.value)
            elif token.kind == "[":
                self.advance()
                key = self.expression()
                self.expect("]", "']'")
                node = Index(token.start, node, key)
            elif token.kind == "{" and isinstance(node, Ident | Select):
                raise self.error(token, "message construction (Type{...}) is not supported")
            else:
                return node

    def primary(self) -> Expr:
        token = self.advance()
        kind = token.kind
        if kind in ("int", "uint", "double"):
            return self.number(token, negative=False)
        if kind in ("string", "bytes"):
            return Literal(token.start, token.value)
        if kind in _CONSTANTS:
            return Literal(token.start, _CONSTANTS[kind])
        if kind == "(":
            inner = self.expression()
            self.expect(")", "')'")
            return inner
        if kind == "[":
            return ListExpr(token.start, tuple(self.items("]", self.expression)))
        if kind == "{":
            return MapExpr(token.start, tuple(self.items("}", self.entry)))
        if kind == "." and self.peek().kind == "ident":
            name = self.field_name()
            if self.peek().kind == "(":
                return self.function(name, self.arguments())
            return Ident(name.start, name.value, root=True)
        if kind == "ident":
            self.check_reserved(token)
            if self.peek().kind == "(":
                return self.function(token, self.arguments())
            return Ident(token.start, token.value)
        raise self.error(token, f"expected an expression but found {describe(token)}")

    def number(self, token: Token, negative: bool) -> Literal:
        value = token.value
        if token.kind == "double":
            return Literal(token.start, -value if negative else value)
        if token.kind == "uint":
            if value > UINT_MAX:
                raise self.error(token, f"uint literal {value}u is out of range")
            return Literal(token.start, UInt(value))
        if value > (-INT_MIN if negative else INT_MAX):
            shown = f"-{value}" if negative else str(value)
            raise self.error(token, f"int literal {shown} is out of range (64-bit)")
        return Literal(token.start, -value if negative else value)

    def field_name(self) -> Token:
        token = self.peek()
        if token.kind != "ident":
            raise self.error(token, f"expected a field name after '.' but found {describe(token)}")
        self.check_reserved(token)
        return self.advance()

    def check_reserved(self, token: Token) -> None:
        if token.value in RESERVED:
            raise self.error(token, f"'{token.value}' is a reserved word")

    def arguments(self) -> list[Expr]:
        self.expect("(", "'('")
        return self.items(")", self.expression, trailing_comma=False)

    def items(self, close: str, item: Callable[[], _T], trailing_comma: bool = True) -> list[_T]:
        found: list[_T] = []
        if self.peek().kind == close:
            self.advance()
            return found
        while True:
            found.append(item())
            token = self.advance()
            if token.kind == close:
                return found
            if token.kind != ",":
                raise self.error(token, f"expected ',' or '{close}' but found {describe(token)}")
            if trailing_comma and self.peek().kind == close:
                self.advance()
                return found

    def entry(self) -> tuple[Expr, Expr]:
        key = self.expression()
        self.expect(":", "':' after the map key")
        return key, self.expression()

    def function(self, name: Token, args: list[Expr]) -> Expr:
        if name.value == "has":
            if len(args) != 1 or not isinstance(args[0], Select):
                raise self.error(name, "has() takes one field selection, e.g. has(a.b)")
            return Has(name.start, args[0].operand, args[0].field)
        return Call(name.start, name.value, tuple(args))

    def method(self, name: Token, target: Expr, args: list[Expr]) -> Expr:
        arities = _LOOP_MACROS.get(name.value)
        if arities is None:
            return Call(name.start, name.value, tuple(args), target)
        macro = name.value
        if len(args) not in arities:
            shape = "x, predicate" if macro != "map" else "x, transform"
            raise self.error(name, f"{macro}() takes ({shape}), e.g. items.{macro}(i, i > 0)")
        var = args[0]
        if not isinstance(var, Ident) or var.root:
            raise self.error(name, f"the first argument of {macro}() must be a variable name")
        if macro == "map":
            predicate = args[1] if len(args) == 3 else None
            return Comprehension(name.start, macro, target, var.name, predicate, args[-1])
        return Comprehension(name.start, macro, target, var.name, args[1], None)


def _terms(node: Expr, kind: type[And] | type[Or]) -> tuple[Expr, ...]:
    return node.terms if isinstance(node, kind) else (node,)


def _too_deep() -> str:
    return f"expression is nested too deeply (more than {MAX_DEPTH} levels)"


def _check_depth(source: str, tree: Expr) -> None:
    """Bound the depth of the finished tree without recursing over it."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CelSyntaxError.at(source, node.start, _too_deep())
        stack.extend((child, depth + 1) for child in node.children())
