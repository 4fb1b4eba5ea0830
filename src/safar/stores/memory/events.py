"""In-memory :class:`safar.ports.EventLog`.

Events live in a list where an event's ``seq`` is its index + 1 (seqs are gap-free, and this log
never deletes), so reads are slices. Dedupe keys live in an insertion-ordered dict of
``(source_id, message_id) -> appended at``; since the clock never goes backwards the oldest key is
always first, so expiry pops from the front and costs O(1) per key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence

import msgspec

from safar.model.events import AppendResult, Event
from safar.ports import Clock

DEFAULT_DEDUPE_WINDOW_MS = 24 * 3600 * 1000


class MemoryEventLog:
    """An event log in a list; duplicates are remembered for exactly ``dedupe_window_ms``."""

    def __init__(self, clock: Clock, *, dedupe_window_ms: int = DEFAULT_DEDUPE_WINDOW_MS) -> None:
        if dedupe_window_ms <= 0:
            raise ValueError("dedupe_window_ms must be positive")
        self._clock = clock
        self._window = dedupe_window_ms
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()

    def append(self, events: Sequence[Event]) -> AppendResult:
        now = self._clock.now_ms()
        with self._lock:
            self._expire(now)
            seen = self._seen
            seq = len(self._events)
            stored: list[Event] = []
            for event in events:
                key = (event.source_id, event.message_id)
                if key in seen:
                    continue
                seen[key] = now
                seq += 1
                stored.append(msgspec.structs.replace(event, seq=seq))
            self._events.extend(stored)
            return AppendResult(len(stored), len(events) - len(stored), seq)

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        with self._lock:
            self._expire(self._clock.now_ms())
            return {key for key in keys if key in self._seen}

    def _expire(self, now: int) -> None:
        seen = self._seen
        cutoff = now - self._window
        while seen:
            if next(iter(seen.values())) > cutoff:
                break
            seen.popitem(last=False)

    def read(self, after_seq: int, limit: int) -> list[Event]:
        start = max(after_seq, 0)
        with self._lock:
            return self._events[start : start + max(limit, 0)]

    def get(self, seqs: Collection[int]) -> list[Event]:
        with self._lock:
            total = len(self._events)
            return [self._events[seq - 1] for seq in sorted(set(seqs)) if 0 < seq <= total]

    def last_seq(self) -> int:
        return len(self._events)

    def count(self) -> int:
        return len(self._events)
