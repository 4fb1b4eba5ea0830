"""Folding a customer's events into aggregates, one event at a time: pure functions over
:class:`~safar.model.audiences.Fold`.

A fold belongs to one identifier (the one each event is attributed to); a customer's value is
read from the :func:`combine` of the folds of all their identifiers, so that merging two
profiles, or moving an identifier between them, needs no recomputation.

Windowed aggregates keep the (timestamp, seq, value) of each event still inside the window:
expiring one is dropping it, and :func:`next_change` says when the next one goes. All-time ones
keep a constant-size summary. Ties between events with the same timestamp are broken by
``seq`` (log order), so first and last are well defined.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from safar.core.paths import dig
from safar.model.audiences import DAY_MS, NUMERIC_KINDS, VALUE_KINDS, Aggregate, Fold

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def extract(aggregate: Aggregate, payload: Mapping[str, Any]) -> tuple[bool, Any]:
    """Whether the event counts for ``aggregate`` at all (its ``where`` aside), and the value
    it contributes. Value kinds skip events without a usable value: missing, or not a number
    for numeric kinds; ``most_frequent``, ``first`` and ``last`` take any JSON value but null."""
    if aggregate.kind not in VALUE_KINDS or aggregate.value is None:
        return True, None
    value = dig(payload, aggregate.value)
    if value is None:
        return False, None
    if aggregate.kind in NUMERIC_KINDS and not is_number(value):
        return False, None
    return True, value


def alive(aggregate: Aggregate, timestamp: int, now: int) -> bool:
    """Whether an event at ``timestamp`` is inside the aggregate's window at ``now``."""
    return aggregate.within_ms is None or now < timestamp + aggregate.within_ms


def add(fold: Fold, aggregate: Aggregate, timestamp: int, seq: int, value: Any, now: int) -> bool:
    """Fold one matching event in (as :func:`extract` gave its value). Returns False, changing
    nothing, when the event is already outside the window."""
    if aggregate.within_ms is not None:
        if not alive(aggregate, timestamp, now):
            return False
        entries = fold.entries
        entry = (timestamp, seq, value)
        # Events mostly arrive in time order: appending skips insort's key calls.
        if not entries or (entries[-1][0], entries[-1][1]) <= (timestamp, seq):
            entries.append(entry)
        else:
            bisect.insort(entries, entry, key=_order)
        return True
    kind = aggregate.kind
    fold.n += 1
    if kind in ("sum", "avg"):
        fold.total += value
    elif kind == "min":
        fold.low = value if fold.low is None else min(fold.low, value)
    elif kind == "max":
        fold.high = value if fold.high is None else max(fold.high, value)
    elif kind == "first":
        entry = (timestamp, seq, value)
        if fold.first is None or _order(entry) < _order(fold.first):
            fold.first = entry
    elif kind in ("last", "days_since"):
        entry = (timestamp, seq, value)
        if fold.last is None or _order(entry) > _order(fold.last):
            fold.last = entry
    elif kind == "most_frequent":
        key = _encode(value).decode()
        fold.counts[key] = fold.counts.get(key, 0) + 1
    return True


def expire(fold: Fold, aggregate: Aggregate, now: int) -> bool:
    """Drop the entries that left the window by ``now``; True when any did."""
    if aggregate.within_ms is None or not fold.entries:
        return False
    cut = 0
    entries = fold.entries
    while cut < len(entries) and not alive(aggregate, entries[cut][0], now):
        cut += 1
    if cut:
        del entries[:cut]
    return cut > 0


def empty(fold: Fold) -> bool:
    """Whether the fold holds nothing (and need not be stored)."""
    return not fold.entries and fold.n == 0


def combine(folds: Iterable[Fold], aggregate: Aggregate) -> Fold:
    """One fold for a customer from the folds of their identifiers."""
    merged = Fold()
    for fold in folds:
        if aggregate.within_ms is not None:
            merged.entries.extend(fold.entries)
            continue
        merged.n += fold.n
        merged.total += fold.total
        if fold.low is not None:
            merged.low = fold.low if merged.low is None else min(merged.low, fold.low)
        if fold.high is not None:
            merged.high = fold.high if merged.high is None else max(merged.high, fold.high)
        if fold.first is not None and (
            merged.first is None or _order(fold.first) < _order(merged.first)
        ):
            merged.first = fold.first
        if fold.last is not None and (
            merged.last is None or _order(fold.last) > _order(merged.last)
        ):
            merged.last = fold.last
        for key, count in fold.counts.items():
            merged.counts[key] = merged.counts.get(key, 0) + count
    merged.entries.sort(key=_order)
    return merged


def value(fold: Fold, aggregate: Aggregate, now: int) -> Any:
    """The aggregate's value at ``now``: a count (0 when nothing matched), a sum (0), an average,
    min or max (None when nothing matched), the first or last value, the most frequent value
    (ties go to the one whose JSON text sorts first), or whole days since the last event."""
    if aggregate.within_ms is None:
        return _summary_value(fold, aggregate, now)
    live = [e for e in fold.entries if alive(aggregate, e[0], now)]
    return _entries_value(live, aggregate, now)


def _summary_value(fold: Fold, aggregate: Aggregate, now: int) -> Any:
    kind = aggregate.kind
    if kind == "count":
        return fold.n
    if kind == "sum":
        return _number(fold.total)
    if kind == "avg":
        return fold.total / fold.n if fold.n else None
    if kind == "min":
        return fold.low
    if kind == "max":
        return fold.high
    if kind == "first":
        return fold.first[2] if fold.first is not None else None
    if kind == "last":
        return fold.last[2] if fold.last is not None else None
    if kind == "days_since":
        return _days(fold.last[0], now) if fold.last is not None else None
    return _most_frequent(fold.counts)


def _entries_value(live: list[tuple[int, int, Any]], aggregate: Aggregate, now: int) -> Any:
    kind = aggregate.kind
    if kind == "count":
        return len(live)
    values = [e[2] for e in live]
    if kind == "sum":
        return _number(math.fsum(values))
    if not live:
        return None
    if kind == "avg":
        return math.fsum(values) / len(values)
    if kind == "min":
        return min(values)
    if kind == "max":
        return max(values)
    if kind == "first":
        return min(live, key=_order)[2]
    if kind == "last":
        return max(live, key=_order)[2]
    if kind == "days_since":
        return _days(max(live, key=_order)[0], now)
    counts: dict[str, int] = {}
    for item in values:
        key = _encode(item).decode()
        counts[key] = counts.get(key, 0) + 1
    return _most_frequent(counts)


def next_change(fold: Fold, aggregate: Aggregate, now: int) -> int | None:
    """The next instant after ``now`` when the value may change with time alone: the first
    entry leaving the window, or for ``days_since`` the next whole day; None when never."""
    found: int | None = None
    if aggregate.within_ms is not None:
        for timestamp, _, _ in fold.entries:
            ends = timestamp + aggregate.within_ms
            if ends > now:
                found = ends
                break
    if aggregate.kind == "days_since":
        last = _latest(fold, aggregate, now)
        if last is not None:
            day = last + DAY_MS * (_days(last, now) + 1)
            found = day if found is None else min(found, day)
    return found


def _latest(fold: Fold, aggregate: Aggregate, now: int) -> int | None:
    if aggregate.within_ms is None:
        return fold.last[0] if fold.last is not None else None
    live = [e for e in fold.entries if alive(aggregate, e[0], now)]
    return max(live, key=_order)[0] if live else None


def _order(entry: tuple[int, int, Any]) -> tuple[int, int]:
    return entry[0], entry[1]


def _days(since: int, now: int) -> int:
    return max(0, (now - since) // DAY_MS)


def _number(total: float) -> int | float:
    """Sums of whole numbers read as integers (``3``, not ``3.0``)."""
    return int(total) if float(total).is_integer() and abs(total) < 2**53 else total


def _most_frequent(counts: Mapping[str, int]) -> Any:
    if not counts:
        return None
    best = min(counts.items(), key=lambda item: (-item[1], item[0]))[0]
    return _decode(best)
