"""Segment and computed-trait files: YAML text to a :class:`~safar.model.audiences.Segment` or a
:class:`~safar.model.audiences.ComputedTrait`, and the checks that need the whole set.

As with journeys, reading checks the shape of one file (keys, types, one kind and one operator
per condition, durations, counts); :func:`validate_audiences` checks what needs every definition
or the CEL compiler (ids, member references and cycles, conditions, windows), so that definitions
built in Python get the same checks. The format is documented in ``docs/audiences.md``.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

from safar.definitions.fields import Fields, Report
from safar.definitions.problems import DefinitionError, Problem, join
from safar.definitions.validate import (
    ID_HELP,
    ID_PATTERN,
    ConditionChecker,
    cel_checker,
    condition_problem,
    line_of,
)
from safar.definitions.yamlsource import Map, Node, Seq, line_map, load, plain
from safar.model.audiences import (
    AGGREGATE_KINDS,
    OPS,
    UNARY_OPS,
    VALUE_KINDS,
    Aggregate,
    AllOf,
    AnyOf,
    ComputedTrait,
    Condition,
    ConsentCondition,
    IdentifierCondition,
    MemberCondition,
    Not,
    Op,
    PerformedCondition,
    ProfileCondition,
    Segment,
    TraitCondition,
)
from safar.model.messages import CHANNELS

Audience = Segment | ComputedTrait
AudienceKind = Literal["segment", "computed_trait"]

SEGMENT_KEYS: Final = ("id", "name", "description", "where", "webhook")
COMPUTED_TRAIT_KEYS: Final = ("id", "name", "description", "compute")
COMPUTE_KEYS: Final = ("event", "kind", "where", "value", "within")
#: The key that says what a condition looks at.
CONDITION_KINDS: Final = (
    "trait", "identifier", "consent", "member", "performed", "profile", "all", "any", "not"
)  # fmt: skip
CONSENT_KEYS: Final = ("channel", "category", "subscribed")
#: ``performed`` counts and the operator each stands for.
COUNTS: Final[dict[str, Literal["gte", "lte", "eq"]]] = {
    "at_least": "gte",
    "at_most": "lte",
    "exactly": "eq",
}
PERFORMED_KEYS: Final = ("where", "within", *COUNTS)
#: Deepest nesting of conditions (the root is 1); a deeper tree is better split with ``member:``.
MAX_CONDITION_DEPTH: Final = 32
#: Names a ``performed``/``compute`` condition may use, and a ``profile`` one.
EVENT_NAMES: Final = frozenset({"event"})
PROFILE_NAMES: Final = frozenset({"profile", "now"})

_OPTIONS: Final[dict[str, tuple[str, ...]]] = {"trait": OPS, "performed": PERFORMED_KEYS}
_ANY_OPTION: Final = tuple(dict.fromkeys(key for keys in _OPTIONS.values() for key in keys))
_ORDERED: Final = frozenset({"gt", "gte", "lt", "lte"})
_WORD: Final = re.compile(r"\w+")
_PATH: Final = re.compile(r"[^.\s]+(\.[^.\s]+)*")
#: What a condition that could not be read stands for (a problem has been reported).
_UNREADABLE: Final = AllOf(conditions=())


def parse_audience(text: str, origin: str | None = None) -> Audience:
    """Read a segment or computed-trait file. ``origin`` (its path) names the file in problems
    and is kept in the definition. Raises :class:`DefinitionError` listing every problem found."""
    return load_audience(text, origin)[0]


def load_audience(text: str, origin: str | None = None) -> tuple[Audience, dict[str, int]]:
    """Like :func:`parse_audience`, also returning the line of every field path
    (``where.all[1].not.within``), for :func:`validate_audiences`."""
    root = load(text, origin or "<audience>")
    return audience_from_node(root, origin), line_map(root)


def audience_kind(root: Node) -> AudienceKind | None:
    """``computed_trait`` for a mapping with ``compute``, ``segment`` for one with ``where`` (and
    neither ``steps`` nor ``entry``, which make it a journey), else None."""
    if not isinstance(root, Map):
        return None
    if "compute" in root.items:
        return "computed_trait"
    if "where" in root.items and not {"steps", "entry"} & root.items.keys():
        return "segment"
    return None


def audience_from_node(root: Node, origin: str | None = None) -> Audience:
    """The segment or computed trait in an already loaded YAML document; raises
    :class:`DefinitionError`."""
    kind = audience_kind(root)
    report = Report(origin or f"<{kind or 'audience'}>")
    audience: Audience
    if kind == "computed_trait":
        audience = _computed_trait(report, root, origin)
    elif kind == "segment":
        audience = _segment(report, root, origin)
    else:
        line = root.line
        message = "neither a segment (no 'where') nor a computed trait (no 'compute')"
        raise DefinitionError([Problem(report.file, line, "", message)])
    if report.problems:
        raise DefinitionError(report.problems)
    return audience


def _segment(report: Report, root: Node, origin: str | None) -> Segment:
    top = Fields(report, root, "", SEGMENT_KEYS, ("id", "name", "where"))
    where = top.node("where")
    return Segment(
        id=top.text("id"),
        name=top.text("name"),
        description=top.optional_text("description"),
        where=_UNREADABLE if where is None else _condition(report, where, "where", 1),
        webhook=top.optional_text("webhook"),
        origin=origin,
    )


def _computed_trait(report: Report, root: Node, origin: str | None) -> ComputedTrait:
    top = Fields(report, root, "", COMPUTED_TRAIT_KEYS, ("id", "compute"))
    f = top.mapping("compute", COMPUTE_KEYS, ("event",))
    reported = len(report.problems)
    kind = f.choice("kind", AGGREGATE_KINDS, "count")
    value = f.optional_text("value")
    if f.is_map and len(report.problems) == reported:  # not with an unknown kind or bad value
        error = value_problem(kind, value)
        if error is not None:
            f.problem("value", error)
    return ComputedTrait(
        id=top.text("id"),
        name=top.optional_text("name"),
        description=top.optional_text("description"),
        aggregate=Aggregate(
            event=f.text("event"),
            kind=kind,
            where=f.optional_text("where"),
            value=value,
            within_ms=f.duration("within"),
        ),
        origin=origin,
    )


def value_problem(kind: str, value: str | None) -> str | None:
    """What is wrong with an aggregate's ``value`` path for its ``kind``, or None."""
    if kind in VALUE_KINDS and value is None:
        return f"required for kind {kind}: the value's path in the event, e.g. properties.total"
    if kind not in VALUE_KINDS and value is not None:
        return f"not allowed for kind {kind}, which reads no value"
    if value is not None and not _PATH.fullmatch(value):
        return f"bad path {value!r}: write names joined by dots, e.g. properties.total"
    return None


def operand_problem(op: str, value: Any) -> str | None:
    """What a trait operator's operand should be when ``value`` is not that, or None."""
    if op in UNARY_OPS:
        return None if value is True else "true"
    if value is None:
        return "a value (for a trait that is not set, write missing: true)"
    if op in ("in", "not_in"):
        return None if isinstance(value, list | tuple) else "a list, e.g. [gold, platinum]"
    if op in _ORDERED:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if (number and math.isfinite(value)) or isinstance(value, str):
            return None
        return "a number, or text (a date in quotes, e.g. '2026-01-31')"
    return None


# -- Conditions -----------------------------------------------------------------------------


def _condition(report: Report, node: Node, path: str, depth: int) -> Condition:
    present = node.items if isinstance(node, Map) else {}
    kinds = [key for key in CONDITION_KINDS if key in present]
    # With one kind, other kinds and options are unknown keys; with none or several, that is
    # the problem, and only keys no condition has are reported.
    if len(kinds) == 1:
        allowed: tuple[str, ...] = (kinds[0], *_OPTIONS.get(kinds[0], ()))
    else:
        allowed = CONDITION_KINDS + _ANY_OPTION if present else CONDITION_KINDS
    f = Fields(report, node, path, allowed)
    if not f.is_map:
        return _UNREADABLE
    if not kinds:
        report.add(f.line, path, "a condition needs one of: " + ", ".join(CONDITION_KINDS))
        return _UNREADABLE
    if len(kinds) > 1:
        found = " and ".join(kinds)
        report.add(f.line, path, f"a condition is one thing, this one has {found}; use all: [...]")
        return _UNREADABLE
    if depth > MAX_CONDITION_DEPTH:
        report.add(f.line, path, _TOO_DEEP)
        return _UNREADABLE
    return _KINDS[kinds[0]](f, depth)


_TOO_DEEP: Final = (
    f"conditions nested more than {MAX_CONDITION_DEPTH} deep; name a part as a segment of its "
    "own and refer to it with member:"
)


def _trait(f: Fields, depth: int) -> TraitCondition:
    name = f.text("trait")
    ops: list[Op] = [op for op in OPS if op in f]
    if not ops:
        f.problem("trait", f"no operator for trait {name!r}; give one of {', '.join(OPS)}")
    for extra in ops[1:]:
        f.problem(extra, f"one operator per condition, this one has {ops[0]} already; use all:")
    op: Op = ops[0] if ops else "eq"
    node = f.node(op)
    value = None if node is None else _dates_as_text(plain(node))
    expected = operand_problem(op, value)
    if node is not None and expected is not None:
        f.wrong(op, expected)
    return TraitCondition(line=f.line, trait=name, op=op, value=None if op in UNARY_OPS else value)


def _dates_as_text(value: Any) -> Any:
    """YAML reads ``2026-01-31`` as a date; traits hold dates as ISO text."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_dates_as_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _dates_as_text(item) for key, item in value.items()}
    return value


def _identifier(f: Fields, depth: int) -> IdentifierCondition:
    kind = f.text("identifier")
    if kind and not _WORD.fullmatch(kind):
        f.problem("identifier", f"bad identifier type {kind!r}: use a word such as email or phone")
    return IdentifierCondition(line=f.line, type=kind)


def _consent(f: Fields, depth: int) -> ConsentCondition:
    c = f.mapping("consent", CONSENT_KEYS, ("channel",))
    return ConsentCondition(
        line=f.line,
        channel=c.choice("channel", CHANNELS, "email"),
        category=c.text("category", "marketing"),
        subscribed=c.boolean("subscribed", True),
    )


def _member(f: Fields, depth: int) -> MemberCondition:
    return MemberCondition(line=f.line, segment=f.text("member"))


def _performed(f: Fields, depth: int) -> PerformedCondition:
    given = [key for key in COUNTS if key in f]
    for extra in given[1:]:
        f.problem(extra, f"give one of {', '.join(COUNTS)}; this condition has {given[0]} already")
    key = given[0] if given else "at_least"
    times = f.integer(key, 1)
    if times < 0:
        f.problem(key, "must be 0 or more")
    aggregate = Aggregate(
        event=f.text("performed"), where=f.optional_text("where"), within_ms=f.duration("within")
    )
    return PerformedCondition(line=f.line, aggregate=aggregate, op=COUNTS[key], times=times)


def _profile(f: Fields, depth: int) -> ProfileCondition:
    return ProfileCondition(line=f.line, where=f.text("profile"))


def _all(f: Fields, depth: int) -> AllOf:
    return AllOf(line=f.line, conditions=_conditions(f, "all", depth))


def _any(f: Fields, depth: int) -> AnyOf:
    return AnyOf(line=f.line, conditions=_conditions(f, "any", depth))


def _conditions(f: Fields, key: str, depth: int) -> tuple[Condition, ...]:
    node = f.node(key)
    if isinstance(node, Seq) and not node.items:
        f.problem(key, "needs at least one condition")
    items = f.items_of(key)
    return tuple(_condition(f.report, item, path, depth + 1) for path, item in items)


def _not(f: Fields, depth: int) -> Not:
    node = f.node("not")
    assert node is not None  # it is the kind
    return Not(line=f.line, condition=_condition(f.report, node, f.field("not"), depth + 1))


_KINDS: Final[dict[str, Callable[[Fields, int], Condition]]] = {
    "trait": _trait,
    "identifier": _identifier,
    "consent": _consent,
    "member": _member,
    "performed": _performed,
    "profile": _profile,
    "all": _all,
    "any": _any,
    "not": _not,
}


def condition_kind(condition: Condition) -> str:
    """The YAML key of a condition's kind: ``trait``, ``all``, ..."""
    return str(type(condition).__struct_config__.tag)


def walk(where: Condition, path: str = "where") -> Iterator[tuple[str, int, Condition]]:
    """Every condition in a tree with its field path and depth (the root is 1), parents first,
    in file order; nothing below :data:`MAX_CONDITION_DEPTH`."""
    todo = [(path, 1, where)]
    while todo:
        at, depth, condition = todo.pop()
        yield at, depth, condition
        if depth >= MAX_CONDITION_DEPTH:
            continue
        if isinstance(condition, AllOf | AnyOf):
            kind = join(at, condition_kind(condition))
            children = [
                (join(kind, index), depth + 1, child)
                for index, child in enumerate(condition.conditions)
            ]
            todo += reversed(children)
        elif isinstance(condition, Not):
            todo.append((join(at, "not"), depth + 1, condition.condition))


def segment_dependencies(segment: Segment) -> set[str]:
    """The ids of the segments ``segment`` refers to with ``member:``."""
    return {c.segment for _, c in _members(segment)}


def _members(segment: Segment) -> list[tuple[str, MemberCondition]]:
    """``segment``'s member conditions with their field paths, in file order."""
    return [(at, c) for at, _, c in walk(segment.where) if isinstance(c, MemberCondition)]


def topological_order(segments: Sequence[Segment]) -> list[Segment]:
    """``segments`` (the first of each id), each after the segments it names with ``member:``,
    so that evaluating them in this order sees every member's result first. References to
    segments not given are ignored; the order depends only on the input. Raises
    :class:`DefinitionError` naming each cycle of references."""
    order, cycles = _order(segments)
    if cycles:
        raise DefinitionError([_cycle(segments, ids, {}) for ids in cycles])
    return order


def _order(segments: Sequence[Segment]) -> tuple[list[Segment], list[list[str]]]:
    """Segments in dependency order (the first of each id), and the cycles found: each a list
    of ids from the one that starts it to the one whose ``member:`` closes it."""
    by_id = _first_of_each_id(segments)
    needs = {
        key: list(dict.fromkeys(c.segment for _, c in _members(s))) for key, s in by_id.items()
    }
    done: set[str] = set()
    order: list[Segment] = []
    cycles: list[list[str]] = []
    for start in by_id:
        if start in done:
            continue
        path = [start]
        pending = [iter(needs[start])]
        while pending:
            target = next(pending[-1], None)
            if target is None:
                pending.pop()
                finished = path.pop()
                if finished not in done:
                    done.add(finished)
                    order.append(by_id[finished])
            elif target in path:
                cycles.append(path[path.index(target) :])
            elif target in by_id and target not in done:
                path.append(target)
                pending.append(iter(needs[target]))
    return order, cycles


def _first_of_each_id(segments: Sequence[Segment]) -> dict[str, Segment]:
    by_id: dict[str, Segment] = {}
    for segment in segments:
        by_id.setdefault(segment.id, segment)
    return by_id


def _cycle(
    segments: Sequence[Segment], ids: list[str], lines: Mapping[str, Mapping[str, int]]
) -> Problem:
    """The problem of a cycle, at the ``member:`` that closes it."""
    closing = _first_of_each_id(segments)[ids[-1]]
    at, c = next((at, c) for at, c in _members(closing) if c.segment == ids[0])
    field = join(at, "member")
    file = closing.origin or f"<segment {closing.id}>"
    line = line_of(lines.get(closing.origin or "", {}), field, c.line)
    shown = " -> ".join(repr(key) for key in [*ids, ids[0]])
    if len(ids) == 1:
        message = f"segment {ids[0]!r} refers to itself ({shown}) through member:"
    else:
        message = f"segments refer to each other in a cycle through member: {shown}"
    return Problem(file, line, field, message)


# -- Checks on the whole set ----------------------------------------------------------------


def validate_audiences(
    definitions: Sequence[Audience],
    lines: Mapping[str, Mapping[str, int]] | None = None,
    *,
    known_segments: Collection[str] = (),
) -> list[Problem]:
    """Everything wrong with a set of segments and computed traits, by file and line; [] when
    they may be published together.

    ``lines``: file (each definition's ``origin``) -> field path -> line, from
    :func:`load_audience`, to point at the exact line of a field. ``known_segments``: ids of
    segments already published, which ``member:`` may name besides those in the set.
    """
    check = _Checker(definitions, lines or {}, known_segments)
    for definition in definitions:
        check.definition(definition)
    check.cycles()
    return sorted(check.problems, key=lambda problem: (problem.file, problem.line))


class _Checker:
    current: Audience

    def __init__(
        self,
        definitions: Sequence[Audience],
        lines: Mapping[str, Mapping[str, int]],
        known_segments: Collection[str],
    ) -> None:
        self.definitions = definitions
        self.all_lines = lines
        self.problems: list[Problem] = []
        self.segments = {d.id for d in definitions if isinstance(d, Segment)} | set(known_segments)
        self.traits = {d.id for d in definitions if isinstance(d, ComputedTrait)}
        self.event_conditions: ConditionChecker = cel_checker(EVENT_NAMES)
        self.profile_conditions: ConditionChecker = cel_checker(PROFILE_NAMES)
        self.owners: dict[str, Audience] = {}

    def add(self, field: str, fallback: int, message: str) -> None:
        origin = self.current.origin
        lines = self.all_lines.get(origin or "", {})
        file = origin or f"<{_kind_name(self.current)} {self.current.id}>"
        self.problems.append(Problem(file, line_of(lines, field, fallback), field, message))

    def definition(self, definition: Audience) -> None:
        self.current = definition
        kind = _kind_name(definition)
        if not ID_PATTERN.fullmatch(definition.id):
            self.add("id", 0, f"bad {kind} id {definition.id!r}: {ID_HELP}")
        other = self.owners.setdefault(definition.id, definition)
        if other is not definition:
            where = f" in {other.origin}" if other.origin else ""
            self.add(
                "id",
                0,
                f"id {definition.id!r} is taken by the {_kind_name(other)}{where}; segments and "
                "computed traits share one id space",
            )
        if isinstance(definition, ComputedTrait):
            self.aggregate("compute", "event", 0, definition.aggregate)
            error = value_problem(definition.aggregate.kind, definition.aggregate.value)
            if error is not None:
                self.add("compute.value", 0, error)
            return
        if not definition.name.strip():
            self.add("name", 0, "must not be empty")
        webhook = definition.webhook
        if webhook is not None and not webhook.startswith(("https://", "http://")):
            self.add(
                "webhook", 0, f"expected an http:// or https:// URL, got {definition.webhook!r}"
            )
        for path, depth, condition in walk(definition.where):
            if depth == MAX_CONDITION_DEPTH and _has_children(condition):
                self.add(path, condition.line, _TOO_DEEP)
            self.condition(path, condition)

    def condition(self, at: str, c: Condition) -> None:
        line = c.line
        if isinstance(c, TraitCondition):
            if not c.trait.strip():
                self.add(join(at, "trait"), line, "must not be empty")
            expected = operand_problem(c.op, True if c.op in UNARY_OPS else c.value)
            if expected is not None:
                self.add(join(at, c.op), line, f"expected {expected}, got {c.value!r}")
        elif isinstance(c, IdentifierCondition) and not _WORD.fullmatch(c.type):
            self.add(join(at, "identifier"), line, f"bad identifier type {c.type!r}")
        elif isinstance(c, ConsentCondition) and c.channel not in CHANNELS:
            known = ", ".join(CHANNELS)
            self.add(
                join(at, "consent.channel"), line, f"unknown channel {c.channel!r}; use {known}"
            )
        elif isinstance(c, MemberCondition):
            self.member(at, c)
        elif isinstance(c, PerformedCondition):
            self.aggregate(at, "performed", line, c.aggregate)
            if c.aggregate.kind != "count" or c.aggregate.value is not None:
                self.add(at, line, "a performed condition counts events: kind count, no value")
            if c.times < 0:
                self.add(at, line, "the number of times must be 0 or more")
        elif isinstance(c, ProfileCondition):
            error = condition_problem(c.where, self.profile_conditions)
            if error is not None:
                self.add(join(at, "profile"), line, error)
        elif isinstance(c, AllOf | AnyOf) and not c.conditions:
            self.add(join(at, condition_kind(c)), line, "needs at least one condition")

    def aggregate(self, at: str, event_key: str, line: int, aggregate: Aggregate) -> None:
        if not aggregate.event.strip():
            self.add(join(at, event_key), line, "must not be empty")
        error = condition_problem(aggregate.where, self.event_conditions)
        if error is not None:
            self.add(join(at, "where"), line, error)
        if aggregate.within_ms is not None and aggregate.within_ms <= 0:
            self.add(join(at, "within"), line, "must be longer than 0s; leave it out for all time")

    def member(self, at: str, c: MemberCondition) -> None:
        field = join(at, "member")
        if c.segment in self.segments:
            return
        if c.segment in self.traits:
            message = f"{c.segment!r} is a computed trait, not a segment; use trait: {c.segment}"
        else:
            close = difflib.get_close_matches(c.segment, sorted(self.segments), n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"no segment {c.segment!r}{guess}"
        self.add(field, c.line, message)

    def cycles(self) -> None:
        segments = [d for d in self.definitions if isinstance(d, Segment)]
        self.problems += [_cycle(segments, ids, self.all_lines) for ids in _order(segments)[1]]


def _has_children(condition: Condition) -> bool:
    return isinstance(condition, Not) or (
        isinstance(condition, AllOf | AnyOf) and bool(condition.conditions)
    )


def _kind_name(definition: Audience) -> str:
    return "segment" if isinstance(definition, Segment) else "computed trait"
