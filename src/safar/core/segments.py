"""Segment membership: pure evaluation of segment conditions for one customer, and the compiled
catalog (:class:`AudiencePlan`) that says which aggregates an event feeds and which segments a
change may affect.

The audience processor keeps a customer's memberships current by re-evaluating only the
segments that what happened can change: an event feeds the aggregates listening to its name;
trait, identifier and consent changes touch the segments that read them; a segment whose result
changed touches the segments that name it (``member:``). Segments are evaluated members-first
(:func:`safar.definitions.topological_order`), so one pass sees the others' new results.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from safar.core import aggregates as ag
from safar.core.gate_rules import effective_consent
from safar.model.audiences import (
    Aggregate,
    AllOf,
    AnyOf,
    ComputedTrait,
    Condition,
    ConsentCondition,
    Fold,
    IdentifierCondition,
    MemberCondition,
    Not,
    PerformedCondition,
    ProfileCondition,
    Segment,
    TraitCondition,
)
from safar.model.messages import Consent
from safar.model.profiles import Profile

#: A compiled CEL condition: activation -> bool (never raises).
Predicate = Callable[[Mapping[str, Any]], bool]
Compile = Callable[[str, tuple[str, ...]], Predicate]

#: A CEL condition mentioning ``now`` reads the clock (a mention inside a string literal only
#: costs needless timers).
_READS_NOW: Final = re.compile(r"\bnow\b")
#: A ``where`` that may read an event's ``timestamp`` or ``receivedAt``: naming either, or
#: reading ``event`` other than by a field (``event[name]``, ``size(event)``).
_READS_TIMES: Final = re.compile(r"\b(timestamp|receivedAt)\b|\bevent\b(?!\s*\.)")
#: The event fields that hold times.
_TIME_FIELDS: Final = frozenset({"timestamp", "receivedAt"})
#: How far ahead the next change of a CEL condition that reads ``now`` is looked for; a
#: customer is evaluated again at least this often while a live segment has one.
CLOCK_HORIZON_MS: Final = 86_400_000
#: The probes of that look: after 1 minute, then twice as far each time up to an hour, then
#: every hour to the horizon (30 evaluations), so a state lasting an hour or more is never
#: stepped over.
_PROBES: Final[tuple[int, ...]] = (
    *(60_000 << k for k in range(6)),
    *range(3_600_000, CLOCK_HORIZON_MS + 1, 3_600_000),
)
#: Precision of a change found between two probes.
_FLIP_PRECISION_MS: Final = 1000

#: What a change may touch (see :class:`Reads`).
TRAITS = "traits"
IDENTIFIERS = "identifiers"
CONSENT = "consent"


@dataclass
class Reads:
    """What a segment's result depends on."""

    aggregates: set[str] = field(default_factory=set)
    #: Raw or computed trait names read by ``trait`` leaves; ``*`` when a CEL leaf reads the
    #: profile (any trait).
    traits: set[str] = field(default_factory=set)
    identifiers: bool = False
    consent: bool = False
    members: set[str] = field(default_factory=set)

    def keys(self, traits: Mapping[str, Aggregate]) -> set[str]:
        """The aggregate keys read, directly (``performed``) or through the computed
        ``traits`` read (name -> aggregate)."""
        names = set(traits) if "*" in self.traits else self.traits & traits.keys()
        return self.aggregates | {traits[name].key for name in names}


def reads_of(condition: Condition) -> Reads:
    """What a condition reads."""
    found = Reads()
    pending = [condition]
    while pending:
        node = pending.pop()
        if isinstance(node, AllOf | AnyOf):
            pending.extend(node.conditions)
        elif isinstance(node, Not):
            pending.append(node.condition)
        elif isinstance(node, TraitCondition):
            found.traits.add(node.trait)
        elif isinstance(node, IdentifierCondition):
            found.identifiers = True
        elif isinstance(node, ConsentCondition):
            found.consent = True
        elif isinstance(node, MemberCondition):
            found.members.add(node.segment)
        elif isinstance(node, PerformedCondition):
            found.aggregates.add(node.aggregate.key)
        elif isinstance(node, ProfileCondition):
            found.traits.add("*")
            found.identifiers = True
    return found


@dataclass
class CompiledAggregate:
    aggregate: Aggregate
    where: Predicate | None
    key: str


def reads_times(aggregate: Aggregate) -> bool:
    """Whether folding events into ``aggregate`` may read their ``timestamp`` or
    ``receivedAt`` (as its value or in its ``where``)."""
    if aggregate.value is not None and aggregate.value.split(".")[0] in _TIME_FIELDS:
        return True
    return aggregate.where is not None and _READS_TIMES.search(aggregate.where) is not None


class CustomerFolds(Mapping[str, Fold]):
    """Aggregate key -> a customer's fold, combined from their identifiers' folds when first
    read: most evaluations read a few of the aggregates."""

    def __init__(self, parts: Mapping[str, list[Fold]], aggregates: Mapping[str, Aggregate]):
        self._parts = parts
        self._aggregates = aggregates
        self._combined: dict[str, Fold] = {}

    def __getitem__(self, key: str) -> Fold:
        found = self._combined.get(key)
        if found is None:
            parts = self._parts.get(key)
            if not parts or key not in self._aggregates:
                raise KeyError(key)
            found = parts[0] if len(parts) == 1 else ag.combine(parts, self._aggregates[key])
            self._combined[key] = found
        return found

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping.get goes through __getitem__ and a KeyError: too slow for every leaf.
        if key in self._combined:
            return self._combined[key]
        if key not in self._parts:
            return default
        try:
            return self[key]
        except KeyError:
            return default

    def present(self) -> Iterable[str]:
        """Keys that have a fold, without combining any."""
        return self._parts.keys()

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._parts if key in self._aggregates)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class CustomerTraits(Mapping[str, Any]):
    """A customer's traits with computed traits laid over them, each computed when first
    read."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        computed: Mapping[str, Aggregate],
        folds: Mapping[str, Fold],
        now: int,
    ) -> None:
        self._raw = raw
        self._computed = computed
        self._folds = folds
        self._now = now
        self._values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        aggregate = self._computed.get(name)
        if aggregate is None:
            return self._raw[name]
        if name not in self._values:
            fold = self._folds.get(aggregate.key)
            self._values[name] = ag.value(
                fold if fold is not None else Fold(), aggregate, self._now
            )
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        if name in self._computed:
            return self[name]
        return self._raw.get(name, default)

    def __iter__(self) -> Iterator[str]:
        yield from self._computed
        yield from (name for name in self._raw if name not in self._computed)

    def __len__(self) -> int:
        return len(self._computed) + sum(1 for name in self._raw if name not in self._computed)


@dataclass
class View:
    """What segment conditions see of one customer at one instant."""

    profile: Profile
    #: Profile traits with computed traits laid over them.
    traits: Mapping[str, Any]
    #: Aggregate key -> this customer's combined fold.
    folds: Mapping[str, Fold]
    consents: Sequence[Consent]
    now: int
    #: Segments the customer is in, as far as this pass has evaluated them.
    segments: set[str] = field(default_factory=set)


class AudiencePlan:
    """The live segments and computed traits, compiled once per catalog change."""

    def __init__(
        self,
        segments: Sequence[Segment],
        traits: Sequence[ComputedTrait],
        compile: Compile,
    ) -> None:
        #: Segments members-first (the caller orders them).
        self.segments = list(segments)
        self.traits = {t.id: t.aggregate for t in traits}
        self._compile = compile
        self.aggregates: dict[str, CompiledAggregate] = {}
        self.by_event: dict[str, list[CompiledAggregate]] = {}
        #: Event names some aggregate fed by them reads the time fields of (:func:`reads_times`).
        self.timed_events: set[str] = set()
        self.reads: dict[str, Reads] = {}
        self._tests: dict[str, Callable[[View], bool]] = {}
        #: The CEL leaves that read ``now``, each as view -> (instant -> its result then).
        self._clocked: list[Callable[[View], Callable[[int], bool]]] = []
        for aggregate in self.traits.values():
            self._aggregate(aggregate)
        for segment in self.segments:
            self._tests[segment.id] = self._condition(segment.where)
            self.reads[segment.id] = reads_of(segment.where)
        #: The live segments' ids.
        self.ids = frozenset(self._tests)
        #: Aggregate keys whose value changes with time, read by some segment (they set timers).
        self.timed: set[str] = set()
        for reads in self.reads.values():
            keys = reads.keys(self.traits)
            self.timed.update(k for k in keys if _timed(self.aggregates[k].aggregate))
        self._dependents: dict[str, list[str]] = {}
        for segment in self.segments:
            for member in self.reads[segment.id].members:
                self._dependents.setdefault(member, []).append(segment.id)
        # Indexes for touched(): what each kind of change reaches.
        self._by_aggregate: dict[str, set[str]] = {}
        self._by_traits: set[str] = set()
        self._by_identifiers: set[str] = set()
        self._by_consent: set[str] = set()
        for segment_id, reads in self.reads.items():
            for key in reads.keys(self.traits):
                self._by_aggregate.setdefault(key, set()).add(segment_id)
            if reads.traits:
                self._by_traits.add(segment_id)
            if reads.identifiers:
                self._by_identifiers.add(segment_id)
            if reads.consent:
                self._by_consent.add(segment_id)

    # -- compiling --------------------------------------------------------------------------

    def _aggregate(self, aggregate: Aggregate) -> str:
        key = aggregate.key
        if key not in self.aggregates:
            where = self._compile(aggregate.where, ("event",)) if aggregate.where else None
            compiled = CompiledAggregate(aggregate, where, key)
            self.aggregates[key] = compiled
            self.by_event.setdefault(aggregate.event, []).append(compiled)
            if reads_times(aggregate):
                self.timed_events.add(aggregate.event)
        return key

    def _condition(self, node: Condition) -> Callable[[View], bool]:
        if isinstance(node, AllOf):
            parts = [self._condition(c) for c in node.conditions]
            return lambda view: all(part(view) for part in parts)
        if isinstance(node, AnyOf):
            parts = [self._condition(c) for c in node.conditions]
            return lambda view: any(part(view) for part in parts)
        if isinstance(node, Not):
            inner = self._condition(node.condition)
            return lambda view: not inner(view)
        if isinstance(node, TraitCondition):
            return _trait_test(node)
        if isinstance(node, IdentifierCondition):
            kind = node.type
            return lambda view: bool(view.profile.identifiers.get(kind))
        if isinstance(node, ConsentCondition):
            return _consent_test(node)
        if isinstance(node, MemberCondition):
            segment_id = node.segment
            return lambda view: segment_id in view.segments
        if isinstance(node, PerformedCondition):
            return _performed_test(node, self._aggregate(node.aggregate))
        if isinstance(node, ProfileCondition):
            probe = _profile_probe(self._compile(node.where, ("profile", "now")))
            if _READS_NOW.search(node.where):
                self._clocked.append(probe)
            return lambda view: probe(view)(view.now)
        raise TypeError(f"unknown condition {node!r}")

    # -- what a change touches ----------------------------------------------------------------

    def fed_by(self, event_name: str | None) -> list[CompiledAggregate]:
        """The aggregates an event of this name may feed (their ``where`` still to test)."""
        return self.by_event.get(event_name or "", []) if event_name else []

    def touched(
        self, aggregates: Iterable[str], traits: bool, identifiers: bool, consent: bool
    ) -> set[str]:
        """Segments whose result may change when these aggregates change, and, as flagged,
        traits, identifiers or consent (not counting ``member:`` dependents: :meth:`evaluate`
        follows those)."""
        found: set[str] = set()
        for key in aggregates:
            found.update(self._by_aggregate.get(key, ()))
        if traits:
            found.update(self._by_traits)
        if identifiers:
            found.update(self._by_identifiers)
        if consent:
            found.update(self._by_consent)
        return found

    # -- evaluating ---------------------------------------------------------------------------

    def evaluate(self, view: View, before: set[str], touched: set[str] | None) -> set[str]:
        """The customer's segments now. ``before`` is what they were; only ``touched`` ones
        (all when None) and those naming a segment whose result changed are re-evaluated."""
        view.segments = set(before)
        pending = set(self.ids) if touched is None else set(touched)
        for segment in self.segments:
            sid = segment.id
            if sid not in pending:
                continue
            now_in = self._tests[sid](view)
            if now_in != (sid in view.segments):
                if now_in:
                    view.segments.add(sid)
                else:
                    view.segments.discard(sid)
                pending.update(self._dependents.get(sid, ()))
        return view.segments & self.ids

    def wake_at(self, folds: Mapping[str, Fold], now: int, view: View | None = None) -> int | None:
        """When time alone may next change a segment of this customer, or None: the next
        change of a windowed aggregate, and (given the customer's ``view``) of a CEL condition
        that reads ``now``, looked for up to :data:`CLOCK_HORIZON_MS` ahead (at the horizon at
        the latest, to look again)."""
        found = self._fold_wake(folds, now)
        if view is not None and self._clocked:
            at = now + CLOCK_HORIZON_MS
            for probe in self._clocked:
                flip = next_flip(probe(view), now)
                if flip is not None:
                    at = min(at, flip)
            found = at if found is None else min(found, at)
        return found

    def _fold_wake(self, folds: Mapping[str, Fold], now: int) -> int | None:
        found: int | None = None
        present = folds.present() if isinstance(folds, CustomerFolds) else folds.keys()
        for key in present:
            if key not in self.timed:
                continue
            fold = folds.get(key)
            if fold is None:
                continue
            at = ag.next_change(fold, self.aggregates[key].aggregate, now)
            if at is not None and (found is None or at < found):
                found = at
        return found


def _timed(aggregate: Aggregate) -> bool:
    return aggregate.within_ms is not None or aggregate.kind == "days_since"


def _performed_test(node: PerformedCondition, key: str) -> Callable[[View], bool]:
    aggregate, times, op = node.aggregate, node.times, node.op

    def test(view: View) -> bool:
        fold = view.folds.get(key)
        count = ag.value(fold, aggregate, view.now) if fold is not None else 0
        if op == "gte":
            return bool(count >= times)
        if op == "lte":
            return bool(count <= times)
        return bool(count == times)

    return test


def _consent_test(node: ConsentCondition) -> Callable[[View], bool]:
    def test(view: View) -> bool:
        choice = effective_consent(view.consents, node.channel, node.category)
        return choice is not None and choice.subscribed == node.subscribed

    return test


def _profile_probe(predicate: Predicate) -> Callable[[View], Callable[[int], bool]]:
    """A CEL leaf as view -> (instant -> its result with ``now`` at that instant), the
    customer's traits as the view has them (read once per view)."""

    def for_view(view: View) -> Callable[[int], bool]:
        profile = view.profile
        seen = {"id": profile.id, "traits": dict(view.traits), "identifiers": profile.identifiers}

        def result(at: int) -> bool:
            return predicate({"profile": seen, "now": datetime.fromtimestamp(at / 1000, tz=UTC)})

        return result

    return for_view


def next_flip(result_at: Callable[[int], bool], now: int) -> int | None:
    """The first instant after ``now`` (to :data:`_FLIP_PRECISION_MS`) at which ``result_at``
    differs from its result at ``now``, as far as the probes (:data:`_PROBES`) up to
    :data:`CLOCK_HORIZON_MS` ahead show, or None. A change undone before the next probe (a
    state lasting under an hour, more than an hour ahead) goes unseen."""
    base = result_at(now)
    low = now
    for offset in _PROBES:
        high = now + offset
        if result_at(high) != base:
            while high - low > _FLIP_PRECISION_MS:
                middle = (low + high) // 2
                if result_at(middle) != base:
                    high = middle
                else:
                    low = middle
            return high
        low = high
    return None


def _trait_test(node: TraitCondition) -> Callable[[View], bool]:
    name, check = node.trait, comparer(node.op, node.value)

    def test(view: View) -> bool:
        return check(view.traits.get(name))

    return test


_NUMBER_TYPES = (int, float)


def comparer(op: str, operand: Any) -> Callable[[Any], bool]:
    """``lambda value: compare(value, op, operand)``, specialized once for the operand's type
    (segments compare every customer they evaluate)."""
    if op == "exists":
        return lambda value: value is not None
    if op == "missing":
        return lambda value: value is None
    if op in ("eq", "ne"):
        same = _equal_to(operand)
        return same if op == "eq" else (lambda value: not same(value))
    if op in ("in", "not_in") and isinstance(operand, list | tuple):
        if all(type(o) is str for o in operand):
            texts = frozenset(operand)

            def inside(value: Any) -> bool:
                return type(value) is str and value in texts

        else:
            tests = [_equal_to(o) for o in operand]

            def inside(value: Any) -> bool:
                return any(test(value) for test in tests)

        return inside if op == "in" else (lambda value: not inside(value))
    if op in _ORDERS and _kind(operand) in ("number", "str"):
        order = _ORDERS[op]
        kinds = _NUMBER_TYPES if _kind(operand) == "number" else (str,)
        return lambda value: type(value) in kinds and order(value, operand)
    return lambda value: compare(value, op, operand)


_ORDERS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: bool(a > b),
    "gte": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "lte": lambda a, b: bool(a <= b),
}


def _equal_to(operand: Any) -> Callable[[Any], bool]:
    """A test for values :func:`_same` as ``operand``."""
    if operand is None:
        return lambda value: False
    kind = _kind(operand)
    if kind == "bool":
        return lambda value: value is operand
    if kind == "number":
        return lambda value: type(value) in _NUMBER_TYPES and bool(value == operand)
    if kind == "str":
        return lambda value: type(value) is str and value == operand
    return lambda value: _same(value, operand)


def compare(value: Any, op: str, operand: Any) -> bool:
    """A trait's value against an operand. Values of different kinds (text and number, true and
    1) are never equal nor ordered; a missing (null) trait is only ``ne``, ``not_in`` and
    ``missing``."""
    if op == "exists":
        return value is not None
    if op == "missing":
        return value is None
    if op == "eq":
        return _same(value, operand)
    if op == "ne":
        return not _same(value, operand)
    if op == "in":
        return isinstance(operand, list | tuple) and any(_same(value, o) for o in operand)
    if op == "not_in":
        return not (isinstance(operand, list | tuple) and any(_same(value, o) for o in operand))
    if op == "contains":
        if isinstance(value, list):
            return any(_same(item, operand) for item in value)
        return isinstance(value, str) and isinstance(operand, str) and operand in value
    if not _comparable(value, operand):
        return False
    if op == "gt":
        return bool(value > operand)
    if op == "gte":
        return bool(value >= operand)
    if op == "lt":
        return bool(value < operand)
    if op == "lte":
        return bool(value <= operand)
    raise ValueError(f"unknown operator {op!r}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _same(value: Any, operand: Any) -> bool:
    return value is not None and _kind(value) == _kind(operand) and bool(value == operand)


def _comparable(value: Any, operand: Any) -> bool:
    kind = _kind(value)
    return value is not None and kind == _kind(operand) and kind in ("number", "str")
