"""SQLite :class:`safar.ports.RunStore`: journey instances, their timers, entry records, visits.

An instance is one row: the columns queries need, and the instance encoded whole in ``data``.
Its timer is its own ``wake_at`` column under the partial index ``journey_timers`` (active
instances with a wake-up only, keyed ``(wake_at, lease_until)``), so a claim reads the due end of
that index and skips leased rows without touching the table. Tables: see
:mod:`safar.stores.sqlite.journeys`.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec
from msgspec.structs import astuple

from safar.errors import StoreError
from safar.model.runs import EntryRecord, Instance, Visit
from safar.ports import JourneyUpdate
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.journeys import chunks, encode, marks, migrate, transaction
from safar.stores.sqlite.leases import check_fence

_decode_instance = msgspec.json.Decoder(Instance).decode

_UPSERT_INSTANCE = (
    "INSERT INTO journey_instances"
    "(id, journey_id, version, profile_id, status, entered_at, wake_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
    " journey_id = excluded.journey_id, version = excluded.version,"
    " profile_id = excluded.profile_id, status = excluded.status,"
    " entered_at = excluded.entered_at, wake_at = excluded.wake_at,"
    " lease_owner = NULL, lease_until = NULL, data = excluded.data"
)
_UPSERT_ENTRY = (
    "INSERT INTO journey_entries"
    "(profile_id, journey_id, entries, active, last_entered_at, last_exited_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(profile_id, journey_id) DO UPDATE SET"
    " entries = excluded.entries, active = excluded.active,"
    " last_entered_at = excluded.last_entered_at, last_exited_at = excluded.last_exited_at"
)
_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO journey_outbox"
    "(key, status, due, attempts, last_error, profile_id, command)"
    " VALUES (?, 'pending', ?, ?, ?, ?, ?)"
)
_INSERT_VISIT = (
    "INSERT INTO journey_visits(instance_id, journey_id, version, step, at, outcome)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_DUE_TIMERS = (
    "SELECT rowid, data FROM journey_instances"
    " WHERE status = 'active' AND wake_at IS NOT NULL AND wake_at <= ?"
    " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY wake_at LIMIT ?"
)
_ENTRY_COLUMNS = "journey_id, profile_id, entries, active, last_entered_at, last_exited_at"


class SqliteRunStore:
    """Instances, timers, entry records, visits and the runtime's cursor; the runtime's outbox
    entries are written here too, in the same transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db)

    def processed_seq(self) -> int:
        with self._db.read() as conn:
            seq: int = conn.execute("SELECT processed_seq FROM journey_progress").fetchone()[0]
        return seq

    def load(self, profile_ids: Collection[str]) -> tuple[list[Instance], list[EntryRecord]]:
        instances: list[Instance] = []
        entries: list[EntryRecord] = []
        with self._db.read() as conn:
            for chunk in chunks(list(set(profile_ids))):
                where = f"profile_id IN ({marks(len(chunk))})"
                instances += [
                    _decode_instance(data)
                    for (data,) in conn.execute(
                        f"SELECT data FROM journey_instances WHERE {where} AND status = 'active'",
                        chunk,
                    )
                ]
                entries += [
                    _entry(row)
                    for row in conn.execute(
                        f"SELECT {_ENTRY_COLUMNS} FROM journey_entries WHERE {where}", chunk
                    )
                ]
        return instances, entries

    def instances(self, instance_ids: Collection[str]) -> list[Instance]:
        found: list[Instance] = []
        with self._db.read() as conn:
            for chunk in chunks(list(set(instance_ids))):
                found += [
                    _decode_instance(data)
                    for (data,) in conn.execute(
                        f"SELECT data FROM journey_instances WHERE id IN ({marks(len(chunk))})",
                        chunk,
                    )
                ]
        return found

    def claim_timers(self, now: int, limit: int, owner: str, lease_ms: int) -> list[Instance]:
        if limit <= 0:
            return []
        # Select, then lease by rowid, in one write transaction: portable to SQLite before 3.35
        # (no RETURNING), and the rows come back in wake-up order.
        with transaction(self._db, "claiming journey timers") as conn:
            rows = conn.execute(_DUE_TIMERS, (now, now, limit)).fetchall()
            conn.executemany(
                "UPDATE journey_instances SET lease_owner = ?, lease_until = ? WHERE rowid = ?",
                [(owner, now + lease_ms, rowid) for rowid, _ in rows],
            )
        return [_decode_instance(data) for _, data in rows]

    def commit(self, update: JourneyUpdate) -> None:
        # Encode before taking the write lock: it is held for the inserts only.
        instances = [
            (i.id, i.journey_id, i.version, i.profile_id, i.status, i.entered_at, i.wake_at, data)
            for i, data in zip(update.instances, map(encode, update.instances), strict=True)
        ]
        entries = [
            (e.profile_id, e.journey_id, e.entries, e.active, e.last_entered_at, e.last_exited_at)
            for e in update.entries
        ]
        outbox = [
            (e.key, e.due, e.attempts, e.last_error, e.profile_id, encode(e.command))
            for e in update.outbox
        ]
        # Columns in field order, so a visit is its own row.
        visits = [astuple(v) for v in update.visits]
        with transaction(self._db, "journey commit") as conn:
            if update.after_seq is not None:
                (current,) = conn.execute("SELECT processed_seq FROM journey_progress").fetchone()
                if current != update.after_seq:
                    raise StoreError(
                        f"journey batch read events after seq {update.after_seq}, but the store"
                        f" is at {current}: another journey runtime is running"
                    )
            if update.fence is not None:
                check_fence(conn, update.fence)
            if instances:
                conn.executemany(_UPSERT_INSTANCE, instances)
            if entries:
                conn.executemany(_UPSERT_ENTRY, entries)
            if outbox:
                conn.executemany(_INSERT_OUTBOX, outbox)
            if visits:
                conn.executemany(_INSERT_VISIT, visits)
            if update.after_seq is not None and update.processed_seq is not None:
                conn.execute(
                    "UPDATE journey_progress SET processed_seq = ?", (update.processed_seq,)
                )
            if update.schedule_ticks:
                conn.executemany(
                    "INSERT INTO journey_schedules(journey_id, tick) VALUES (?, ?)"
                    " ON CONFLICT(journey_id) DO UPDATE SET tick = excluded.tick",
                    list(update.schedule_ticks.items()),
                )

    def schedule_ticks(self) -> dict[str, int]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT journey_id, tick FROM journey_schedules"))

    def next_wake(self) -> int | None:
        with self._db.read() as conn:
            wake: int | None = conn.execute(
                "SELECT min(wake_at) FROM journey_instances"
                " WHERE status = 'active' AND wake_at IS NOT NULL"
            ).fetchone()[0]
        return wake

    def history(self, profile_id: str, limit: int) -> tuple[list[Instance], list[Visit]]:
        if limit <= 0:
            return [], []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id, data FROM journey_instances WHERE profile_id = ?"
                " ORDER BY entered_at DESC, rowid DESC LIMIT ?",
                (profile_id, limit),
            ).fetchall()
            visits: list[tuple[int, Visit]] = []
            for chunk in chunks([id_ for id_, _ in rows]):
                visits += [
                    (rowid, Visit(instance_id=i, journey_id=j, version=v, step=s, at=a, outcome=o))
                    for rowid, i, j, v, s, a, o in conn.execute(
                        "SELECT rowid, instance_id, journey_id, version, step, at, outcome"
                        f" FROM journey_visits WHERE instance_id IN ({marks(len(chunk))})",
                        chunk,
                    )
                ]
        visits.sort(key=lambda pair: (pair[1].at, pair[0]))
        return [_decode_instance(data) for _, data in rows], [visit for _, visit in visits]


def _entry(row: tuple[str, str, int, int, int | None, int | None]) -> EntryRecord:
    journey_id, profile_id, entries, active, last_entered_at, last_exited_at = row
    return EntryRecord(
        journey_id=journey_id,
        profile_id=profile_id,
        entries=entries,
        active=active,
        last_entered_at=last_entered_at,
        last_exited_at=last_exited_at,
    )
