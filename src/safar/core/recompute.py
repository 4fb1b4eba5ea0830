"""Audiences recomputed from scratch: every customer's whole history, at one instant.

This is the batch side of audiences, written independently of the incremental folds
(:mod:`safar.core.aggregates`): it filters a customer's events and computes each aggregate
directly. It is the reference the incremental processor is tested against, and what repairs
and previews run (a SQL version over DuckDB, :mod:`safar.runtime.recompute`, must agree with
it too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from safar.core.aggregates import is_number
from safar.core.gate_rules import effective_consent
from safar.core.paths import dig
from safar.core.segments import Compile, Predicate, compare
from safar.model.audiences import (
    DAY_MS,
    NUMERIC_KINDS,
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
    PerformedCondition,
    ProfileCondition,
    Segment,
    TraitCondition,
)
from safar.model.messages import Consent
from safar.model.profiles import Profile


class HistoryEvent(NamedTuple):
    name: str | None
    timestamp: int
    seq: int
    payload: Mapping[str, Any]


class History(NamedTuple):
    """One customer as a batch recompute reads them."""

    profile: Profile
    events: Sequence[HistoryEvent]
    consents: Sequence[Consent] = ()


class Result(NamedTuple):
    segments: frozenset[str]
    traits: dict[str, Any]


class Recompute:
    """Segments (members first) and computed traits, compiled once, evaluated per customer."""

    def __init__(
        self, segments: Sequence[Segment], traits: Sequence[ComputedTrait], compile: Compile
    ) -> None:
        self.segments = list(segments)
        self.traits = list(traits)
        self._compile = compile
        self._cel: dict[tuple[str, tuple[str, ...]], Predicate] = {}

    def _predicate(self, source: str, names: tuple[str, ...]) -> Predicate:
        key = (source, names)
        if key not in self._cel:
            self._cel[key] = self._compile(source, names)
        return self._cel[key]

    def customer(self, history: History, now: int) -> Result:
        """Their segments and computed traits at ``now``."""
        traits = dict(history.profile.traits)
        for trait in self.traits:
            traits[trait.id] = self.aggregate(trait.aggregate, history.events, now)
        inside: set[str] = set()
        for segment in self.segments:
            if self._holds(segment.where, history, traits, inside, now):
                inside.add(segment.id)
        computed = {t.id: traits[t.id] for t in self.traits}
        return Result(frozenset(inside), computed)

    def aggregate(self, aggregate: Aggregate, events: Sequence[HistoryEvent], now: int) -> Any:
        """The aggregate over one customer's events, at ``now``."""
        where = self._predicate(aggregate.where, ("event",)) if aggregate.where else None
        rows: list[tuple[int, int, Any]] = []
        for event in events:
            if event.name != aggregate.event:
                continue
            if aggregate.within_ms is not None and now >= event.timestamp + aggregate.within_ms:
                continue
            if where is not None and not where({"event": event.payload}):
                continue
            value = None
            if aggregate.kind in VALUE_KINDS and aggregate.value is not None:
                value = dig(event.payload, aggregate.value)
                if value is None or (aggregate.kind in NUMERIC_KINDS and not is_number(value)):
                    continue
            rows.append((event.timestamp, event.seq, value))
        return _fold_rows(aggregate, rows, now)

    def _holds(
        self,
        node: Condition,
        history: History,
        traits: Mapping[str, Any],
        inside: set[str],
        now: int,
    ) -> bool:
        if isinstance(node, AllOf):
            return all(self._holds(c, history, traits, inside, now) for c in node.conditions)
        if isinstance(node, AnyOf):
            return any(self._holds(c, history, traits, inside, now) for c in node.conditions)
        if isinstance(node, Not):
            return not self._holds(node.condition, history, traits, inside, now)
        if isinstance(node, TraitCondition):
            return compare(traits.get(node.trait), node.op, node.value)
        if isinstance(node, IdentifierCondition):
            return bool(history.profile.identifiers.get(node.type))
        if isinstance(node, ConsentCondition):
            choice = effective_consent(history.consents, node.channel, node.category)
            return choice is not None and choice.subscribed == node.subscribed
        if isinstance(node, MemberCondition):
            return node.segment in inside
        if isinstance(node, PerformedCondition):
            count = self.aggregate(node.aggregate, history.events, now)
            if node.op == "gte":
                return bool(count >= node.times)
            if node.op == "lte":
                return bool(count <= node.times)
            return bool(count == node.times)
        if isinstance(node, ProfileCondition):
            profile = history.profile
            activation = {
                "profile": {"id": profile.id, "traits": traits, "identifiers": profile.identifiers},
                "now": datetime.fromtimestamp(now / 1000, tz=UTC),
            }
            return self._predicate(node.where, ("profile", "now"))(activation)
        raise TypeError(f"unknown condition {node!r}")


def _fold_rows(aggregate: Aggregate, rows: list[tuple[int, int, Any]], now: int) -> Any:
    kind = aggregate.kind
    if kind == "count":
        return len(rows)
    values = [value for _, _, value in rows]
    if kind == "sum":
        total = math.fsum(values)
        return int(total) if total.is_integer() and abs(total) < 2**53 else total
    if not rows:
        return None
    if kind == "avg":
        return math.fsum(values) / len(values)
    if kind == "min":
        return min(values)
    if kind == "max":
        return max(values)
    ordered = sorted(rows, key=lambda row: (row[0], row[1]))
    if kind == "first":
        return ordered[0][2]
    if kind == "last":
        return ordered[-1][2]
    if kind == "days_since":
        return max(0, (now - ordered[-1][0]) // DAY_MS)
    texts = [msgspec.json.encode(value).decode() for value in values]
    best = min(set(texts), key=lambda text: (-texts.count(text), text))
    return msgspec.json.decode(best)
