"""PostgreSQL :class:`safar.ports.AudienceCatalog` and :class:`~safar.ports.AudienceStore`,
migration component ``audiences``. The tables are those of the SQLite adapter (its docstring
says why each is laid out so); what differs is how several processes share them.

Tables:

- ``audience_versions``: one row per version, keyed ``(audience_id, version)``. The definition
  is stored apart from the version's other fields and decoded by ``kind``: ``Segment |
  ComputedTrait`` is an untagged union, which msgspec cannot decode whole.
- ``audience_progress``: one row, the processor's ``processed_seq``. A commit with
  ``after_seq`` locks it ``FOR UPDATE`` before checking it, so of two processors racing from the
  same cursor the second waits for the first, sees its cursor and fails.
  ``audience_partitions(partition)`` (migration 3): the cursor of each work-feed partition
  (ADR 12), a row from the first commit naming it, locked the same way.
- ``audience_folds``: one row per identifier ``(identifier_type, identifier_value)``, all its
  live folds in one value, read and written whole by its key; ``audience_history`` (migration
  3), of the same shape, its history folds. :meth:`~PgAudienceStore.folds` reads both in one
  statement.
- ``audience_profiles``: one row per evaluated profile, the whole :class:`Membership` in
  ``data``. Its timer is ``wake_at`` under the partial index ``audience_timers``, which serves
  both the claim (earliest first) and :meth:`~PgAudienceStore.next_wake`. Leases are columns
  outside every index, so leasing a timer can be a HOT update. ``partition`` (migration 3) is
  the work-feed partition the membership is filed under (0 without a feed);
  ``audience_partition_timers(partition, wake_at)`` serves a claim for one partition.
- ``audience_members(segment_id, profile_id)``: who is in each segment, so
  :meth:`~PgAudienceStore.members` pages along the primary key and
  :meth:`~PgAudienceStore.count` counts one key range, never every membership. A commit
  changes these rows only for segments entered or left (most evaluations change nothing),
  computed from the stored memberships it holds locked, so the rows always match ``data``.
- ``audience_emits``: pending membership-change events. ``position`` (an identity) orders them;
  ``message_id`` is unique, so an event already pending is skipped.
- ``audience_jobs(name, progress)``: where each background job is. ``progress`` is NULL
  (migration 3) for a job without progress whose row is kept so that its name can be locked:
  a commit expecting a job to have none must keep another from giving it some meanwhile, and
  only a row can be locked.
- ``audience_repairs(audience_id, requested)``: how many repairs were requested of each
  audience (migration 2). A request increments its row in one statement, so concurrent
  requests all count.

Folds and memberships are msgspec JSON, as in the SQLite store: folds hold values customers
sent, and MessagePack refuses integers beyond 64 bits, which would poison a batch. Pending
events are MessagePack: their fields are Safar's own, and their body is bytes.

Concurrency: timers are claimed with ``FOR UPDATE SKIP LOCKED``, the lease set in the same
statement, so concurrent claimers never share a timer. A commit locks every stored membership it
replaces or deletes before reading it, and commits that emit take their turn on
``audience_emits`` just before inserting, so positions ascend in commit order. A commit with
``expect`` locks the jobs it names before comparing them, ``FOR SHARE`` (commits of many
partitions expecting one job run side by side) or ``FOR UPDATE`` when it also writes the job
(two compare-and-sets of one job are ordered, and the second fails). Every commit takes its
locks in one order: cursor, fence, jobs, folds, memberships, then the turn on emits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import psycopg

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
from safar.stores.postgres.db import PgDatabase, PgMigration
from safar.stores.postgres.journeys import claim_params, read_cursor, scalar
from safar.stores.postgres.leases import check_fence

_MIGRATIONS: list[PgMigration] = [
    """
    CREATE TABLE audience_versions(
        audience_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        published_at BIGINT,
        definition BYTEA NOT NULL,
        PRIMARY KEY (audience_id, version)
    );
    CREATE TABLE audience_progress(
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        processed_seq BIGINT NOT NULL
    );
    INSERT INTO audience_progress(id, processed_seq) VALUES (1, 0);
    CREATE TABLE audience_folds(
        identifier_type TEXT NOT NULL,
        identifier_value TEXT NOT NULL,
        folds BYTEA NOT NULL,
        PRIMARY KEY (identifier_type, identifier_value)
    );
    CREATE TABLE audience_profiles(
        profile_id TEXT PRIMARY KEY,
        wake_at BIGINT,
        lease_owner TEXT,
        lease_until BIGINT,
        data BYTEA NOT NULL
    );
    CREATE INDEX audience_timers ON audience_profiles(wake_at) WHERE wake_at IS NOT NULL;
    CREATE TABLE audience_members(
        segment_id TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (segment_id, profile_id)
    );
    CREATE TABLE audience_emits(
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        event BYTEA NOT NULL
    );
    CREATE TABLE audience_jobs(
        name TEXT PRIMARY KEY,
        progress TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE audience_repairs(
        audience_id TEXT PRIMARY KEY,
        requested BIGINT NOT NULL
    )
    """,
    # Work-feed partitions (ADR 12), history folds, and job rows without progress. A constant
    # default adds the column without rewriting the table: existing memberships are filed
    # under partition 0.
    """
    ALTER TABLE audience_profiles ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX audience_partition_timers ON audience_profiles(partition, wake_at)
        WHERE wake_at IS NOT NULL;
    CREATE TABLE audience_partitions(
        partition INTEGER PRIMARY KEY,
        processed_seq BIGINT NOT NULL
    );
    CREATE TABLE audience_history(
        identifier_type TEXT NOT NULL,
        identifier_value TEXT NOT NULL,
        folds BYTEA NOT NULL,
        PRIMARY KEY (identifier_type, identifier_value)
    );
    ALTER TABLE audience_jobs ALTER COLUMN progress DROP NOT NULL
    """,
]

_Kind = Literal["segment", "computed_trait"]
_DEFINITIONS: dict[_Kind, type[Segment] | type[ComputedTrait]] = {
    "segment": Segment,
    "computed_trait": ComputedTrait,
}
_DECODE_DEFINITION = {kind: msgspec.json.Decoder(cls).decode for kind, cls in _DEFINITIONS.items()}
_encode_json = msgspec.json.Encoder().encode
_decode_folds = msgspec.json.Decoder(dict[str, Fold]).decode
_decode_membership = msgspec.json.Decoder(Membership).decode
_encode_event = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode

_VERSION_COLUMNS = "audience_id, version, kind, status, created_at, published_at, definition"
_SAVE_VERSION = (
    f"INSERT INTO audience_versions({_VERSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT(audience_id, version) DO UPDATE SET kind = excluded.kind,"
    " status = excluded.status, created_at = excluded.created_at,"
    " published_at = excluded.published_at, definition = excluded.definition"
)
_VersionRow = tuple[str, int, _Kind, Status, int, int | None, bytes]

#: Live folds, then history folds (``history`` says which), of the wanted identifiers.
_FOLDS_OF = " UNION ALL ".join(
    f"SELECT {history} AS history, f.identifier_type, f.identifier_value, f.folds"
    f" FROM {table} AS f"
    " JOIN unnest(%(types)s::text[], %(values)s::text[])"
    " AS wanted(identifier_type, identifier_value) USING (identifier_type, identifier_value)"
    for history, table in (("false", "audience_folds"), ("true", "audience_history"))
)
_UPSERT_FOLDS = (
    "INSERT INTO {table}(identifier_type, identifier_value, folds)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])"
    " ON CONFLICT(identifier_type, identifier_value) DO UPDATE SET folds = excluded.folds"
)
_DELETE_FOLDS = (
    "DELETE FROM {table} AS f"
    " USING unnest(%s::text[], %s::text[]) AS gone(identifier_type, identifier_value)"
    " WHERE f.identifier_type = gone.identifier_type"
    " AND f.identifier_value = gone.identifier_value"
)

_KNOWN_PROFILES = "SELECT profile_id FROM audience_profiles WHERE profile_id = ANY(%s)"
#: Rows are locked in the order of ``ORDER BY`` (sorted before locked), so commits locking
#: overlapping sets take their locks in one order and do not deadlock; heap order would not do,
#: as updates move rows.
_LOCK_MEMBERSHIPS = (
    "SELECT data FROM audience_profiles WHERE profile_id = ANY(%s) ORDER BY profile_id FOR UPDATE"
)
#: New profiles only, filed under the commit's partition: one another commit inserted
#: meanwhile is left out, for the caller to lock.
_INSERT_PROFILES = (
    "INSERT INTO audience_profiles(profile_id, wake_at, data, partition)"
    " SELECT n.*, %(partition)s::int"
    " FROM unnest(%(ids)s::text[], %(wakes)s::bigint[], %(data)s::bytea[]) AS n"
    " ON CONFLICT(profile_id) DO NOTHING RETURNING profile_id"
)
#: Replaces stored memberships (locked by the caller), files them under the commit's
#: partition and releases their timer leases.
_REPLACE_PROFILES = (
    "UPDATE audience_profiles AS p SET wake_at = n.wake_at, lease_owner = NULL,"
    " lease_until = NULL, data = n.data, partition = %(partition)s"
    " FROM unnest(%(ids)s::text[], %(wakes)s::bigint[], %(data)s::bytea[])"
    " AS n(profile_id, wake_at, data)"
    " WHERE p.profile_id = n.profile_id"
)
#: A handover: the memberships filed under the commit's partition (source) go to each
#: profile's new one (target).
_MOVE_PROFILES = (
    "UPDATE audience_profiles AS p SET partition = m.target"
    " FROM unnest(%s::text[], %s::int[]) AS m(profile_id, target)"
    " WHERE p.profile_id = m.profile_id AND p.partition = %s"
)
_LEAVE_SEGMENTS = (
    "DELETE FROM audience_members AS m"
    " USING unnest(%s::text[], %s::text[]) AS gone(segment_id, profile_id)"
    " WHERE m.segment_id = gone.segment_id AND m.profile_id = gone.profile_id"
)
_ENTER_SEGMENTS = (
    "INSERT INTO audience_members(segment_id, profile_id)"
    " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING"
)

#: Earliest due timers whose lease is free or over, leased in the same statement. ``wake_at <=
#: now`` implies the partial indexes' predicate, so ``audience_timers`` (or, for one partition,
#: ``audience_partition_timers``) serves the order and the limit; SKIP LOCKED passes over timers
#: another claimer is leasing right now.
_CLAIM_DUE = (
    "WITH due AS ("
    " SELECT profile_id FROM audience_profiles"
    " WHERE wake_at <= %(now)s AND (lease_until IS NULL OR lease_until <= %(now)s){partition}"
    " ORDER BY wake_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    "), leased AS ("
    " UPDATE audience_profiles AS p SET lease_owner = %(owner)s, lease_until = %(until)s"
    " FROM due WHERE p.profile_id = due.profile_id RETURNING p.wake_at, p.data"
    ") SELECT data FROM leased ORDER BY wake_at"
)
_CLAIM_ALL_DUE = _CLAIM_DUE.format(partition="")
_CLAIM_PARTITION_DUE = _CLAIM_DUE.format(partition=" AND partition = %(partition)s")
#: One probe of ``audience_partition_timers`` per partition, not a scan of every due timer.
_DUE_PARTITIONS = (
    "SELECT p FROM unnest(%(partitions)s::int[]) AS p WHERE EXISTS ("
    " SELECT 1 FROM audience_profiles WHERE partition = p AND wake_at <= %(now)s"
    " AND (lease_until IS NULL OR lease_until <= %(now)s))"
)

#: Conflicts with itself and with inserts and deletes, not with reads: commits that emit take
#: turns from here to their end, so positions are handed out in commit order and a reader never
#: sees a later event without the earlier ones.
_EMIT_TURN = "LOCK TABLE audience_emits IN SHARE ROW EXCLUSIVE MODE"
#: In the batch's order, so positions follow it.
_INSERT_EMITS = (
    "INSERT INTO audience_emits(message_id, event)"
    " SELECT m, e FROM unnest(%b::text[], %b::bytea[]) WITH ORDINALITY AS x(m, e, n) ORDER BY n"
    " ON CONFLICT(message_id) DO NOTHING"
)

#: Sets each job's progress; NULL forgets it but keeps the row (see the module docstring).
_UPSERT_JOBS = (
    "INSERT INTO audience_jobs(name, progress) SELECT * FROM unnest(%s::text[], %s::text[])"
    " ON CONFLICT(name) DO UPDATE SET progress = excluded.progress"
)
#: Rows for jobs that have none yet, so that they can be locked; those another commit
#: inserted meanwhile are left (the insert waits for that commit to end).
_ADD_JOB_ROWS = (
    "INSERT INTO audience_jobs(name) SELECT unnest(%s::text[]) ON CONFLICT(name) DO NOTHING"
)
_LOCK_JOBS = (
    "SELECT name, progress FROM audience_jobs WHERE name = ANY(%s) ORDER BY name FOR {mode}"
)

_Pairs = list[tuple[str, str]]


def migrate(db: PgDatabase) -> None:
    """Create or upgrade the audience tables (both adapters call it; it is idempotent)."""
    db.migrate("audiences", _MIGRATIONS)


class PgAudienceCatalog:
    """Segment and computed trait versions, one row each, and repair requests."""

    def __init__(self, db: PgDatabase) -> None:
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
            _encode_json(version.definition),
        )
        with self._db.write() as conn:
            conn.execute(_SAVE_VERSION, row)

    def get(self, audience_id: str, version: int | None = None) -> AudienceVersion | None:
        if version is None:
            found = self._select("audience_id = %s ORDER BY version DESC LIMIT 1", audience_id)
        else:
            found = self._select("audience_id = %s AND version = %s", audience_id, version)
        return found[0] if found else None

    def versions(self, audience_id: str) -> list[AudienceVersion]:
        return self._select("audience_id = %s ORDER BY version", audience_id)

    def all(self) -> list[AudienceVersion]:
        return self._select("true ORDER BY audience_id, version")

    def request_repair(self, audience_id: str) -> int:
        with self._db.write() as conn:
            count: int = scalar(
                conn,
                "INSERT INTO audience_repairs(audience_id, requested) VALUES (%s, 1)"
                " ON CONFLICT(audience_id)"
                " DO UPDATE SET requested = audience_repairs.requested + 1"
                " RETURNING requested",
                audience_id,
            )
        return count

    def repairs(self) -> dict[str, int]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT audience_id, requested FROM audience_repairs").fetchall()
        return dict(rows)

    def _select(self, where: str, *params: object) -> list[AudienceVersion]:
        with self._db.read() as conn:
            rows: list[_VersionRow] = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM audience_versions WHERE {where}", params
            ).fetchall()
        return [_version(row) for row in rows]


class PgAudienceStore:
    """Folds, memberships with their timers, and pending membership-change events."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        migrate(db)

    def processed_seq(self, partition: int | None = None) -> int:
        with self._db.read() as conn:
            return read_cursor(conn, "audience", partition)

    def folds(
        self, identifiers: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Fold]]:
        if not identifiers:
            return {}
        types, values = _pair_columns(set(identifiers))
        with self._db.read() as conn:
            rows = conn.execute(_FOLDS_OF, {"types": types, "values": values}).fetchall()
        found: dict[tuple[str, str], dict[str, Fold]] = {}
        # Live folds first, history over them.
        for _, kind, value, data in sorted(rows, key=lambda row: row[0]):
            found.setdefault((kind, value), {}).update(_decode_folds(data))
        return found

    def memberships(self, profile_ids: Collection[str]) -> dict[str, Membership]:
        if not profile_ids:
            return {}
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM audience_profiles WHERE profile_id = ANY(%s)",
                (list(profile_ids),),
            ).fetchall()
        return _by_profile(data for (data,) in rows)

    def claim_due(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Membership]:
        if limit <= 0:
            return []
        params = claim_params(now, limit, owner, lease_ms, partition)
        query = _CLAIM_ALL_DUE if partition is None else _CLAIM_PARTITION_DUE
        with self._db.write() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_decode_membership(data) for (data,) in rows]

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        if not partitions:
            return set()
        with self._db.read() as conn:
            rows = conn.execute(
                _DUE_PARTITIONS, {"partitions": sorted(set(partitions)), "now": now}
            ).fetchall()
        return {partition for (partition,) in rows}

    def next_wake(self) -> int | None:
        with self._db.read() as conn:
            wake: int | None = scalar(
                conn, "SELECT min(wake_at) FROM audience_profiles WHERE wake_at IS NOT NULL"
            )
        return wake

    def commit(self, update: AudienceUpdate) -> None:
        self.commit_all([update])

    def commit_all(self, updates: Sequence[AudienceUpdate]) -> None:
        # Encode before the transaction: its locks are held for the writes only.
        encoded = [_Rows.of(update) for update in updates]
        with self._db.write() as conn:
            for update, rows in zip(updates, encoded, strict=True):
                _write(conn, update, rows)
            # Last, so the turn on audience_emits is held as briefly as possible.
            _write_emits(conn, [emit for rows in encoded for emit in rows.emits])

    def pending_emits(self, limit: int) -> list[Event]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT event FROM audience_emits ORDER BY position LIMIT %s", (limit,)
            ).fetchall()
        return [_decode_event(data) for (data,) in rows]

    def forwarded(self, message_ids: Collection[str]) -> None:
        if not message_ids:
            return
        with self._db.write() as conn:
            conn.execute(
                "DELETE FROM audience_emits WHERE message_id = ANY(%s)", (list(message_ids),)
            )

    def members(self, segment_id: str, after_profile_id: str, limit: int) -> list[Membership]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT p.data FROM audience_members AS m"
                " JOIN audience_profiles AS p ON p.profile_id = m.profile_id"
                " WHERE m.segment_id = %s AND m.profile_id > %s ORDER BY m.profile_id LIMIT %s",
                (segment_id, after_profile_id, limit),
            ).fetchall()
        return [_decode_membership(data) for (data,) in rows]

    def count(self, segment_id: str) -> int:
        with self._db.read() as conn:
            found: int = scalar(
                conn, "SELECT count(*) FROM audience_members WHERE segment_id = %s", segment_id
            )
        return found

    def progress(self) -> dict[str, str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT name, progress FROM audience_jobs WHERE progress IS NOT NULL"
            ).fetchall()
        return dict(rows)


# -- catalog helpers ------------------------------------------------------------------------------


def _check_kind(version: AudienceVersion) -> None:
    """Refuse a version whose definition is not of its ``kind``: it could not be read back."""
    if not isinstance(version.definition, _DEFINITIONS[version.kind]):
        raise ValidationError(
            f"audience {version.id!r} version {version.version} is a {version.kind} but its"
            f" definition is a {type(version.definition).__name__}",
            "kind",
        )


def _version(row: _VersionRow) -> AudienceVersion:
    audience_id, number, kind, status, created_at, published_at, definition = row
    return AudienceVersion(
        id=audience_id,
        version=number,
        kind=kind,
        status=status,
        definition=_DECODE_DEFINITION[kind](definition),
        created_at=created_at,
        published_at=published_at,
    )


# -- commit steps (each a constant number of statements, whatever the batch size) ----------------


def _check_cursor(conn: psycopg.Connection, partition: int | None, after_seq: int) -> None:
    """Raise unless the cursor of ``partition`` (None: the one without) is at ``after_seq``,
    holding its row until the commit ends. A partition's row is made (at 0) by the first commit
    naming it; of two making it at once, the second's insert waits for the first to end, then
    does nothing, and its ``FOR UPDATE`` reads the first's cursor."""
    if partition is None:
        current = scalar(
            conn, "SELECT processed_seq FROM audience_progress WHERE id = 1 FOR UPDATE"
        )
    else:
        conn.execute(
            "INSERT INTO audience_partitions(partition, processed_seq) VALUES (%s, 0)"
            " ON CONFLICT(partition) DO NOTHING",
            (partition,),
        )
        current = scalar(
            conn,
            "SELECT processed_seq FROM audience_partitions WHERE partition = %s FOR UPDATE",
            partition,
        )
    if current != after_seq:
        raise cursor_moved("audience processor", after_seq, current, partition)


def _set_cursor(conn: psycopg.Connection, partition: int | None, seq: int) -> None:
    """Move the cursor checked (and locked) by :func:`_check_cursor`."""
    if partition is None:
        conn.execute("UPDATE audience_progress SET processed_seq = %s WHERE id = 1", (seq,))
    else:
        conn.execute(
            "UPDATE audience_partitions SET processed_seq = %s WHERE partition = %s",
            (seq, partition),
        )


def _check_jobs(
    conn: psycopg.Connection, expect: dict[str, str | None], progress: dict[str, str | None]
) -> None:
    """Raise unless every job of ``expect`` has that progress, holding the jobs' rows until the
    commit ends: ``FOR UPDATE`` those the commit writes too (a second compare-and-set of one job
    waits for the first, then fails), ``FOR SHARE`` the others (commits expecting one job do not
    wait for each other; one changing it waits for them, and they for it)."""
    if not expect:
        return
    stored = _lock_jobs(conn, sorted(expect.keys() & progress.keys()), "UPDATE")
    stored.update(_lock_jobs(conn, sorted(expect.keys() - progress.keys()), "SHARE"))
    for name, expected in sorted(expect.items()):
        if stored.get(name) != expected:
            raise job_moved(name, expected, stored.get(name))


def _lock_jobs(
    conn: psycopg.Connection, names: list[str], mode: Literal["UPDATE", "SHARE"]
) -> dict[str, str | None]:
    """Lock the rows of jobs ``names`` (sorted), adding rows without progress for those that
    have none, so that no other commit can give them some meanwhile; their progress."""
    if not names:
        return {}
    query = _LOCK_JOBS.format(mode=mode)
    stored: dict[str, str | None] = dict(conn.execute(query, (names,)).fetchall())
    missing = [name for name in names if name not in stored]
    if missing:
        conn.execute(_ADD_JOB_ROWS, (missing,))
        stored.update(conn.execute(query, (missing,)).fetchall())
    return stored


def _fold_rows(
    folds: dict[tuple[str, str], dict[str, Fold]],
) -> tuple[dict[tuple[str, str], bytes], list[tuple[str, str]]]:
    """The identifiers' encoded folds to upsert and the identifiers whose row goes (an empty
    mapping), each in key order, as rows are locked, so commits writing the same folds do not
    deadlock."""
    upserts = {key: _encode_json(f) for key, f in sorted(folds.items()) if f}
    return upserts, sorted(key for key, f in folds.items() if not f)


def _write_folds(
    conn: psycopg.Connection,
    table: str,
    folds: dict[tuple[str, str], bytes],
    no_folds: Sequence[tuple[str, str]],
) -> None:
    if folds:
        types, values = _pair_columns(folds)
        conn.execute(_UPSERT_FOLDS.format(table=table), (types, values, list(folds.values())))
    if no_folds:
        conn.execute(_DELETE_FOLDS.format(table=table), _pair_columns(no_folds))


def _write_memberships(
    conn: psycopg.Connection,
    evaluated: dict[str, Membership],
    encoded: dict[str, bytes],
    deleted: set[str],
    filed: int,
    moves: list[tuple[str, int]],
) -> None:
    """Store ``evaluated`` (upserts releasing leases) filed under ``filed``, move those of
    ``moves`` (profile id, target, in key order) filed under it, and delete ``deleted``, moving
    the segment listings by what each profile entered or left since the membership it
    replaces."""
    created: set[str] = set()
    stored: dict[str, Membership] = {}
    if evaluated or deleted:
        created, stored = _hold_profiles(conn, evaluated, encoded, deleted, filed)
    replaced = sorted(evaluated.keys() & stored.keys())
    if replaced:
        conn.execute(_REPLACE_PROFILES, _profile_columns(replaced, evaluated, encoded, filed))
    if moves:
        ids, targets = [p for p, _ in moves], [target for _, target in moves]
        conn.execute(_MOVE_PROFILES, (ids, targets, filed))
    # Only rows held: one inserted by a commit since is kept, as if it came after this one.
    gone = sorted(deleted & stored.keys())
    if gone:
        conn.execute("DELETE FROM audience_profiles WHERE profile_id = ANY(%s)", (gone,))
    # An evaluated profile neither created nor stored was deleted (merged away) by a commit
    # since it was looked up: it stays gone and enters no segment.
    segments = {p: set(m.segments) for p, m in evaluated.items() if p in created or p in stored}
    segments.update((profile_id, set()) for profile_id in gone)
    left, entered = _member_changes(stored, segments)
    if left:
        conn.execute(_LEAVE_SEGMENTS, _pair_columns(left))
    if entered:
        conn.execute(_ENTER_SEGMENTS, _pair_columns(entered))


def _hold_profiles(
    conn: psycopg.Connection,
    evaluated: dict[str, Membership],
    encoded: dict[str, bytes],
    deleted: set[str],
    filed: int,
) -> tuple[set[str], dict[str, Membership]]:
    """Lock every profile the commit writes: the ids of new memberships it inserted, and the
    stored memberships (read once locked, so the latest committed) of the others.

    Locks are taken in two sweeps, each in key order: inserts of the profiles not stored yet,
    then ``FOR UPDATE`` of the others. A commit's own inserts are invisible to the second sweep
    of others until it ends, so two commits of overlapping profiles never wait for each other in
    a circle. A profile another commit inserted meanwhile is not inserted (the insert waited for
    that commit) but locked in the second sweep, as stored.
    """
    known = _known_profiles(conn, evaluated) if evaluated else set()
    created = _insert_profiles(conn, sorted(evaluated.keys() - known), evaluated, encoded, filed)
    stored = _locked_memberships(conn, (evaluated.keys() - created) | deleted)
    return created, stored


def _known_profiles(conn: psycopg.Connection, profile_ids: Iterable[str]) -> set[str]:
    """Which of these profiles have a stored membership (unlocked: a first look)."""
    return {profile_id for (profile_id,) in conn.execute(_KNOWN_PROFILES, (list(profile_ids),))}


def _locked_memberships(
    conn: psycopg.Connection, profile_ids: Iterable[str]
) -> dict[str, Membership]:
    rows = conn.execute(_LOCK_MEMBERSHIPS, (list(profile_ids),)).fetchall()
    return _by_profile(data for (data,) in rows)


def _insert_profiles(
    conn: psycopg.Connection,
    profile_ids: Sequence[str],
    evaluated: dict[str, Membership],
    encoded: dict[str, bytes],
    filed: int,
) -> set[str]:
    """Insert these new memberships; the ids actually inserted (not inserted meanwhile by
    another commit)."""
    if not profile_ids:
        return set()
    params = _profile_columns(profile_ids, evaluated, encoded, filed)
    return {profile_id for (profile_id,) in conn.execute(_INSERT_PROFILES, params)}


def _profile_columns(
    profile_ids: Sequence[str],
    evaluated: dict[str, Membership],
    encoded: dict[str, bytes],
    filed: int,
) -> dict[str, Any]:
    """The parameters of these memberships' rows: the ``unnest`` arrays (profile id, wake_at,
    data) and the partition they are filed under."""
    return {
        "ids": list(profile_ids),
        "wakes": [evaluated[profile_id].wake_at for profile_id in profile_ids],
        "data": [encoded[profile_id] for profile_id in profile_ids],
        "partition": filed,
    }


def _member_changes(
    stored: dict[str, Membership], segments: dict[str, set[str]]
) -> tuple[_Pairs, _Pairs]:
    """The (segment, profile) pairs left and entered when profiles go from ``stored`` to
    ``segments``."""
    left: _Pairs = []
    entered: _Pairs = []
    for profile_id, now_in in segments.items():
        was_in = set(stored[profile_id].segments) if profile_id in stored else set()
        left += [(segment, profile_id) for segment in was_in - now_in]
        entered += [(segment, profile_id) for segment in now_in - was_in]
    return left, entered


def _write_jobs(conn: psycopg.Connection, progress: dict[str, str | None]) -> None:
    """Set (or, to NULL, forget) the jobs' progress in one statement, in key order, as rows are
    locked, so commits writing the same jobs do not deadlock."""
    if progress:
        ordered = sorted(progress.items())
        conn.execute(_UPSERT_JOBS, ([name for name, _ in ordered], [at for _, at in ordered]))


def _write_emits(conn: psycopg.Connection, emits: list[tuple[str, bytes]]) -> None:
    """Queue ``emits`` in their order, skipping message ids already pending (or earlier in
    ``emits``)."""
    if not emits:
        return
    conn.execute(_EMIT_TURN)
    # One statement, not executemany: psycopg runs that in a pipeline, and a process frozen in
    # the middle of one keeps its locks (see PgDatabase.write). The first of two equal message
    # ids is kept.
    first: dict[str, bytes] = {}
    for message_id, event in emits:
        first.setdefault(message_id, event)
    conn.execute(_INSERT_EMITS, (list(first), list(first.values())))


# -- shared helpers -------------------------------------------------------------------------------


def _pair_columns(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Pairs as two column lists, the arrays ``unnest(%s::text[], %s::text[])`` takes."""
    listed = list(pairs)
    return [first for first, _ in listed], [second for _, second in listed]


def _by_profile(data: Iterable[bytes]) -> dict[str, Membership]:
    memberships = (_decode_membership(blob) for blob in data)
    return {membership.profile_id: membership for membership in memberships}


@dataclass(frozen=True, slots=True)
class _Rows:
    """An update's values, encoded as its statements bind them."""

    deleted: set[str]
    evaluated: dict[str, Membership]
    encoded: dict[str, bytes]
    filed: int
    folds: list[tuple[str, dict[tuple[str, str], bytes], list[tuple[str, str]]]]
    emits: list[tuple[str, bytes]]
    moves: list[tuple[str, int]]

    @classmethod
    def of(cls, update: AudienceUpdate) -> _Rows:
        deleted = set(update.deleted)
        # Deletions win: a profile merged away is gone even if evaluated in the batch. Of two
        # evaluations of one profile, the later wins, as two upserts in a row would.
        evaluated = {m.profile_id: m for m in update.memberships if m.profile_id not in deleted}
        return cls(
            deleted=deleted,
            evaluated=evaluated,
            encoded={profile_id: _encode_json(m) for profile_id, m in evaluated.items()},
            filed=0 if update.partition is None else update.partition,
            folds=[
                ("audience_folds", *_fold_rows(update.folds)),
                ("audience_history", *_fold_rows(update.history)),
            ],
            emits=[(e.message_id, _encode_event(e)) for e in update.emits],
            # In key order, as rows are locked, like folds and jobs.
            moves=sorted(update.moves.items()),
        )


def _write(conn: psycopg.Connection, update: AudienceUpdate, rows: _Rows) -> None:
    """One update's checks and writes but its emits, inside the commit's transaction."""
    if update.after_seq is not None:
        _check_cursor(conn, update.partition, update.after_seq)
    if update.fence is not None:
        check_fence(conn, update.fence)
    _check_jobs(conn, update.expect, update.progress)
    _write_jobs(conn, update.progress)
    for table, upserts, deletes in rows.folds:
        _write_folds(conn, table, upserts, deletes)
    _write_memberships(conn, rows.evaluated, rows.encoded, rows.deleted, rows.filed, rows.moves)
    if update.after_seq is not None and update.processed_seq is not None:
        _set_cursor(conn, update.partition, update.processed_seq)
