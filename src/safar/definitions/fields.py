"""Reading a YAML mapping into model values, reporting every problem instead of stopping at one.

Getters return a usable placeholder (the default, ``""``, ``0``) when a value is missing or
wrong, after reporting it, so a parser can build the whole model and report all problems at once;
the caller raises :class:`~safar.definitions.problems.DefinitionError` when any were reported.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from safar.definitions.durations import parse_duration
from safar.definitions.problems import Problem, join
from safar.definitions.yamlsource import Map, Node, Scalar, Seq, plain

T = TypeVar("T")


class Report:
    """Problems found in one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field, message))


def describe(node: Node) -> str:
    """What a value is, for 'expected X, got Y' messages."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, bytes):
        return "binary data"
    return f"the date {value.isoformat()}"


def _quote_hint(node: Node) -> str:
    return "; put it in quotes" if isinstance(node, Scalar) and node.value is not None else ""


def _listing(keys: Collection[str]) -> str:
    return ", ".join(keys)


class Fields:
    """The keys of one mapping at ``path``: unknown keys and missing required ones are reported
    when it is made; the getters check each value's type."""

    def __init__(
        self,
        report: Report,
        node: Node,
        path: str,
        allowed: Sequence[str],
        required: Sequence[str] = (),
    ) -> None:
        self.report = report
        self.path = path
        self.line = node.line
        self.items: dict[str, Node] = {}
        #: False when the value was not a mapping at all (already reported).
        self.is_map = isinstance(node, Map)
        if not isinstance(node, Map):
            report.add(
                node.line,
                path,
                f"expected a mapping with {_listing(allowed)}, got {describe(node)}",
            )
            return
        self.items = node.items
        for key, value in node.items.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                report.add(
                    value.line,
                    join(path, key),
                    f"unknown key {key!r}{guess}; allowed here: {_listing(allowed)}",
                )
        for key in required:
            if key not in node.items:
                report.add(node.line, join(path, key), "required but missing")

    def field(self, key: str | int) -> str:
        """The field path of ``key`` under this mapping."""
        return join(self.path, key)

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def node(self, key: str) -> Node | None:
        """The raw value of ``key``, or None when absent."""
        return self.items.get(key)

    def line_of(self, key: str) -> int:
        """The line of ``key``, or of this mapping when it is absent."""
        node = self.items.get(key)
        return node.line if node is not None else self.line

    def wrong(self, key: str, expected: str, hint: str = "") -> None:
        """Report that ``key`` is not ``expected``."""
        node = self.items[key]
        self.report.add(
            node.line, self.field(key), f"expected {expected}, got {describe(node)}{hint}"
        )

    def problem(self, key: str, message: str) -> None:
        """Report ``message`` about ``key`` (present or not)."""
        self.report.add(self.line_of(key), self.field(key), message)

    def text(self, key: str, default: str = "") -> str:
        """Non-empty text."""
        value = self.optional_text(key)
        return default if value is None else value

    def optional_text(self, key: str) -> str | None:
        """Non-empty text, or None when absent (or wrong, after reporting it)."""
        node = self.items.get(key)
        if node is None:
            return None
        if not isinstance(node, Scalar) or not isinstance(node.value, str):
            self.wrong(key, "text", _quote_hint(node))
            return None
        if not node.value.strip():
            self.problem(key, "must not be empty")
            return None
        if "\x00" in node.value:
            # Names and labels end up in text columns, and PostgreSQL refuses NUL in text.
            self.problem(key, "must not hold the NUL character")
            return None
        return node.value

    def integer(self, key: str, default: int) -> int:
        """A whole number."""
        node = self.items.get(key)
        if node is None:
            return default
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong(key, "a whole number")
            return default
        return value

    def number(self, key: str, default: float) -> float:
        """A finite number, whole or not."""
        node = self.items.get(key)
        if node is None:
            return default
        value = node.value if isinstance(node, Scalar) else None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.wrong(key, "a number")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """``true`` or ``false``."""
        node = self.items.get(key)
        if node is None:
            return default
        if not isinstance(node, Scalar) or not isinstance(node.value, bool):
            self.wrong(key, "true or false")
            return default
        return node.value

    def duration(self, key: str) -> int | None:
        """A duration such as ``3d`` in milliseconds, or None when absent or wrong."""
        node = self.items.get(key)
        if node is None:
            return None
        if not isinstance(node, Scalar) or isinstance(node.value, bool | bytes):
            self.wrong(key, "a duration such as 30m or 3d")
            return None
        try:
            return parse_duration(str(node.value))
        except ValueError as exc:
            self.problem(key, str(exc))
            return None

    def choice(self, key: str, options: Sequence[T], default: T) -> T:
        """One of ``options``."""
        node = self.items.get(key)
        if node is None:
            return default
        value = node.value if isinstance(node, Scalar) else None
        for option in options:
            if isinstance(value, str) and value == option:
                return option
        self.wrong(key, "one of " + ", ".join(str(option) for option in options))
        return default

    def texts(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of non-empty texts."""
        found: list[str] = []
        for path, item in self.items_of(key):
            if isinstance(item, Scalar) and isinstance(item.value, str) and item.value.strip():
                found.append(item.value)
            else:
                self.report.add(item.line, path, f"expected text, got {describe(item)}")
        return tuple(found) if key in self.items else default

    def text_map(self, key: str) -> dict[str, str]:
        """A mapping of text to text."""
        found: dict[str, str] = {}
        node = self.items.get(key)
        if node is None:
            return found
        if not isinstance(node, Map):
            self.wrong(key, "a mapping of names to text")
            return found
        for name, value in node.items.items():
            if isinstance(value, Scalar) and isinstance(value.value, str):
                found[name] = value.value
            else:
                self.report.add(
                    value.line,
                    join(self.field(key), name),
                    f"expected text, got {describe(value)}{_quote_hint(value)}",
                )
        return found

    def any_map(self, key: str) -> dict[str, Any]:
        """A mapping of names to any values, as plain Python."""
        node = self.items.get(key)
        if node is None:
            return {}
        if not isinstance(node, Map):
            self.wrong(key, "a mapping")
            return {}
        result: dict[str, Any] = plain(node)
        return result

    def items_of(self, key: str) -> list[tuple[str, Node]]:
        """The items of the list at ``key``, each with its field path; [] when absent or wrong."""
        node = self.items.get(key)
        if node is None:
            return []
        if not isinstance(node, Seq):
            self.wrong(key, "a list")
            return []
        return [(self.field(key) + f"[{index}]", item) for index, item in enumerate(node.items)]

    def mapping(self, key: str, allowed: Sequence[str], required: Sequence[str] = ()) -> Fields:
        """The mapping at ``key`` (an empty one at this line when absent)."""
        node = self.items.get(key, Map({}, self.line))
        return Fields(self.report, node, self.field(key), allowed, required)
