"""Safar's implementation of CEL, Google's Common Expression Language, for journey conditions.

>>> program = compile_expression("event.properties.price >= 10", names={"event"})
>>> program.test({"event": {"properties": {"price": 12.5}}})
True
>>> sorted(program.references)
['event.properties.price']

Expressions are parsed once by a hand-written lexer and parser, checked (variables, functions,
argument counts), and compiled into nested Python closures with constant sub-expressions folded.
Nothing is passed to ``eval``, and values are only read by map key and list index. See
``docs/conditions.md`` for the language and ``docs/adr/0007-cel-conditions.md`` for the choices.
"""

from __future__ import annotations

from safar.cel.errors import CelError, CelEvalError, CelSyntaxError
from safar.cel.program import Program, compile_expression

__all__ = ["CelError", "CelEvalError", "CelSyntaxError", "Program", "compile_expression"]
