"""PostgreSQL :class:`safar.ports.EventLog` (migration component ``events``): the hot path of
ingestion, shared by every API process of an installation.

Tables, and why they are laid out so:

- ``events(seq BIGINT PRIMARY KEY, source_id, message_id, event BYTEA)``: one row per event, the
  event encoded whole as MessagePack of :class:`~safar.model.events.Event` (as the audience store
  keeps its pending events), so a read decodes one value per row and the log never has to learn
  new columns. ``source_id`` and ``message_id`` are copies, for people looking an event up by
  hand; they are not indexed, so each appended row costs one insert into the sequential ``seq``
  index only.
- ``event_head``: one row holding the last seq assigned and how many events the log holds, so
  :meth:`~PgEventLog.last_seq` and :meth:`~PgEventLog.count` read one row instead of the table.
  Locking it serializes appends (below).
- ``event_dedupe(source_id, message_id, seen_at)``: the dedupe key of every event stored within
  the window, with when it was stored. Keys are claimed by one upsert that inserts a new key, or
  takes over one older than the window, and returns exactly the keys it claimed: those events
  are stored, the rest are duplicates. The index on ``seen_at`` grows at its right edge only
  (the clock moves forward), and lets expired keys be deleted without scanning the table.

An append is one READ COMMITTED transaction: drop repeats within the call, claim the keys (in
sorted order, so concurrent appenders lock shared keys in the same order and never deadlock),
encode the fresh events, then take the head row lock by moving the head forward by their number,
insert them with the seqs just below the new head, and commit. The head lock is taken last and
held until the commit, so appends commit in seq order: a reader that has read up to seq N never
later finds a committed event at or below N. Another appender claiming one of the same keys
waits for this one's commit and then finds the key taken (or, after a rollback, free).

Expired keys are deleted now and then (every quarter window per process), after an append and
in their own short transactions; rows another transaction holds are skipped, never waited for.
Nothing is kept in the process, so restarts and other writers need no special handling.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from contextlib import suppress
from typing import Any

import msgspec
import psycopg

from safar.errors import StoreError
from safar.model.events import AppendResult, Event
from safar.ports import Clock
from safar.stores.postgres.db import PgDatabase

_MIGRATIONS = [
    """
    CREATE TABLE events(
        seq BIGINT PRIMARY KEY,
        source_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        event BYTEA NOT NULL
    );
    CREATE TABLE event_head(
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        last_seq BIGINT NOT NULL,
        event_count BIGINT NOT NULL
    );
    INSERT INTO event_head(id, last_seq, event_count) VALUES (1, 0, 0);
    CREATE TABLE event_dedupe(
        source_id TEXT COLLATE "C" NOT NULL,
        message_id TEXT COLLATE "C" NOT NULL,
        seen_at BIGINT NOT NULL,
        PRIMARY KEY (source_id, message_id)
    );
    CREATE INDEX event_dedupe_seen_at ON event_dedupe(seen_at);
    """,
]

#: Claims every key that is new or older than the window (stamping it ``now``) and returns the
#: keys claimed. A key stored within the window is left as it is: a repeat does not extend it.
_CLAIM_KEYS = (
    "INSERT INTO event_dedupe AS d(source_id, message_id, seen_at)"
    " SELECT source_id, message_id, %(now)s"
    " FROM unnest(%(sources)s::text[], %(messages)s::text[]) AS k(source_id, message_id)"
    " ON CONFLICT (source_id, message_id) DO UPDATE SET seen_at = excluded.seen_at"
    " WHERE d.seen_at <= %(expired)s"
    " RETURNING source_id, message_id"
)
#: Takes the head row lock (held until commit) and hands back the new last seq.
_ADVANCE_HEAD = (
    "UPDATE event_head SET last_seq = last_seq + %(n)s, event_count = event_count + %(n)s"
    " WHERE id = 1 RETURNING last_seq"
)
_LAST_SEQ = "SELECT last_seq FROM event_head WHERE id = 1"
_COUNT = "SELECT event_count FROM event_head WHERE id = 1"
# Binary parameters (%b): the encoded events travel as they are, not hex-escaped.
_INSERT_EVENTS = (
    "INSERT INTO events(seq, source_id, message_id, event)"
    " SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bytea[])"
)
#: For :meth:`PgEventLog.import_history`: the head moves past copied seqs, which need not follow
#: on from it.
_IMPORT_HEAD = (
    "UPDATE event_head SET last_seq = greatest(last_seq, %(last)s),"
    " event_count = event_count + %(n)s WHERE id = 1"
)
#: For :meth:`PgEventLog.import_history`: remembers keys as of when they were received, keeping
#: the latest time of a key received more than once.
_REMEMBER_KEYS = (
    "INSERT INTO event_dedupe AS d(source_id, message_id, seen_at)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
    " ON CONFLICT (source_id, message_id) DO UPDATE"
    " SET seen_at = greatest(d.seen_at, excluded.seen_at)"
)
#: The keys among those given that were stored after ``expired``: an append would skip them.
_SEEN_KEYS = (
    "SELECT d.source_id, d.message_id FROM event_dedupe AS d"
    " JOIN unnest(%(sources)s::text[], %(messages)s::text[]) AS k(source_id, message_id)"
    " USING (source_id, message_id) WHERE d.seen_at > %(expired)s"
)
_READ = "SELECT seq, event FROM events WHERE seq > %s ORDER BY seq LIMIT %s"
_GET = "SELECT seq, event FROM events WHERE seq = ANY(%s::bigint[]) ORDER BY seq"
# SKIP LOCKED: a key an appender is claiming again is left for the next purge, so a purge never
# waits for (or deadlocks with) an append.
_PURGE_EXPIRED = (
    "DELETE FROM event_dedupe WHERE (source_id, message_id) IN ("
    " SELECT source_id, message_id FROM event_dedupe WHERE seen_at <= %s"
    " ORDER BY seen_at LIMIT %s FOR UPDATE SKIP LOCKED)"
)

#: Expired keys deleted per purge transaction, so no purge holds many row locks for long.
_PURGE_BATCH = 10_000
#: Purges per dedupe window, per process: expired keys linger at most this fraction of a window.
_PURGES_PER_WINDOW = 4

_encode_event = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode

#: ``(source_id, message_id)``: what identifies an event for deduplication.
_Key = tuple[str, str]


class PgEventLog:
    """The event log in the shared PostgreSQL database; see the module docstring."""

    def __init__(self, db: PgDatabase, clock: Clock, *, dedupe_window_ms: int) -> None:
        if dedupe_window_ms <= 0:
            raise ValueError("dedupe_window_ms must be positive")
        self._db = db
        self._clock = clock
        self._window = dedupe_window_ms
        self._purge_every = max(1, dedupe_window_ms // _PURGES_PER_WINDOW)
        self._purge_lock = threading.Lock()
        self._next_purge = 0  # the first append purges what expired while no process ran
        db.migrate("events", _MIGRATIONS)

    # -- writing -------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> AppendResult:
        if not events:
            return AppendResult(0, 0, self.last_seq())
        now = self._clock.now_ms()
        firsts = _first_occurrences(events)
        with self._db.write() as conn:
            claimed = _claim(conn, sorted(firsts), now, now - self._window)
            fresh = [event for key, event in firsts.items() if key in claimed]
            encoded = [_encode_event(event) for event in fresh]  # before the head lock
            last_seq = _store(conn, fresh, encoded)
        self._purge_if_due(now)
        return AppendResult(len(fresh), len(events) - len(fresh), last_seq)

    def close(self) -> None:
        """Nothing to write back: every key is in the database once its append commits. Does
        not close ``db``."""

    def _purge_if_due(self, now: int) -> None:
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + self._purge_every
        # The events are committed: a failed purge must not report them as not stored. The
        # keys it left are deleted by a later purge, and expired keys are claimable meanwhile.
        with suppress(StoreError):
            self._purge_expired(now - self._window)

    def _purge_expired(self, expired: int) -> None:
        while True:
            with self._db.write() as conn:
                deleted = conn.execute(_PURGE_EXPIRED, (expired, _PURGE_BATCH)).rowcount
            if deleted < _PURGE_BATCH:
                return

    # -- moving an installation here (safar.stores.migrate) ------------------------------------

    @staticmethod
    def import_history(
        conn: psycopg.Connection, events: Sequence[Event], *, dedupe_since: int
    ) -> None:
        """Store ``events`` with their own seqs (a page of another log, ascending), in the
        caller's transaction, and remember the dedupe keys of those received at or after
        ``dedupe_since``, as of when they were received: a client retrying a batch it sent
        before the move is still recognised."""
        if not events:
            return
        encoded = [_encode_event(event) for event in events]
        _insert(conn, [event.seq for event in events], events, encoded)
        conn.execute(_IMPORT_HEAD, {"last": events[-1].seq, "n": len(events)})
        received = _latest_receipts(event for event in events if event.received_at >= dedupe_since)
        if received:
            conn.execute(_REMEMBER_KEYS, (*_key_columns(received), list(received.values())))

    @staticmethod
    def read_in(conn: psycopg.Connection, after_seq: int, limit: int) -> list[Event]:
        """:meth:`read` in the caller's transaction: the migration verifies what it imported
        before committing."""
        if limit <= 0:
            return []
        return _decode_rows(conn.execute(_READ, (after_seq, limit), binary=True).fetchall())

    # -- reading -------------------------------------------------------------------------------

    def read(self, after_seq: int, limit: int) -> list[Event]:
        with self._db.read() as conn:
            return self.read_in(conn, after_seq, limit)

    def get(self, seqs: Collection[int]) -> list[Event]:
        if not seqs:
            return []
        with self._db.read() as conn:
            rows = conn.execute(_GET, (list(seqs),), binary=True).fetchall()
        return _decode_rows(rows)

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        sources, messages = _key_columns(set(keys))
        params = {
            "sources": sources,
            "messages": messages,
            "expired": self._clock.now_ms() - self._window,
        }
        with self._db.read() as conn:
            return {(source, message) for source, message in conn.execute(_SEEN_KEYS, params)}

    def last_seq(self) -> int:
        return self._head_value(_LAST_SEQ)

    def count(self) -> int:
        return self._head_value(_COUNT)

    def _head_value(self, query: str) -> int:
        with self._db.read() as conn:
            return _head_int(conn.execute(query).fetchone())


def _first_occurrences(events: Sequence[Event]) -> dict[_Key, Event]:
    """The first event of each dedupe key, in the order of the call (later repeats are
    duplicates, and one upsert cannot claim a key twice)."""
    firsts: dict[_Key, Event] = {}
    for event in events:
        firsts.setdefault((event.source_id, event.message_id), event)
    return firsts


def _claim(conn: psycopg.Connection, keys: list[_Key], now: int, expired: int) -> set[_Key]:
    """Claim ``keys`` (sorted: concurrent claimers then lock shared keys in one order) for
    events stored at ``now``; the keys that were new or last stored at or before ``expired``."""
    sources, messages = _key_columns(keys)
    params = {"sources": sources, "messages": messages, "now": now, "expired": expired}
    return {(source_id, message_id) for source_id, message_id in conn.execute(_CLAIM_KEYS, params)}


def _key_columns(keys: Iterable[_Key]) -> tuple[list[str], list[str]]:
    """The source ids and the message ids of ``keys``, as two arrays for ``unnest``."""
    sources: list[str] = []
    messages: list[str] = []
    for source_id, message_id in keys:
        sources.append(source_id)
        messages.append(message_id)
    return sources, messages


def _store(conn: psycopg.Connection, events: list[Event], encoded: list[bytes]) -> int:
    """Insert ``events`` (with their encodings) after the head, moving it; the new last seq.

    Moving the head locks its row until the commit, so appends commit in seq order. With no
    events the head is only read, and concurrent appends are not held up.
    """
    if not events:
        return _head_int(conn.execute(_LAST_SEQ).fetchone())
    last_seq = _head_int(conn.execute(_ADVANCE_HEAD, {"n": len(events)}).fetchone())
    _insert(conn, range(last_seq - len(events) + 1, last_seq + 1), events, encoded)
    return last_seq


def _insert(
    conn: psycopg.Connection, seqs: Sequence[int], events: Sequence[Event], encoded: list[bytes]
) -> None:
    """One INSERT of ``events`` (``encoded`` are their encodings) at ``seqs``."""
    columns = (
        list(seqs),
        [event.source_id for event in events],
        [event.message_id for event in events],
        encoded,
    )
    conn.execute(_INSERT_EVENTS, columns)


def _latest_receipts(events: Iterable[Event]) -> dict[_Key, int]:
    """The latest ``received_at`` of each dedupe key among ``events``."""
    latest: dict[_Key, int] = {}
    for event in events:
        key = (event.source_id, event.message_id)
        latest[key] = max(event.received_at, latest.get(key, event.received_at))
    return latest


def _head_int(row: tuple[Any, ...] | None) -> int:
    """The value read from the ``event_head`` row, which the migration created."""
    if row is None:
        raise StoreError("the event_head row is missing: the events schema is damaged")
    return int(row[0])


def _decode_rows(rows: list[tuple[Any, ...]]) -> list[Event]:
    """Events from ``(seq, event)`` rows; the stored event's own ``seq`` is whatever the caller
    passed to append, so the column's is put in its place."""
    return [msgspec.structs.replace(_decode_event(data), seq=seq) for seq, data in rows]
