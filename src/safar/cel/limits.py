"""The bounds that keep one expression from taking the process down with it.

Source length and nesting are checked when compiling. Values are checked as they are made: a
string, bytes or list built by the expression (``+``, ``join``, ``map``, literals) has a size
cap, and an evaluation that runs comprehensions has a budget of loop iterations and of elements
allocated, so nested or chained macros cannot run for minutes or fill memory.
"""

from __future__ import annotations

from typing import Final

from safar.cel.errors import CelEvalError

MAX_SOURCE: Final = 8192
"""Characters of source text."""
MAX_DEPTH: Final = 64
"""Nesting of sub-expressions (parentheses, operands, arguments, elements, selections)."""
MAX_STRING: Final = 1 << 20
"""Characters of a string, or bytes of a bytes value, made by the expression."""
MAX_LIST: Final = 100_000
"""Elements of a list or entries of a map made by the expression."""
MAX_PATTERN: Final = 1000
"""Characters of a regular expression given to ``matches``."""
MAX_ITERATIONS: Final = 1_000_000
"""Comprehension iterations (``all``, ``exists``, ``map``, …) in one evaluation."""
MAX_ALLOCATION: Final = 10_000_000
"""Characters and elements made inside comprehensions in one evaluation."""

BUDGET_KEY: Final = "$budget"
"""Where a comprehension scope keeps its :class:`Budget`; no CEL identifier can name it."""


class Budget:
    """What one evaluation may still spend on comprehension iterations and allocations."""

    # Class-level starting values and no __init__: one is made per evaluation, cheaply; the
    # first spend gives the instance its own counter.
    iterations: int = MAX_ITERATIONS
    allocation: int = MAX_ALLOCATION

    def iterate(self, count: int) -> None:
        """Spend ``count`` iterations, or fail if there are not that many left."""
        self.iterations -= count
        if self.iterations < 0:
            raise CelEvalError(f"evaluation exceeds {MAX_ITERATIONS:,} comprehension iterations")

    def allocate(self, size: int) -> None:
        """Spend ``size`` characters or elements, or fail if there are not that many left."""
        self.allocation -= size
        if self.allocation < 0:
            raise CelEvalError(
                f"evaluation allocates more than {MAX_ALLOCATION:,} elements and characters"
            )


def check_str(value: str) -> str:
    """``value`` if it is within :data:`MAX_STRING`, else an evaluation error."""
    if len(value) > MAX_STRING:
        raise CelEvalError(f"string of {len(value):,} characters exceeds {MAX_STRING:,}")
    return value


def check_bytes(value: bytes) -> bytes:
    """``value`` if it is within :data:`MAX_STRING` bytes, else an evaluation error."""
    if len(value) > MAX_STRING:
        raise CelEvalError(f"bytes of length {len(value):,} exceed {MAX_STRING:,}")
    return value


def check_list_size(size: int) -> None:
    """Fail if a list or map of ``size`` elements would exceed :data:`MAX_LIST`."""
    if size > MAX_LIST:
        raise CelEvalError(f"list of {size:,} elements exceeds {MAX_LIST:,}")
