"""Incremental folds (safar.core.aggregates) against the batch recompute (safar.core.recompute):
whatever the events, their order, how they are split between identifiers and when windows
expire, the incremental value equals the one computed from scratch."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from safar.core import aggregates as ag
from safar.core.recompute import HistoryEvent, Recompute
from safar.model.audiences import AGGREGATE_KINDS, DAY_MS, Aggregate, Fold

HOUR = 3_600_000


def _never(source: str, names: tuple[str, ...]) -> Any:
    raise AssertionError("no conditions here")


def _batch(aggregate: Aggregate, events: list[HistoryEvent], now: int) -> Any:
    return Recompute([], [], _never).aggregate(aggregate, events, now)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b)
    return type(a) is type(b) and a == b


def _event(seq: int, ts: int, value: Any) -> HistoryEvent:
    properties = {} if value is None else {"v": value}
    return HistoryEvent("Bought", ts, seq, {"event": "Bought", "properties": properties})


def test_windowed_count_expires_exactly_at_the_window_end() -> None:
    aggregate = Aggregate(event="Bought", within_ms=DAY_MS)
    fold = Fold()
    assert ag.add(fold, aggregate, 1000, 1, None, now=1000)
    assert ag.value(fold, aggregate, 1000 + DAY_MS - 1) == 1
    assert ag.next_change(fold, aggregate, 1000) == 1000 + DAY_MS
    assert ag.value(fold, aggregate, 1000 + DAY_MS) == 0
    assert ag.next_change(fold, aggregate, 1000 + DAY_MS) is None
    assert ag.expire(fold, aggregate, 1000 + DAY_MS) and ag.empty(fold)


def test_a_window_keeps_its_entries_in_time_order_whatever_the_arrival_order() -> None:
    aggregate = Aggregate(event="Bought", within_ms=HOUR)
    fold = Fold()
    for timestamp, seq in ((3000, 1), (1000, 2), (3000, 0), (5000, 3)):
        assert ag.add(fold, aggregate, timestamp, seq, None, now=5000)
    assert [(e[0], e[1]) for e in fold.entries] == [(1000, 2), (3000, 0), (3000, 1), (5000, 3)]
    assert ag.next_change(fold, aggregate, 5000) == 1000 + HOUR
    assert ag.expire(fold, aggregate, 1000 + HOUR)
    assert ag.value(fold, aggregate, 1000 + HOUR) == len(fold.entries) == 3


def test_an_event_already_outside_its_window_is_not_folded() -> None:
    aggregate = Aggregate(event="Bought", within_ms=HOUR)
    fold = Fold()
    assert not ag.add(fold, aggregate, 0, 1, None, now=HOUR)
    assert ag.empty(fold)


def test_days_since_changes_at_whole_days() -> None:
    aggregate = Aggregate(event="Bought", kind="days_since")
    fold = Fold()
    ag.add(fold, aggregate, 5 * HOUR, 1, None, now=5 * HOUR)
    assert ag.value(fold, aggregate, 5 * HOUR) == 0
    assert ag.next_change(fold, aggregate, 6 * HOUR) == 5 * HOUR + DAY_MS
    assert ag.value(fold, aggregate, 5 * HOUR + 3 * DAY_MS) == 3


def test_most_frequent_ties_go_to_the_first_json_text() -> None:
    aggregate = Aggregate(event="Bought", kind="most_frequent", value="properties.v")
    fold = Fold()
    for seq, value in enumerate(["shoes", "bags", "shoes", "bags"]):
        ag.add(fold, aggregate, seq, seq, value, now=0)
    assert ag.value(fold, aggregate, 0) == "bags"


def test_sums_of_whole_numbers_are_integers() -> None:
    aggregate = Aggregate(event="Bought", kind="sum", value="properties.v")
    fold = Fold()
    ag.add(fold, aggregate, 0, 1, 2, now=0)
    ag.add(fold, aggregate, 0, 2, 3.0, now=0)
    assert ag.value(fold, aggregate, 0) == 5 and isinstance(ag.value(fold, aggregate, 0), int)


def test_non_numbers_are_left_out_of_numeric_kinds() -> None:
    aggregate = Aggregate(event="Bought", kind="max", value="properties.v")
    assert ag.extract(aggregate, {"properties": {"v": "12"}}) == (False, None)
    assert ag.extract(aggregate, {"properties": {"v": True}}) == (False, None)
    assert ag.extract(aggregate, {"properties": {"v": 12}}) == (True, 12)
    counting = Aggregate(event="Bought", kind="count", value=None)
    assert ag.extract(counting, {}) == (True, None)


_values = st.one_of(
    st.none(),
    st.integers(-5, 50),
    st.floats(-100, 100, allow_nan=False),
    st.sampled_from(["a", "b", "c"]),
    st.booleans(),
)
_events = st.lists(st.tuples(st.integers(0, 40 * DAY_MS), _values, st.integers(0, 2)), max_size=25)


@settings(max_examples=500, deadline=None)
@given(
    kind=st.sampled_from(AGGREGATE_KINDS),
    within_days=st.one_of(st.none(), st.integers(1, 10)),
    raw=_events,
    checks=st.lists(st.integers(0, 60 * DAY_MS), min_size=1, max_size=6),
)
def test_incremental_folds_equal_the_batch_recompute(
    kind: str, within_days: int | None, raw: list[tuple[int, Any, int]], checks: list[int]
) -> None:
    """Events arrive in log order at increasing processing times (each no earlier than its
    timestamp minus a day: clocks are skewed), land on one of three identifiers, and
    windows are expired as time goes; at every check the combined folds answer like a recompute
    over every event seen so far."""
    aggregate = Aggregate(
        event="Bought",
        kind=kind,  # type: ignore[arg-type]
        value="properties.v" if kind in ag.VALUE_KINDS else None,
        within_ms=within_days * DAY_MS if within_days else None,
    )
    arrivals = sorted((max(ts - DAY_MS, 0), i) for i, (ts, _, _) in enumerate(raw))
    moments = sorted(checks)
    folds = [Fold(), Fold(), Fold()]
    seen: list[HistoryEvent] = []
    pending = list(arrivals)
    for now in moments:
        while pending and pending[0][0] <= now:
            arrived, index = pending.pop(0)
            ts, value, owner = raw[index]
            event = _event(index + 1, ts, value)
            seen.append(event)
            usable, extracted = ag.extract(aggregate, event.payload)
            if usable:
                ag.add(folds[owner], aggregate, ts, index + 1, extracted, now=arrived)
        for fold in folds:
            ag.expire(fold, aggregate, now)
        combined = ag.combine(folds, aggregate)
        expected = _batch(aggregate, seen, now)
        assert _same(ag.value(combined, aggregate, now), expected), (now, expected)
        change = ag.next_change(combined, aggregate, now)
        if change is not None:
            assert change > now
            # Nothing changes before the announced instant.
            assert _same(_batch(aggregate, seen, change - 1), expected)


#: Values that tell types apart: true and 1, 1 and 1.0, "1" and 1, a list and its item.
_SCALARS = [None, True, False, 0, 1, 1.0, 0.0, -2, 2.5, "a", "b", "", "1", "ab"]
_json = st.one_of(st.sampled_from(_SCALARS), st.lists(st.sampled_from(_SCALARS), max_size=3))


@settings(max_examples=2000, deadline=None)
@given(
    value=_json,
    op=st.sampled_from(
        ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "missing"]
    ),
    operand=_json,
)
def test_specialized_comparisons_answer_like_compare(value: Any, op: str, operand: Any) -> None:
    from safar.core.segments import compare, comparer

    assert comparer(op, operand)(value) == compare(value, op, operand)
