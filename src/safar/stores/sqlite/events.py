"""SQLite :class:`safar.ports.EventLog`: the hot path of ingestion.

Why it looks like this: appending to a table keyed by ``INTEGER PRIMARY KEY`` is sequential and
fast (~220k rows/s in 100-row WAL transactions on a 2-core machine); adding any unique index on a
random key (the ``messageId``, or a hash of it) drops that to ~31-38k rows/s whatever the cache
size, because each random insert dirties about one B-tree page per row per commit. So the log
has no secondary index, and deduplication is split into a cheap hot part and a batched cold part:

- ``event_segments``: one row per append (:mod:`safar.stores.sqlite.eventrows`), so SQLite's
  per-row cost is paid per append, not per event; nothing else is written per append.
- Two generation tables ``event_dedupe_0`` / ``event_dedupe_1``, ``(key TEXT PRIMARY KEY) WITHOUT
  ROWID``, with ``key = source_id + "\\x1f" + message_id`` (exact, so no hash collisions; source
  ids never contain ``\\x1f``), and the one-row ``event_dedupe_meta``: the current generation, when
  it started, ``flushed_seq`` (every event up to it has its key in a generation table) and how
  many keys each table holds.
- In process, the set ``recent`` holds the keys of the events with ``seq > flushed_seq``; it is
  loaded on first use by decoding only the segments of that tail. Beside it, a Bloom filter over
  the keys in the tables, built on first use by scanning them.
- ``append`` runs in one ``BEGIN IMMEDIATE`` transaction: read the events other processes committed
  since this one last looked (``safar import`` next to ``safar serve``) into ``recent``; a key is a
  duplicate if it is in ``recent``, earlier in the same call, or - when the filter says it may be
  there - found by ``SELECT … WHERE key IN (…)`` in a non-empty generation table; store the rest
  as one segment with explicit gap-free seqs; commit.
- Once ``recent`` holds ``flush_threshold`` keys, the keys of the events past ``flushed_seq``
  (exactly ``recent``) are inserted, sorted, into the current generation (so each leaf page is
  written once) and added to the filter, :data:`FLUSH_SLICE` keys after each append, in
  transactions of their own; after the last slice ``flushed_seq`` moves up
  (:meth:`SqliteEventLog._flush_slice`). :meth:`SqliteEventLog.close` flushes all at once.
- Generations are ``dedupe_window_ms`` long and aligned: the first write after the current one has
  run a full window flushes into it, empties the older table and makes that current. A key
  therefore lives between one and two windows. After two idle windows both tables are emptied.

Processes coordinate only through the database: each re-reads the meta row in every write
transaction, adds the keys another process flushed to its filter and reloads ``recent``, and
rebuilds the filter when the generation changed. Any failed transaction marks the in-process state
stale, so it is rebuilt from the database on the next write. Threads share one instance; a lock
serializes writes (SQLite serializes them anyway).

Costs, measured on 2 cores: writing a segment costs ~0.9 µs per event of the writer thread (a row
per event cost ~7 µs); reading by ``read`` is ~2x faster than rows were, while ``get`` of scattered
seqs decodes a whole segment per hit (~38 µs for 100 events). A key looked up
in a table costs ~1.5 µs per table while the tables fit in the page cache and ~3-6 µs once they
hold millions of keys, hence the filter (~0.4 µs per key, ~0.5 µs to add one, 2-4 bytes per key,
~1 s per million keys to build at start). A flushed key costs ~2 µs plus its share of the pages
rewritten: a flush touches every leaf page of the table it lands in, so the bigger the flush
relative to the table the cheaper each key. ``recent`` costs ~150 bytes per key; the default
threshold (200k) keeps it near 30 MB.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from safar.errors import StoreError
from safar.model.events import AppendResult, Event
from safar.ports import Clock
from safar.stores.sqlite import eventrows
from safar.stores.sqlite.db import Database, Migration

DEFAULT_DEDUPE_WINDOW_MS = 24 * 3600 * 1000
DEFAULT_FLUSH_THRESHOLD = 200_000
#: Keys a flush writes per transaction: the log's write lock is held 5-10 ms at a time, not for
#: the whole flush (~0.25 s for 200k keys, which every other writer of the log waited out).
#: Against 10,000 keys every 50 ms, ingestion's request p99 was 31-33 ms instead of 37-38.
FLUSH_SLICE = 5_000
#: Seconds at least between two slices of a flush, so that other writers get the lock between
#: them (appends come every few ms under load; back to back, one flush's slices held it 0.3 s).
FLUSH_PAUSE_S = 0.025

_SEP = "\x1f"
#: Keys from which a filter adds them with NumPy rather than one by one.
_VECTOR_ADD = 1_000
#: Values bound per ``IN (…)``; far below SQLite's limit, big enough to keep round trips few.
_CHUNK = 500

_MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE events(
        seq INTEGER PRIMARY KEY,
        source_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT,
        user_id TEXT,
        anonymous_id TEXT,
        timestamp INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE event_dedupe_0(key TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE event_dedupe_1(key TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE event_dedupe_meta(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL,
        started_at INTEGER,
        flushed_seq INTEGER NOT NULL,
        keys_0 INTEGER NOT NULL,
        keys_1 INTEGER NOT NULL
    );
    INSERT INTO event_dedupe_meta VALUES (1, 0, NULL, 0, 0, 0)
    """,
    eventrows.move_rows_to_segments,
]

_GET_META = "SELECT generation, started_at, flushed_seq, keys_0, keys_1 FROM event_dedupe_meta"
_SET_META = (
    "UPDATE event_dedupe_meta"
    " SET generation = ?, started_at = ?, flushed_seq = ?, keys_0 = ?, keys_1 = ?"
)


class _Meta(NamedTuple):
    """The ``event_dedupe_meta`` row."""

    generation: int
    started: int | None  # None until the first write
    flushed_seq: int
    keys_0: int
    keys_1: int

    def counts(self) -> tuple[int, int]:
        """How many keys each generation table holds, by table number."""
        return self.keys_0, self.keys_1

    def with_count(self, table: int, count: int) -> _Meta:
        return self._replace(keys_0=count) if table == 0 else self._replace(keys_1=count)


class SqliteEventLog:
    """The event log in the shared SQLite database; see the module docstring for the design.

    ``flush_threshold`` is how many keys are kept in memory (and re-read from the tail of the log
    on start) before they are written to the dedupe tables; each instance draws its own, up to
    1.5 times as many.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        dedupe_window_ms: int = DEFAULT_DEDUPE_WINDOW_MS,
        flush_threshold: int = DEFAULT_FLUSH_THRESHOLD,
    ) -> None:
        if dedupe_window_ms <= 0:
            raise ValueError("dedupe_window_ms must be positive")
        if flush_threshold <= 0:
            raise ValueError("flush_threshold must be positive")
        self._db = db
        self._clock = clock
        self._window = dedupe_window_ms
        self._flush_threshold = flush_threshold
        # Every process writing the log holds the same keys in `recent`, so with one threshold
        # they would all start flushing them together. Each draws its own, up to 1.5 times
        # the setting: the lowest flushes, the others find it done.
        self._flush_at = flush_threshold + random.randrange(flush_threshold // 2 + 1)
        self._next_slice = 0.0
        self._lock = threading.Lock()
        self._recent: set[str] = set()
        self._seen_seq = 0
        self._flushed_seq = 0
        self._stale = True
        self._filter = _KeyFilter(0)
        self._filter_generation: int | None = None  # None: the filter must be rebuilt
        self._slicing: _Slicing | None = None  # a flush under way (see _flush_slice)
        db.migrate("events", _MIGRATIONS)

    # -- writing -------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult(0, 0, self.last_seq())
        keys = [e.source_id + _SEP + e.message_id for e in events]
        with self._lock:
            with self._transaction() as conn:
                meta = self._prepare(conn)
                fresh = self._fresh(conn, keys, meta)
                base = self._seen_seq
                if fresh is None:
                    # Inlined: a call per event costs several % of the whole append.
                    rows = [
                        (
                            e.source_id,
                            e.message_id,
                            e.type,
                            e.name,
                            e.user_id,
                            e.anonymous_id,
                            e.timestamp,
                            e.received_at,
                            e.body,
                        )
                        for e in events
                    ]
                    self._recent.update(keys)
                else:
                    rows = [_fields(events[i]) for i in fresh]
                    self._recent.update([keys[i] for i in fresh])
                if rows:
                    eventrows.insert(conn, base + 1, rows)
                self._seen_seq = base + len(rows)
            last = self._seen_seq
            slicing = self._slicing
            if (slicing is None and len(self._recent) >= self._flush_at) or (
                slicing is not None and time.monotonic() >= self._next_slice
            ):
                # The events are committed: a failed flush must not report them as not stored.
                # Its keys stay in the log's tail and a later append (or start) flushes them.
                with suppress(StoreError):
                    self._flush_slice()
        return AppendResult(len(rows), len(events) - len(rows), last)

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        # In a write transaction, as an append would be: it brings ``recent`` and the filter up
        # to date with what other processes appended. Rare (a dispatcher recovering after a
        # crash asks), so it need not be cheap.
        unique = list(set(keys))
        if not unique:
            return set()
        joined = [source_id + _SEP + message_id for source_id, message_id in unique]
        with self._lock, self._transaction() as conn:
            fresh = self._fresh(conn, joined, self._prepare(conn))
        if fresh is None:
            return set()
        new = set(fresh)
        return {key for index, key in enumerate(unique) if index not in new}

    def close(self) -> None:
        """Write the in-memory dedupe keys to the database. Does not close ``db``.

        Not needed for correctness (they are rebuilt from the log on the next start), only so the
        next start has less to read.
        """
        with self._lock:
            if self._recent:
                self._flush()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``db.write()``, translating driver errors; a failure marks in-process state stale.

        ``recent`` and the seqs are changed inside the transaction; if it rolls back they may no
        longer match the database, so they are rebuilt from it on the next write.
        """
        try:
            with self._db.write() as conn:
                yield conn
        except sqlite3.Error as exc:
            self._stale = True
            raise StoreError(f"event log write failed on {self._db.path}: {exc}") from exc
        except BaseException:
            self._stale = True
            raise

    def _prepare(self, conn: sqlite3.Connection) -> _Meta:
        """Bring ``recent`` and the filter up to date, rotating generations when due."""
        now = self._clock.now_ms()
        stored = _Meta(*conn.execute(_GET_META).fetchone())
        if self._stale:
            self._filter_generation = None
            self._reload(conn, stored.flushed_seq)
        elif stored.flushed_seq != self._flushed_seq:
            # Another process flushed: those keys are in the tables now, so the filter must know.
            # `recent`, brought up to the end of the log, holds them (and later ones, which the
            # filter may as well hold): cheaper than decoding them again.
            self._seen_seq, tail = eventrows.keys_after(conn, self._seen_seq)
            self._recent.update(tail)
            self._filter.add(self._recent)
            self._reload(conn, stored.flushed_seq)
        else:
            self._seen_seq, tail = eventrows.keys_after(conn, self._seen_seq)
            self._recent.update(tail)
        meta, started = stored, stored.started
        if started is None:
            meta = stored._replace(started=now)
        elif now >= started + 2 * self._window:
            # Every key in both tables and in `recent` was appended over a window ago: any later
            # write would have rotated already. +2: the same table stays current, and the new
            # number tells other processes to rebuild their filters.
            conn.execute("DELETE FROM event_dedupe_0")
            conn.execute("DELETE FROM event_dedupe_1")
            meta = self._flushed(
                stored._replace(generation=stored.generation + 2, started=now, keys_0=0, keys_1=0)
            )
        elif now >= started + self._window:
            meta = self._flush_tail(conn, stored)
            emptied = meta.generation + 1
            conn.execute(f"DELETE FROM {_table(emptied)}")
            meta = meta._replace(generation=emptied, started=started + self._window)
            meta = meta.with_count(emptied % 2, 0)
        if meta != stored:
            conn.execute(_SET_META, meta)
        if self._filter_generation != meta.generation:
            self._rebuild_filter(conn, meta)
        return meta

    def _rebuild_filter(self, conn: sqlite3.Connection, meta: _Meta) -> None:
        """A filter of exactly the keys in the tables: after a start or a rotation."""
        counts = meta.counts()
        self._filter = _KeyFilter(max(2 * sum(counts), 4 * self._flush_threshold))
        for table, count in enumerate(counts):
            if count:
                self._filter.add(
                    [key for (key,) in conn.execute(f"SELECT key FROM {_table(table)}")]
                )
        self._filter_generation = meta.generation

    def _reload(self, conn: sqlite3.Connection, flushed: int) -> None:
        self._seen_seq, tail = eventrows.keys_after(conn, flushed)
        self._recent = set(tail)
        self._flushed_seq = flushed
        self._stale = False

    def _fresh(self, conn: sqlite3.Connection, keys: list[str], meta: _Meta) -> list[int] | None:
        """Indexes of the events to store, or None when all of them are new (the common case)."""
        recent = self._recent
        unique = set(keys)
        if len(unique) == len(keys) and recent.isdisjoint(unique):
            stored = self._stored(conn, keys, meta)
            if not stored:
                return None
        else:
            stored = self._stored(conn, [key for key in unique if key not in recent], meta)
        fresh: list[int] = []
        for index, key in enumerate(keys):
            if key in stored or key in recent:
                continue
            stored.add(key)
            fresh.append(index)
        return fresh

    def _stored(self, conn: sqlite3.Connection, keys: list[str], meta: _Meta) -> set[str]:
        """Which of ``keys`` are in a generation table; asks only for those the filter may hold."""
        tables = tuple(t for t, count in enumerate(meta.counts()) if count)
        found: set[str] = set()
        if tables:
            keys = self._filter.maybe(keys)
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                found.update(
                    [row[0] for row in conn.execute(_probe_sql(len(chunk), tables), chunk)]
                )
        return found

    def _flush_slice(self) -> None:
        """One slice of a flush: the next :data:`FLUSH_SLICE` keys of the sorted snapshot of
        ``recent`` taken when it began, in a transaction of their own; the last slice moves
        ``flushed_seq`` up to the snapshot and drops its keys from ``recent``.

        Until then every key of the snapshot is still in ``recent``, so deduplication never
        depends on a slice. Slices of one sorted snapshot write each leaf page of the table
        about once, as one big insert would. A flush is dropped, and done again later from a
        new snapshot, when a transaction fails or the tables rotated; it is over when another
        process's flush covered the snapshot. Each slice's rows are counted in the meta row as
        they are written, so the counts stay exact whoever finishes.
        """
        slicing = self._slicing
        try:
            with self._transaction() as conn:
                meta = self._prepare(conn)
                if slicing is None:
                    if len(self._recent) < self._flush_at:
                        return
                    slicing = _Slicing(self._seen_seq, sorted(self._recent), meta.generation)
                if meta.flushed_seq >= slicing.upto or meta.generation != slicing.generation:
                    self._slicing = None
                    return
                table = meta.generation % 2
                end = slicing.done + FLUSH_SLICE
                chunk = slicing.keys[slicing.done : end]
                added = self._insert_keys(conn, chunk, table)
                meta = meta.with_count(table, meta.counts()[table] + added)
                last = end >= len(slicing.keys)
                if last:
                    meta = meta._replace(flushed_seq=slicing.upto)
                conn.execute(_SET_META, meta)
        except BaseException:
            self._slicing = None
            raise
        self._filter.add(chunk)
        self._next_slice = time.monotonic() + FLUSH_PAUSE_S
        if last:
            self._recent.difference_update(slicing.keys)
            self._flushed_seq = slicing.upto
            self._slicing = None
        else:
            slicing.done = end
            self._slicing = slicing

    def _flush(self) -> None:
        self._slicing = None  # all of `recent`, at once
        with self._transaction() as conn:
            meta = self._prepare(conn)
            if self._recent:
                conn.execute(_SET_META, self._flush_tail(conn, meta))

    def _flush_tail(self, conn: sqlite3.Connection, meta: _Meta) -> _Meta:
        """Insert the keys past ``flushed_seq`` into the current generation; the new meta row."""
        table = meta.generation % 2
        # Sorted, so the B-tree is filled in order and each leaf page is written once.
        added = self._insert_keys(conn, sorted(self._recent), table)
        self._filter.add(self._recent)
        return self._flushed(meta.with_count(table, meta.counts()[table] + added))

    @staticmethod
    def _insert_keys(conn: sqlite3.Connection, keys: list[str], table: int) -> int:
        """Insert ``keys`` (sorted) into a generation table; how many were not there yet."""
        added = 0
        # Multi-row VALUES, not executemany, which hands the GIL over around every row.
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            added += conn.execute(_flush_sql(len(chunk), table), chunk).rowcount
        return added

    def _flushed(self, meta: _Meta) -> _Meta:
        """``meta`` once every event up to ``_seen_seq`` is in a generation table, or expired."""
        self._recent = set()
        self._flushed_seq = self._seen_seq
        return meta._replace(flushed_seq=self._seen_seq)

    # -- reading -------------------------------------------------------------------------------

    def read(self, after_seq: int, limit: int) -> list[Event]:
        if limit <= 0:
            return []
        found: list[Event] = []
        with self._db.read() as conn:
            for seq, fields in eventrows.events_after(conn, after_seq):
                found.append(eventrows.to_event(seq, fields))
                if len(found) == limit:
                    break
        return found

    def get(self, seqs: Collection[int]) -> list[Event]:
        found: list[Event] = []
        first, segment = 0, list[eventrows.Fields]()
        with self._db.read() as conn:
            for seq in sorted(set(seqs)):
                if not first <= seq < first + len(segment):
                    row = conn.execute(eventrows.SEGMENT_OF, (seq,)).fetchone()
                    if row is None or row[1] < seq:
                        continue
                    first, segment = row[0], eventrows.decode(row[2])
                found.append(eventrows.to_event(seq, segment[seq - first]))
        return found

    def last_seq(self) -> int:
        with self._db.read() as conn:
            row: tuple[int] | None = conn.execute(eventrows.LAST_SEQ).fetchone()
        return row[0] if row else 0

    def count(self) -> int:
        with self._db.read() as conn:
            value: int = conn.execute(eventrows.COUNT).fetchone()[0]
        return value


@dataclass
class _Slicing:
    """A flush under way: the sorted keys of ``recent`` when it began, the seq they reach, the
    generation they go into, and how many are written."""

    upto: int
    keys: list[str]
    generation: int
    done: int = 0


class _KeyFilter:
    """A Bloom filter over the keys in the generation tables: "no" is certain, "maybe" is not.

    Looking a key up in a table costs ~1.5 µs while the tables fit in the page cache and several
    times that once they do not (two windows of keys); this answers "no" for nearly every new
    key at ~0.3 µs. Positions come from Python's string hash: cached on the string, randomized
    per process, which is fine for a filter that never leaves the process. Two positions and 16
    bits per key give ~1.4% false positives per layer.

    It grows by layers: once the last layer holds its capacity, keys go to a new one twice its
    size, and "maybe" asks every layer. Rebuilding it from the tables instead (as it was) read
    every key again in every process writing the log, holding the log's write lock: at 10,000
    keys/s that stalled ingestion and the dispatcher's receipts for 0.1-0.3 s at 100k keys, and
    longer at each doubling after.
    """

    def __init__(self, capacity: int) -> None:
        self._layers = [_Layer(capacity)]

    def layers(self) -> int:
        return len(self._layers)

    def add(self, keys: Collection[str]) -> None:
        last = self._layers[-1]
        if last.count + len(keys) > last.capacity:
            last = _Layer(max(2 * last.capacity, len(keys)))
            self._layers.append(last)
        last.add(keys)

    def maybe(self, keys: list[str]) -> list[str]:
        """The keys that may have been added."""
        if len(self._layers) == 1:
            return self._layers[0].maybe(keys)
        hits: set[str] = set()
        for layer in self._layers:
            hits.update(layer.maybe(keys))
        return [key for key in keys if key in hits]


class _Layer:
    """One Bloom filter of a fixed size."""

    def __init__(self, capacity: int) -> None:
        size = 1 << max(16, (16 * capacity - 1).bit_length())  # bits, a power of two
        self.capacity = size // 16
        self.count = 0
        self._mask = size - 1
        self._bits = bytearray(size // 8)

    def add(self, keys: Collection[str]) -> None:
        bits, mask = self._bits, self._mask
        if len(keys) >= _VECTOR_ADD:
            # The same bits, set by NumPy: 0.02 s instead of 0.09 for 200k keys, which a
            # process adds at once when another one flushed.
            hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
            view = np.frombuffer(bits, dtype=np.uint8)
            for position in (hashes & mask, (hashes >> 32) & mask):
                np.bitwise_or.at(view, position >> 3, (1 << (position & 7)).astype(np.uint8))
        else:
            for key in keys:
                h = hash(key)
                a, b = h & mask, (h >> 32) & mask
                bits[a >> 3] |= 1 << (a & 7)
                bits[b >> 3] |= 1 << (b & 7)
        self.count += len(keys)

    def maybe(self, keys: list[str]) -> list[str]:
        bits, mask = self._bits, self._mask
        found = []
        for key in keys:
            h = hash(key)
            a, b = h & mask, (h >> 32) & mask
            if bits[a >> 3] & (1 << (a & 7)) and bits[b >> 3] & (1 << (b & 7)):
                found.append(key)
        return found


def _table(generation: int) -> str:
    return f"event_dedupe_{generation % 2}"


@lru_cache(maxsize=8)
def _flush_sql(n: int, table: int) -> str:
    return f"INSERT OR IGNORE INTO event_dedupe_{table}(key) VALUES " + ", ".join(["(?)"] * n)


@lru_cache(maxsize=256)
def _probe_sql(n: int, tables: tuple[int, ...]) -> str:
    # ?1…?n, so both tables are asked with one binding of the keys.
    marks = ", ".join(f"?{i}" for i in range(1, n + 1))
    return " UNION ALL ".join(
        f"SELECT key FROM event_dedupe_{t} WHERE key IN ({marks})" for t in tables
    )


def _fields(e: Event) -> eventrows.Fields:
    return (
        e.source_id,
        e.message_id,
        e.type,
        e.name,
        e.user_id,
        e.anonymous_id,
        e.timestamp,
        e.received_at,
        e.body,
    )
