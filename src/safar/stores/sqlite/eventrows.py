"""How the SQLite event log lays events out: one row ("segment") per append, not per event.

A segment is ``event_segments(first_seq INTEGER PRIMARY KEY, last_seq, data BLOB)``; ``data`` is a
MessagePack array of per-event arrays (:data:`Fields`), and the event at index ``i`` has seq
``first_seq + i``. SQLite's per-row work (B-tree insert, record building, WAL frame bookkeeping)
then happens once per append instead of once per event. Appends larger than
:data:`SEGMENT_EVENTS` are split, so reading one event never decodes more than that many.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import msgspec

from safar.model.events import Event

#: Events per segment at most: bounds what a read of a single event decodes.
SEGMENT_EVENTS = 1_000

Fields = tuple[str, str, str, str | None, str | None, str | None, int, int, bytes]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Fields]).decode

#: Segments holding seqs after ``?1``: the one containing ``?1 + 1`` (if any), then later ones.
#: The inner LIMIT 1 must come before the ``last_seq`` test, or the seek becomes a scan.
SEGMENTS_AFTER = (
    "SELECT first_seq, data FROM event_segments WHERE first_seq >= coalesce("
    "(SELECT first_seq FROM (SELECT first_seq, last_seq FROM event_segments"
    " WHERE first_seq <= ?1 + 1 ORDER BY first_seq DESC LIMIT 1) WHERE last_seq > ?1),"
    " ?1 + 1) ORDER BY first_seq"
)
SEGMENT_OF = (
    "SELECT first_seq, last_seq, data FROM event_segments WHERE first_seq <= ?"
    " ORDER BY first_seq DESC LIMIT 1"
)
INSERT_SEGMENT = "INSERT INTO event_segments(first_seq, last_seq, data) VALUES (?, ?, ?)"
LAST_SEQ = "SELECT last_seq FROM event_segments ORDER BY first_seq DESC LIMIT 1"
COUNT = "SELECT coalesce(sum(last_seq - first_seq + 1), 0) FROM event_segments"


def insert(conn: sqlite3.Connection, first_seq: int, fields: Sequence[Fields]) -> None:
    """Store ``fields`` as the events ``first_seq``, ``first_seq + 1`` …, in segments."""
    for start in range(0, len(fields), SEGMENT_EVENTS):
        chunk = fields[start : start + SEGMENT_EVENTS]
        first = first_seq + start
        conn.execute(INSERT_SEGMENT, (first, first + len(chunk) - 1, _encode(chunk)))


def keys_after(
    conn: sqlite3.Connection, after_seq: int, up_to: int | None = None
) -> tuple[int, list[str]]:
    """The last seq read and the dedupe keys (``source_id + "\\x1f" + message_id``) of the events
    after ``after_seq`` (only up to ``up_to`` when given), ascending by seq.
    """
    last, keys = after_seq, []
    for seq, fields in events_after(conn, after_seq):
        if up_to is not None and seq > up_to:
            break
        keys.append(fields[0] + "\x1f" + fields[1])
        last = seq
    return last, keys


def events_after(conn: sqlite3.Connection, after_seq: int) -> Iterator[tuple[int, Fields]]:
    """``(seq, fields)`` of every event after ``after_seq``, ascending, decoded lazily."""
    for first, data in conn.execute(SEGMENTS_AFTER, (after_seq,)):
        for seq, fields in enumerate(_decode(data), first):
            if seq > after_seq:
                yield seq, fields


def to_event(seq: int, fields: Fields) -> Event:
    source_id, message_id, type_, name, user_id, anonymous_id, timestamp, received_at, body = fields
    return Event(
        seq=seq,
        source_id=source_id,
        message_id=message_id,
        type=type_,
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        received_at=received_at,
        body=body,
    )


def move_rows_to_segments(conn: sqlite3.Connection) -> None:
    """Migration: create ``event_segments``, move every ``events`` row into it, drop ``events``.

    Runs of consecutive seqs become segments of up to :data:`SEGMENT_EVENTS` events; a gap in the
    seqs (never written by Safar, but cheap to honour) starts a new segment.
    """
    conn.execute(
        "CREATE TABLE event_segments("
        " first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, data BLOB NOT NULL)"
    )
    rows = conn.execute(
        "SELECT seq, source_id, message_id, type, name, user_id, anonymous_id, timestamp,"
        " received_at, body FROM events ORDER BY seq"
    )
    for first, fields in _runs((row[0], tuple(row[1:])) for row in rows):
        insert(conn, first, fields)
    conn.execute("DROP TABLE events")


def _runs(rows: Iterable[tuple[int, tuple[object, ...]]]) -> Iterator[tuple[int, list[Fields]]]:
    first, last = 0, 0
    run: list[Fields] = []
    for seq, fields in rows:
        if run and (seq != last + 1 or len(run) == SEGMENT_EVENTS):
            yield first, run
            run = []
        if not run:
            first = seq
        run.append(fields)  # type: ignore[arg-type]  # the column types are Fields'
        last = seq
    if run:
        yield first, run


def decode(data: bytes) -> list[Fields]:
    """A segment's events, by index: the event at index ``i`` has seq ``first_seq + i``."""
    return _decode(data)
