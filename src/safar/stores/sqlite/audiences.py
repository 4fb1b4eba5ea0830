"""SQLite :class:`safar.ports.AudienceCatalog` and :class:`~safar.ports.AudienceStore`, migration
component ``audiences`` in the state database (beside the journey tables).

Tables:

- ``audience_versions``: one row per version. The definition is stored apart from the version's
  other fields and decoded by ``kind``: ``Segment | ComputedTrait`` is an untagged union, which
  msgspec cannot decode whole.
- ``audience_progress``: one row, the processor's ``processed_seq`` (each processor keeps its
  own cursor row, as ``journey_progress`` and ``profile_progress`` do); ``audience_partitions``
  (migration 3): the cursor of each work-feed partition (ADR 12), a row from the first commit
  naming it.
- ``audience_folds``: one row per identifier, all its live folds in one blob, without rowid
  (most rows are small, and each is read and written whole by its key); ``audience_history``
  (migration 3), of the same shape, its history folds.
- ``audience_profiles``: one row per evaluated profile, the whole :class:`Membership` in
  ``data``; its timer is its ``wake_at`` under the partial index ``audience_timers(wake_at,
  lease_until)``, with leases in columns, as ADR 8 does for journey instances. ``partition``
  (migration 3) is the one the membership is filed under; ``audience_partition_timers
  (partition, wake_at, lease_until)`` leaves out partition 0 for the reason
  :mod:`safar.stores.sqlite.runs` gives for journey instances, so a claim for partition 0 reads
  ``audience_timers`` and skips other partitions' due timers.
- ``audience_members(segment_id, profile_id)`` without rowid: who is in each segment, so
  :meth:`~SqliteAudienceStore.members` pages along the key and
  :meth:`~SqliteAudienceStore.count` counts one key range. Entry times live in ``data`` only:
  a commit changes these rows only for segments entered or left, and most evaluations change
  nothing.
- ``audience_emits``: pending membership-change events, keyed by message id, in rowid
  (commit) order.
- ``audience_jobs(name, progress)``: where each background job is.
- ``audience_repairs(audience_id, requested)``: how many repairs were requested of each
  audience (migration 2); the processor reads it with the versions.

Folds and memberships are JSON, as journey state is (ADR 8): folds hold values customers sent,
and MessagePack refuses integers beyond 64 bits, which would poison a batch. Pending events are
MessagePack: their fields are Safar's own, and their body is bytes, which JSON would inflate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from safar.core.identity import by_type
from safar.errors import ValidationError, cursor_moved, job_moved
from safar.model.audiences import (
    AudienceVersion,
    ComputedTrait,
    Fold,
    Membership,
    Segment,
    Status,
)
from safar.model.events import Event
from safar.ports import AudienceUpdate
from safar.stores.sqlite.db import Database, Migration
from safar.stores.sqlite.journeys import chunks, cursor, encode, marks, transaction
from safar.stores.sqlite.leases import check_fence

_MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE audience_versions(
        audience_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        published_at INTEGER,
        definition BLOB NOT NULL,
        PRIMARY KEY (audience_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE audience_progress(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        processed_seq INTEGER NOT NULL
    );
    INSERT INTO audience_progress(id, processed_seq) VALUES (1, 0);
    CREATE TABLE audience_folds(
        identifier_type TEXT NOT NULL,
        identifier_value TEXT NOT NULL,
        folds BLOB NOT NULL,
        PRIMARY KEY (identifier_type, identifier_value)
    ) WITHOUT ROWID;
    CREATE TABLE audience_profiles(
        profile_id TEXT PRIMARY KEY NOT NULL,
        wake_at INTEGER,
        lease_owner TEXT,
        lease_until INTEGER,
        data BLOB NOT NULL
    );
    CREATE INDEX audience_timers ON audience_profiles(wake_at, lease_until)
        WHERE wake_at IS NOT NULL;
    CREATE TABLE audience_members(
        segment_id TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (segment_id, profile_id)
    ) WITHOUT ROWID;
    CREATE TABLE audience_emits(
        message_id TEXT PRIMARY KEY NOT NULL,
        event BLOB NOT NULL
    );
    CREATE TABLE audience_jobs(
        name TEXT PRIMARY KEY NOT NULL,
        progress TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE audience_repairs(
        audience_id TEXT PRIMARY KEY NOT NULL,
        requested INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    # Work-feed partitions (ADR 12) and history folds. The constant default rewrites no rows:
    # existing memberships are filed under partition 0.
    """
    ALTER TABLE audience_profiles ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX audience_partition_timers ON audience_profiles(partition, wake_at, lease_until)
        WHERE wake_at IS NOT NULL AND partition <> 0;
    CREATE TABLE audience_partitions(
        partition INTEGER PRIMARY KEY,
        processed_seq INTEGER NOT NULL
    );
    CREATE TABLE audience_history(
        identifier_type TEXT NOT NULL,
        identifier_value TEXT NOT NULL,
        folds BLOB NOT NULL,
        PRIMARY KEY (identifier_type, identifier_value)
    ) WITHOUT ROWID
    """,
]

_Kind = Literal["segment", "computed_trait"]
_DEFINITIONS: dict[_Kind, type[Segment] | type[ComputedTrait]] = {
    "segment": Segment,
    "computed_trait": ComputedTrait,
}
_DECODE_DEFINITION = {kind: msgspec.json.Decoder(cls).decode for kind, cls in _DEFINITIONS.items()}
_decode_folds = msgspec.json.Decoder(dict[str, Fold]).decode
_decode_membership = msgspec.json.Decoder(Membership).decode
_encode_event = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode

_VERSION_COLUMNS = "audience_id, version, kind, status, created_at, published_at, definition"
#: The two tables of folds, live then history: :meth:`SqliteAudienceStore.folds` merges them
#: in this order.
_FOLD_TABLES = ("audience_folds", "audience_history")
_UPSERT_FOLDS = (
    "INSERT INTO {table}(identifier_type, identifier_value, folds) VALUES (?, ?, ?)"
    " ON CONFLICT(identifier_type, identifier_value) DO UPDATE SET folds = excluded.folds"
)
_DELETE_FOLDS = "DELETE FROM {table} WHERE identifier_type = ? AND identifier_value = ?"
_UPSERT_PROFILE = (
    "INSERT INTO audience_profiles(profile_id, wake_at, data, partition) VALUES (?, ?, ?, ?)"
    " ON CONFLICT(profile_id) DO UPDATE SET wake_at = excluded.wake_at,"
    " lease_owner = NULL, lease_until = NULL, data = excluded.data,"
    " partition = excluded.partition"
)
_MOVE = "UPDATE audience_profiles SET partition = ? WHERE profile_id = ? AND partition = ?"
_SET_PARTITION_CURSOR = (
    "INSERT INTO audience_partitions(partition, processed_seq) VALUES (?, ?)"
    " ON CONFLICT(partition) DO UPDATE SET processed_seq = excluded.processed_seq"
)
_DUE = (
    "SELECT rowid, data FROM audience_profiles"
    " WHERE wake_at IS NOT NULL AND wake_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
)
_DUE_TIMERS = f"{_DUE} ORDER BY wake_at LIMIT ?"
_DUE_TIMERS_OF_ZERO = f"{_DUE} AND partition = 0 ORDER BY wake_at LIMIT ?"
# ``partition <> 0`` repeats the index's condition, which SQLite must see to use a partial index.
_DUE_TIMERS_OF = f"{_DUE} AND partition = ? AND partition <> 0 ORDER BY wake_at LIMIT ?"
_Row = tuple[str, int, _Kind, Status, int, int | None, bytes]


def migrate(db: Database) -> None:
    """Create or upgrade the audience tables (both adapters call it; it is idempotent)."""
    db.migrate("audiences", _MIGRATIONS)


def _check_kind(version: AudienceVersion) -> None:
    """Refuse a version whose definition is not of its ``kind``: it could not be read back."""
    if not isinstance(version.definition, _DEFINITIONS[version.kind]):
        raise ValidationError(
            f"audience {version.id!r} version {version.version} is a {version.kind} but its"
            f" definition is a {type(version.definition).__name__}",
            "kind",
        )


class SqliteAudienceCatalog:
    """Segment and computed trait versions, and repair requests, in the state database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db)

    def save(self, version: AudienceVersion) -> None:
        _check_kind(version)
        row = (
            version.id,
            version.version,
            version.kind,
            version.status,
            version.created_at,
            version.published_at,
            encode(version.definition),
        )
        with transaction(self._db, "saving an audience version") as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO audience_versions({_VERSION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def get(self, audience_id: str, version: int | None = None) -> AudienceVersion | None:
        if version is None:
            found = self._select("audience_id = ? ORDER BY version DESC LIMIT 1", audience_id)
        else:
            found = self._select("audience_id = ? AND version = ?", audience_id, version)
        return found[0] if found else None

    def versions(self, audience_id: str) -> list[AudienceVersion]:
        return self._select("audience_id = ? ORDER BY version", audience_id)

    def all(self) -> list[AudienceVersion]:
        return self._select("1 ORDER BY audience_id, version")

    def request_repair(self, audience_id: str) -> int:
        with transaction(self._db, "requesting an audience repair") as conn:
            count: int = conn.execute(
                "INSERT INTO audience_repairs(audience_id, requested) VALUES (?, 1)"
                " ON CONFLICT(audience_id) DO UPDATE SET requested = requested + 1"
                " RETURNING requested",
                (audience_id,),
            ).fetchone()[0]
        return count

    def repairs(self) -> dict[str, int]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT audience_id, requested FROM audience_repairs"))

    def _select(self, where: str, *params: object) -> list[AudienceVersion]:
        with self._db.read() as conn:
            rows: list[_Row] = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM audience_versions WHERE {where}", params
            ).fetchall()
        return [
            AudienceVersion(
                id=id_,
                version=number,
                kind=kind,
                status=status,
                definition=_DECODE_DEFINITION[kind](definition),
                created_at=created_at,
                published_at=published_at,
            )
            for id_, number, kind, status, created_at, published_at, definition in rows
        ]


class SqliteAudienceStore:
    """Folds, memberships with their timers, and pending membership-change events."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db)

    def processed_seq(self, partition: int | None = None) -> int:
        with self._db.read() as conn:
            return cursor(conn, "audience", partition)

    def folds(
        self, identifiers: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Fold]]:
        found: dict[tuple[str, str], dict[str, Fold]] = {}
        wanted = by_type(set(identifiers)).items()
        with self._db.read() as conn:
            for table in _FOLD_TABLES:
                for kind, values in wanted:
                    for chunk in chunks(values):
                        rows = conn.execute(
                            f"SELECT identifier_value, folds FROM {table} WHERE identifier_type"
                            f" = ? AND identifier_value IN ({marks(len(chunk))})",
                            (kind, *chunk),
                        )
                        for value, data in rows:
                            found.setdefault((kind, value), {}).update(_decode_folds(data))
        return found

    def memberships(self, profile_ids: Collection[str]) -> dict[str, Membership]:
        with self._db.read() as conn:
            return _memberships(conn, profile_ids)

    def claim_due(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Membership]:
        if limit <= 0:
            return []
        query, args = _due(now, partition, limit)
        with transaction(self._db, "claiming audience timers") as conn:
            rows = conn.execute(query, args).fetchall()
            leases = [(owner, now + lease_ms, rowid) for rowid, _ in rows]
            conn.executemany(
                "UPDATE audience_profiles SET lease_owner = ?, lease_until = ? WHERE rowid = ?",
                leases,
            )
        return [_decode_membership(data) for _, data in rows]

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        with self._db.read() as conn:
            return {
                partition
                for partition in sorted(set(partitions))
                if conn.execute(*_due(now, partition, 1)).fetchone() is not None
            }

    def next_wake(self) -> int | None:
        with self._db.read() as conn:
            wake: int | None = conn.execute(
                "SELECT min(wake_at) FROM audience_profiles WHERE wake_at IS NOT NULL"
            ).fetchone()[0]
        return wake

    def commit(self, update: AudienceUpdate) -> None:
        self.commit_all([update])

    def commit_all(self, updates: Sequence[AudienceUpdate]) -> None:
        # Encode before taking the write lock: it is held for the writes only.
        encoded = [_Rows.of(update) for update in updates]
        with transaction(self._db, "audience commit") as conn:
            for update, rows in zip(updates, encoded, strict=True):
                _write(conn, update, rows)

    def pending_emits(self, limit: int) -> list[Event]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT event FROM audience_emits ORDER BY rowid LIMIT ?", (limit,)
            ).fetchall()
        return [_decode_event(data) for (data,) in rows]

    def forwarded(self, message_ids: Collection[str]) -> None:
        if not message_ids:
            return
        with transaction(self._db, "forgetting forwarded audience events") as conn:
            conn.executemany(
                "DELETE FROM audience_emits WHERE message_id = ?", [(m,) for m in message_ids]
            )

    def members(self, segment_id: str, after_profile_id: str, limit: int) -> list[Membership]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT p.data FROM audience_members AS m"
                " JOIN audience_profiles AS p ON p.profile_id = m.profile_id"
                " WHERE m.segment_id = ? AND m.profile_id > ? ORDER BY m.profile_id LIMIT ?",
                (segment_id, after_profile_id, limit),
            ).fetchall()
        return [_decode_membership(data) for (data,) in rows]

    def count(self, segment_id: str) -> int:
        with self._db.read() as conn:
            found: int = conn.execute(
                "SELECT count(*) FROM audience_members WHERE segment_id = ?", (segment_id,)
            ).fetchone()[0]
        return found

    def progress(self) -> dict[str, str]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT name, progress FROM audience_jobs"))


def _check(conn: sqlite3.Connection, update: AudienceUpdate) -> None:
    """Raise unless the update's cursor, fence and job expectations hold (inside the write
    transaction, so no other commit can change them before it ends)."""
    if update.after_seq is not None:
        current = cursor(conn, "audience", update.partition)
        if current != update.after_seq:
            raise cursor_moved("audience processor", update.after_seq, current, update.partition)
    if update.fence is not None:
        check_fence(conn, update.fence)
    for name, expected in sorted(update.expect.items()):
        row = conn.execute("SELECT progress FROM audience_jobs WHERE name = ?", (name,)).fetchone()
        stored = None if row is None else row[0]
        if stored != expected:
            raise job_moved(name, expected, stored)


def _due(now: int, partition: int | None, limit: int) -> tuple[str, tuple[int, ...]]:
    """The query (and its arguments) of up to ``limit`` due timers, of one partition or all."""
    if partition is None:
        return _DUE_TIMERS, (now, now, limit)
    if partition == 0:
        return _DUE_TIMERS_OF_ZERO, (now, now, limit)
    return _DUE_TIMERS_OF, (now, now, partition, limit)


def _fold_rows(
    folds: dict[tuple[str, str], dict[str, Fold]],
) -> tuple[list[tuple[str, str, bytes]], list[tuple[str, str]]]:
    """The rows to upsert (identifier type, value, encoded folds) and the identifiers whose row
    goes (an empty mapping)."""
    upserts = [(kind, value, encode(f)) for (kind, value), f in folds.items() if f]
    return upserts, [key for key, f in folds.items() if not f]


def _memberships(conn: sqlite3.Connection, profile_ids: Iterable[str]) -> dict[str, Membership]:
    found: dict[str, Membership] = {}
    for chunk in chunks(list(set(profile_ids))):
        for (data,) in conn.execute(
            f"SELECT data FROM audience_profiles WHERE profile_id IN ({marks(len(chunk))})", chunk
        ):
            membership = _decode_membership(data)
            found[membership.profile_id] = membership
    return found


def _member_changes(
    stored: dict[str, Membership], segments: dict[str, set[str]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (segment, profile) pairs left and entered when profiles go from ``stored`` to
    ``segments``."""
    left: list[tuple[str, str]] = []
    entered: list[tuple[str, str]] = []
    for profile_id, now_in in segments.items():
        was_in = set(stored[profile_id].segments) if profile_id in stored else set()
        left += [(segment, profile_id) for segment in was_in - now_in]
        entered += [(segment, profile_id) for segment in now_in - was_in]
    return left, entered


@dataclass(frozen=True, slots=True)
class _Rows:
    """An update's rows, encoded."""

    folds: list[tuple[str, tuple[list[tuple[str, str, bytes]], list[tuple[str, str]]]]]
    profiles: list[tuple[str, int | None, bytes, int]]
    moves: list[tuple[int, str, int]]
    segments: dict[str, set[str]]
    emits: list[tuple[str, bytes]]
    jobs: list[tuple[str, str]]
    jobs_done: list[tuple[str]]

    @classmethod
    def of(cls, update: AudienceUpdate) -> _Rows:
        folds = [
            ("audience_folds", _fold_rows(update.folds)),
            ("audience_history", _fold_rows(update.history)),
        ]
        filed = 0 if update.partition is None else update.partition
        profiles = [(m.profile_id, m.wake_at, encode(m), filed) for m in update.memberships]
        moves = [(target, profile_id, filed) for profile_id, target in update.moves.items()]
        # Deletions come last: a profile merged away is gone even if evaluated in the batch.
        segments = {m.profile_id: set(m.segments) for m in update.memberships}
        segments.update((profile_id, set()) for profile_id in update.deleted)
        emits = [(e.message_id, _encode_event(e)) for e in update.emits]
        jobs = [(name, at) for name, at in update.progress.items() if at is not None]
        jobs_done = [(name,) for name, at in update.progress.items() if at is None]
        return cls(folds, profiles, moves, segments, emits, jobs, jobs_done)


def _write(conn: sqlite3.Connection, update: AudienceUpdate, rows: _Rows) -> None:
    """One update's checks and writes, inside the commit's transaction."""
    _check(conn, update)
    for table, (upserts, deletes) in rows.folds:
        if upserts:
            conn.executemany(_UPSERT_FOLDS.format(table=table), upserts)
        if deletes:
            conn.executemany(_DELETE_FOLDS.format(table=table), deletes)
    left, entered = _member_changes(_memberships(conn, rows.segments), rows.segments)
    if left:
        conn.executemany(
            "DELETE FROM audience_members WHERE segment_id = ? AND profile_id = ?", left
        )
    if entered:
        conn.executemany(
            "INSERT OR IGNORE INTO audience_members(segment_id, profile_id) VALUES (?, ?)",
            entered,
        )
    if rows.profiles:
        conn.executemany(_UPSERT_PROFILE, rows.profiles)
    if rows.moves:
        conn.executemany(_MOVE, rows.moves)
    if update.deleted:
        conn.executemany(
            "DELETE FROM audience_profiles WHERE profile_id = ?",
            [(profile_id,) for profile_id in update.deleted],
        )
    if rows.emits:
        conn.executemany(
            "INSERT OR IGNORE INTO audience_emits(message_id, event) VALUES (?, ?)", rows.emits
        )
    if rows.jobs:
        conn.executemany(
            "INSERT INTO audience_jobs(name, progress) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET progress = excluded.progress",
            rows.jobs,
        )
    if rows.jobs_done:
        conn.executemany("DELETE FROM audience_jobs WHERE name = ?", rows.jobs_done)
    if update.after_seq is not None and update.processed_seq is not None:
        if update.partition is None:
            conn.execute("UPDATE audience_progress SET processed_seq = ?", (update.processed_seq,))
        else:
            conn.execute(_SET_PARTITION_CURSOR, (update.partition, update.processed_seq))
