"""YAML read into plain values that remember their line.

:func:`load` has ``yaml.safe_load``'s semantics with four differences, each to turn a silent
surprise into a message that names the line:

- a key given twice is an error naming both lines (``safe_load`` keeps the last one);
- mapping keys must be text (``on:`` or ``1:`` unquoted are a boolean and a number in YAML);
- ``21:00`` is the text ``"21:00"`` as in YAML 1.2, not the base-60 number 1260 of YAML 1.1;
- tags beyond YAML's standard scalars, mappings and lists are refused.

Every node carries ``line`` (1-based): for a mapping value, the line of its key; for a list
item, the line the item starts on. Anchors, aliases and ``<<`` merge keys work; an alias is
expanded where it is used, up to :data:`MAX_NODES` nodes per document.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from safar.definitions.problems import DefinitionError, Problem, join

#: Nodes one document may expand to, so that nested aliases ("billion laughs") stay small.
MAX_NODES: Final = 100_000
#: Deepest nesting of lists and maps; far beyond any definition, well within Python's stack
#: (not left to RecursionError: test tools and servers change the recursion limit).
MAX_DEPTH: Final = 200

ScalarValue = str | int | float | bool | None | bytes | datetime.date | datetime.datetime

_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_NUMBER_TAGS: Final = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


@dataclass(frozen=True, slots=True)
class Scalar:
    """Text, a number, a boolean, null, a date or bytes."""

    value: ScalarValue
    line: int


@dataclass(frozen=True, slots=True)
class Map:
    """A mapping with text keys, in file order."""

    items: dict[str, Node]
    line: int


@dataclass(frozen=True, slots=True)
class Seq:
    """A list."""

    items: list[Node]
    line: int


Node = Scalar | Map | Seq


def load(text: str, file: str) -> Node:
    """Parse one YAML document. Raises :class:`DefinitionError` naming ``file`` and the line.

    An empty document is the null scalar at line 1.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return Scalar(None, 1)
        builder = _Builder(file)
        node = builder.build(root, root.start_mark.line + 1, frozenset())
    except RecursionError as exc:  # PyYAML composes recursively, and so do we
        raise DefinitionError([Problem(file, 1, "", "values nested too deeply")]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise DefinitionError([Problem(file, line, "", f"YAML syntax error: {what}")]) from exc
    except yaml.YAMLError as exc:  # e.g. a control character the reader refuses
        raise DefinitionError([Problem(file, 1, "", f"not readable as YAML: {exc}")]) from exc
    if builder.problems:
        raise DefinitionError(builder.problems)
    return node


def plain(node: Node) -> Any:
    """The node as plain Python values: dict, list and scalars."""
    if isinstance(node, Map):
        return {key: plain(value) for key, value in node.items.items()}
    if isinstance(node, Seq):
        return [plain(item) for item in node.items]
    return node.value


def line_map(node: Node, path: str = "") -> dict[str, int]:
    """The line of every key and item under ``node``, by field path (``steps[3].send``)."""
    lines = {path: node.line}
    if isinstance(node, Map):
        for key, value in node.items.items():
            lines.update(line_map(value, join(path, key)))
    elif isinstance(node, Seq):
        for index, item in enumerate(node.items):
            lines.update(line_map(item, join(path, index)))
    return lines


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.count = 0
        self.scalars = SafeConstructor()

    def fail(self, line: int, message: str) -> Scalar:
        self.problems.append(Problem(self.file, line, "", message))
        return Scalar(None, line)

    def build(self, node: yaml.Node, line: int, active: frozenset[int]) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise DefinitionError(
                [
                    Problem(
                        self.file, line, "", f"the document expands to more than {MAX_NODES} values"
                    )
                ]
            )
        if id(node) in active:
            return self.fail(line, "an alias refers to the value that contains it")
        if len(active) >= MAX_DEPTH:
            raise DefinitionError([Problem(self.file, line, "", "values nested too deeply")])
        if isinstance(node, ScalarNode):
            return self.scalar(node, line)
        inner = active | {id(node)}
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                return self.fail(line, f"unsupported tag {node.tag}")
            return Seq(
                [self.build(item, item.start_mark.line + 1, inner) for item in node.value], line
            )
        assert isinstance(node, MappingNode)
        if node.tag != _MAP_TAG:
            return self.fail(line, f"unsupported tag {node.tag}")
        return Map(self.mapping(node, inner), line)

    def scalar(self, node: ScalarNode, line: int) -> Scalar:
        if node.tag in _NUMBER_TAGS and node.style is None and ":" in node.value:
            return Scalar(node.value, line)  # base-60 in YAML 1.1; a time of day to people
        try:
            value = self.scalars.construct_object(node, deep=True)
        except (ConstructorError, ValueError, OverflowError) as exc:
            problem = exc.problem if isinstance(exc, ConstructorError) else str(exc)
            return self.fail(line, f"bad value {node.value!r}: {problem}")
        return Scalar(value, line)

    def mapping(self, node: MappingNode, active: frozenset[int]) -> dict[str, Node]:
        items: dict[str, Node] = {}
        merged: dict[str, Node] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self.merge(value_node, line, active, merged)
                continue
            key = self.build(key_node, line, active)
            if not isinstance(key, Scalar) or not isinstance(key.value, str):
                shown = key.value if isinstance(key, Scalar) else "a collection"
                self.fail(line, f"a key must be text, not {shown!r}; put it in quotes")
                continue
            if key.value in items:
                first = items[key.value].line
                self.fail(line, f"duplicate key {key.value!r} (first at line {first})")
                continue
            items[key.value] = self.build(value_node, line, active)
        # Keys written in the mapping itself override merged ones, as in safe_load.
        return {**merged, **items} if merged else items

    def merge(
        self, node: yaml.Node, line: int, active: frozenset[int], into: dict[str, Node]
    ) -> None:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            built = self.build(source, line, active)
            if not isinstance(built, Map):
                self.fail(line, "'<<' merges a mapping or a list of mappings")
                continue
            for key, value in built.items.items():
                into.setdefault(key, value)  # the first mapping listed wins
