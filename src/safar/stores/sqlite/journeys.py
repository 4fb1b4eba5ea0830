"""SQLite journey state (migration component ``journeys``) and :class:`safar.ports.JourneyStore`.

This module owns the schema of every journey table; the other ports over them live beside it:
:mod:`~safar.stores.sqlite.runs` (instances, timers, entry records, visits, the cursors),
:mod:`~safar.stores.sqlite.outbox` and :mod:`~safar.stores.sqlite.delivery`. ADR 8 explains the
layout. Whole structs are stored as JSON: everything customers send arrives as JSON, so JSON can
hold any value a journey context picks up (MessagePack refuses integers past 64 bits).

Instances and outbox entries are rowid tables with their text key as a unique index: rows written
together sit together, and the timer and due indexes carry the rowid, so a claim updates its rows
without another key lookup.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import msgspec

from safar.errors import StoreError
from safar.model.journeys import JourneyVersion
from safar.stores.sqlite.db import Database, Migration

_MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE journey_versions(
        journey_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (journey_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE journey_instances(
        id TEXT PRIMARY KEY NOT NULL,
        journey_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        profile_id TEXT NOT NULL,
        status TEXT NOT NULL,
        entered_at INTEGER NOT NULL,
        wake_at INTEGER,
        lease_owner TEXT,
        lease_until INTEGER,
        data BLOB NOT NULL
    );
    CREATE INDEX journey_instances_profile ON journey_instances(profile_id, status);
    CREATE INDEX journey_timers ON journey_instances(wake_at, lease_until)
        WHERE status = 'active' AND wake_at IS NOT NULL;
    CREATE TABLE journey_entries(
        profile_id TEXT NOT NULL,
        journey_id TEXT NOT NULL,
        entries INTEGER NOT NULL,
        active INTEGER NOT NULL,
        last_entered_at INTEGER,
        last_exited_at INTEGER,
        PRIMARY KEY (profile_id, journey_id)
    ) WITHOUT ROWID;
    CREATE TABLE journey_visits(
        instance_id TEXT NOT NULL,
        journey_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        step TEXT NOT NULL,
        at INTEGER NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX journey_visits_instance ON journey_visits(instance_id);
    CREATE TABLE journey_progress(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        processed_seq INTEGER NOT NULL
    );
    INSERT INTO journey_progress(id, processed_seq) VALUES (1, 0);
    CREATE TABLE journey_outbox(
        key TEXT PRIMARY KEY NOT NULL,
        status TEXT NOT NULL,
        due INTEGER NOT NULL,
        lease_owner TEXT,
        lease_until INTEGER,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        profile_id TEXT NOT NULL,
        dead_seq INTEGER,
        command BLOB
    );
    CREATE INDEX journey_outbox_due ON journey_outbox(due, lease_until)
        WHERE status = 'pending';
    CREATE INDEX journey_outbox_dead ON journey_outbox(dead_seq) WHERE status = 'dead';
    CREATE TABLE journey_decisions(
        profile_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX journey_decisions_profile ON journey_decisions(profile_id, at);
    CREATE TABLE journey_sends(
        message_key TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        journey_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        category TEXT NOT NULL,
        priority INTEGER NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX journey_sends_profile ON journey_sends(profile_id, at);
    CREATE TABLE journey_consents(
        profile_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        category TEXT NOT NULL,
        subscribed INTEGER NOT NULL,
        at INTEGER NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (profile_id, channel, category)
    ) WITHOUT ROWID;
    CREATE TABLE journey_inbox(
        id TEXT PRIMARY KEY NOT NULL,
        profile_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        read_at INTEGER,
        dismissed_at INTEGER,
        data BLOB NOT NULL
    );
    CREATE INDEX journey_inbox_profile ON journey_inbox(profile_id, created_at)
    """,
    """
    CREATE TABLE journey_schedules(
        journey_id TEXT PRIMARY KEY NOT NULL,
        tick INTEGER NOT NULL
    )
    """,
    # Work-feed partitions (ADR 12). Adding a column with a constant default rewrites no rows:
    # existing instances are filed under partition 0. The partition timer index leaves out
    # partition 0, where every instance of an installation without a feed is filed, so those
    # writes maintain one timer index as before (see safar.stores.sqlite.runs).
    """
    ALTER TABLE journey_instances ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX journey_partition_timers ON journey_instances(partition, wake_at, lease_until)
        WHERE status = 'active' AND wake_at IS NOT NULL AND partition <> 0;
    CREATE TABLE journey_partitions(
        partition INTEGER PRIMARY KEY,
        processed_seq INTEGER NOT NULL
    )
    """,
]

#: Values bound per ``IN (…)``: far below SQLite's limit, and one cached statement per size.
CHUNK = 500

encode = msgspec.json.Encoder().encode
_decode_version = msgspec.json.Decoder(JourneyVersion).decode

T = TypeVar("T")


def migrate(db: Database) -> None:
    """Create or upgrade the journey tables (every journey adapter calls it; it is idempotent)."""
    db.migrate("journeys", _MIGRATIONS)


@contextmanager
def transaction(db: Database, what: str) -> Iterator[sqlite3.Connection]:
    """``db.write()`` with driver errors raised inside it translated into StoreError."""
    try:
        with db.write() as conn:
            yield conn
    except sqlite3.Error as exc:
        raise StoreError(f"{what} failed on {db.path}: {exc}") from exc


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def cursor(conn: sqlite3.Connection, processor: str, partition: int | None) -> int:
    """A processor's cursor (``processor`` names its tables ``<processor>_progress`` and
    ``<processor>_partitions``): the one without a partition (None), or a work-feed
    partition's (0 until first set)."""
    if partition is None:
        row = conn.execute(f"SELECT processed_seq FROM {processor}_progress").fetchone()
    else:
        row = conn.execute(
            f"SELECT processed_seq FROM {processor}_partitions WHERE partition = ?", (partition,)
        ).fetchone()
    return 0 if row is None else int(row[0])


def marks(count: int) -> str:
    """``?, ?, …`` for an ``IN (…)`` list of ``count`` values."""
    return ", ".join("?" * count)


class SqliteJourneyStore:
    """Journey versions in the state database: one row each, the version encoded whole."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db)

    def save(self, version: JourneyVersion) -> None:
        with transaction(self._db, "saving a journey version") as conn:
            conn.execute(
                "INSERT INTO journey_versions(journey_id, version, status, data)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(journey_id, version)"
                " DO UPDATE SET status = excluded.status, data = excluded.data",
                (version.journey_id, version.version, version.status, encode(version)),
            )

    def get(self, journey_id: str, version: int | None = None) -> JourneyVersion | None:
        with self._db.read() as conn:
            if version is None:
                row = conn.execute(
                    "SELECT data FROM journey_versions WHERE journey_id = ?"
                    " ORDER BY version DESC LIMIT 1",
                    (journey_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT data FROM journey_versions WHERE journey_id = ? AND version = ?",
                    (journey_id, version),
                ).fetchone()
        return None if row is None else _decode_version(row[0])

    def versions(self, journey_id: str) -> list[JourneyVersion]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM journey_versions WHERE journey_id = ? ORDER BY version",
                (journey_id,),
            ).fetchall()
        return [_decode_version(data) for (data,) in rows]

    def all(self) -> list[JourneyVersion]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM journey_versions ORDER BY journey_id, version"
            ).fetchall()
        return [_decode_version(data) for (data,) in rows]
