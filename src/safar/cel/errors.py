"""CEL's errors, under Safar's :class:`~safar.errors.ValidationError`.

The tree::

    ValidationError
    └── CelError               anything wrong with a CEL expression
        ├── CelSyntaxError     found when compiling: bad syntax, unknown variable or function,
        │                      wrong number of arguments, limits; ``line``/``column`` say where
        └── CelEvalError       found when evaluating: missing key, no matching overload,
                               division by zero, overflow, a result over a size limit
"""

from __future__ import annotations

from safar.errors import ValidationError


class CelError(ValidationError):
    """A CEL expression could not be compiled or evaluated."""


class CelSyntaxError(CelError):
    """The expression cannot be compiled; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message, f"line {line}, column {column}")
        self.line = line
        self.column = column

    @classmethod
    def at(cls, source: str, offset: int, message: str) -> CelSyntaxError:
        """The error for ``message`` at character ``offset`` of ``source``."""
        offset = max(0, min(offset, len(source)))
        line = source.count("\n", 0, offset) + 1
        column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        return cls(message, line, column)


class CelEvalError(CelError):
    """Evaluation failed: the CEL runtime error, e.g. ``no such key 'vip'``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
