"""What is wrong with a definition file, and where: :class:`Problem` and :class:`DefinitionError`.

A problem names the file, the 1-based line (0 when the definition was built in Python and has no
line) and the field as a path through the YAML, e.g. ``steps[3].send.template``, with list
indexes counted from 0. ``str(problem)`` is the form editors and CI logs understand::

    journeys/cart.yaml:24: steps[3].send.template: no template 'cart_remnder'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from safar.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{place}: {self.field}: {self.message}" if self.field else f"{place}: {self.message}"
        )


class DefinitionError(ValidationError):
    """A definition could not be read; ``problems`` lists everything found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line))
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid definition")


def join(path: str, key: str | int) -> str:
    """``path`` extended by a mapping key (``a.b``) or a list index (``a[3]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
