"""SQLite :class:`safar.ports.RunStore`: journey instances, their timers, entry records, visits.

An instance is one row: the columns queries need, and the instance encoded whole in ``data``.
Its timer is its own ``wake_at`` column under the partial index ``journey_timers`` (active
instances with a wake-up only, keyed ``(wake_at, lease_until)``), so a claim reads the due end of
that index and skips leased rows without touching the table. Tables: see
:mod:`safar.stores.sqlite.journeys`.

Work-feed partitions (ADR 12): ``partition`` is the one an instance is filed under, and
``journey_partitions`` holds a cursor per partition (``journey_progress`` stays the cursor
without one). A claim for partition p > 0 reads the due end of p in ``journey_partition_timers``
``(partition, wake_at, lease_until)``. That index leaves out partition 0, where an installation
without a feed files every instance: maintaining a second timer index made instance upserts
25-45% slower (a micro-benchmark of upserts alone), for nothing there. So a claim for partition
0 reads ``journey_timers`` and skips the due timers of other partitions; the embedded
configuration steps without a feed, so only a partitioned SQLite installation pays for that.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import msgspec
from msgspec.structs import astuple

from safar.errors import cursor_moved
from safar.model.runs import EntryRecord, Instance, Visit
from safar.ports import JourneyUpdate
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.journeys import chunks, cursor, encode, marks, migrate, transaction
from safar.stores.sqlite.leases import check_fence

_decode_instance = msgspec.json.Decoder(Instance).decode

_UPSERT_INSTANCE = (
    "INSERT INTO journey_instances"
    "(id, journey_id, version, profile_id, status, entered_at, wake_at, data, partition)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
    " journey_id = excluded.journey_id, version = excluded.version,"
    " profile_id = excluded.profile_id, status = excluded.status,"
    " entered_at = excluded.entered_at, wake_at = excluded.wake_at,"
    " lease_owner = NULL, lease_until = NULL, data = excluded.data,"
    " partition = excluded.partition"
)
_MOVE = (
    "UPDATE journey_instances SET partition = ?"
    " WHERE profile_id = ? AND partition = ? AND status = 'active'"
)
_SET_PARTITION_CURSOR = (
    "INSERT INTO journey_partitions(partition, processed_seq) VALUES (?, ?)"
    " ON CONFLICT(partition) DO UPDATE SET processed_seq = excluded.processed_seq"
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
_DUE = (
    "SELECT rowid, data FROM journey_instances"
    " WHERE status = 'active' AND wake_at IS NOT NULL AND wake_at <= ?"
    " AND (lease_until IS NULL OR lease_until <= ?)"
)
_DUE_TIMERS = f"{_DUE} ORDER BY wake_at LIMIT ?"
_DUE_TIMERS_OF_ZERO = f"{_DUE} AND partition = 0 ORDER BY wake_at LIMIT ?"
# ``partition <> 0`` repeats the index's condition, which SQLite must see to use a partial index.
_DUE_TIMERS_OF = f"{_DUE} AND partition = ? AND partition <> 0 ORDER BY wake_at LIMIT ?"
_ENTRY_COLUMNS = "journey_id, profile_id, entries, active, last_entered_at, last_exited_at"


class SqliteRunStore:
    """Instances, timers, entry records, visits and the runtime's cursors; the runtime's outbox
    entries are written here too, in the same transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db)

    def processed_seq(self, partition: int | None = None) -> int:
        with self._db.read() as conn:
            return cursor(conn, "journey", partition)

    def load(
        self, profile_ids: Collection[str], partition: int | None = None
    ) -> tuple[list[Instance], list[EntryRecord]]:
        with self._db.read() as conn:
            return _load(conn, profile_ids, partition)

    def load_filed(
        self, wanted: Mapping[int, Collection[str]]
    ) -> dict[int, tuple[list[Instance], list[EntryRecord]]]:
        with self._db.read() as conn:
            return {partition: _load(conn, ids, partition) for partition, ids in wanted.items()}

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

    def claim_timers(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Instance]:
        if limit <= 0:
            return []
        args: tuple[int, ...]
        if partition is None:
            query, args = _DUE_TIMERS, (now, now, limit)
        elif partition == 0:
            query, args = _DUE_TIMERS_OF_ZERO, (now, now, limit)
        else:
            query, args = _DUE_TIMERS_OF, (now, now, partition, limit)
        # Select, then lease by rowid, in one write transaction: portable to SQLite before 3.35
        # (no RETURNING), and the rows come back in wake-up order.
        with transaction(self._db, "claiming journey timers") as conn:
            rows = conn.execute(query, args).fetchall()
            conn.executemany(
                "UPDATE journey_instances SET lease_owner = ?, lease_until = ? WHERE rowid = ?",
                [(owner, now + lease_ms, rowid) for rowid, _ in rows],
            )
        return [_decode_instance(data) for _, data in rows]

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        due: set[int] = set()
        with self._db.read() as conn:
            for partition in sorted(set(partitions)):
                query = _DUE_TIMERS_OF_ZERO if partition == 0 else _DUE_TIMERS_OF
                args = (now, now, 1) if partition == 0 else (now, now, partition, 1)
                if conn.execute(query, args).fetchone() is not None:
                    due.add(partition)
        return due

    def commit(self, update: JourneyUpdate) -> None:
        self.commit_all([update])

    def commit_all(self, updates: Sequence[JourneyUpdate]) -> None:
        # Encode before taking the write lock: it is held for the inserts only.
        rows = [_Rows.of(update) for update in updates]
        with transaction(self._db, "journey commit") as conn:
            for update, held in zip(updates, rows, strict=True):
                _apply(conn, update, held)

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


@dataclass(frozen=True)
class _Rows:
    """An update's rows, encoded."""

    instances: list[tuple[object, ...]]
    entries: list[tuple[object, ...]]
    outbox: list[tuple[object, ...]]
    visits: list[tuple[object, ...]]

    @classmethod
    def of(cls, update: JourneyUpdate) -> _Rows:
        filed = 0 if update.partition is None else update.partition
        return cls(
            instances=[
                (
                    i.id,
                    i.journey_id,
                    i.version,
                    i.profile_id,
                    i.status,
                    i.entered_at,
                    i.wake_at,
                    data,
                    filed,
                )
                for i, data in zip(update.instances, map(encode, update.instances), strict=True)
            ],
            entries=[
                (
                    e.profile_id,
                    e.journey_id,
                    e.entries,
                    e.active,
                    e.last_entered_at,
                    e.last_exited_at,
                )
                for e in update.entries
            ],
            outbox=[
                (e.key, e.due, e.attempts, e.last_error, e.profile_id, encode(e.command))
                for e in update.outbox
            ],
            # Columns in field order, so a visit is its own row.
            visits=[astuple(v) for v in update.visits],
        )


def _apply(conn: sqlite3.Connection, update: JourneyUpdate, rows: _Rows) -> None:
    """One update's checks and writes, inside the caller's transaction."""
    partition = update.partition
    filed = 0 if partition is None else partition
    if update.after_seq is not None:
        current = cursor(conn, "journey", partition)
        if current != update.after_seq:
            raise cursor_moved("journey runtime", update.after_seq, current, partition)
    if update.fence is not None:
        check_fence(conn, update.fence)
    if rows.instances:
        conn.executemany(_UPSERT_INSTANCE, rows.instances)
    if rows.entries:
        conn.executemany(_UPSERT_ENTRY, rows.entries)
    if rows.outbox:
        conn.executemany(_INSERT_OUTBOX, rows.outbox)
    if rows.visits:
        conn.executemany(_INSERT_VISIT, rows.visits)
    if update.moves:
        conn.executemany(_MOVE, [(target, pid, filed) for pid, target in update.moves.items()])
    if update.after_seq is not None and update.processed_seq is not None:
        if partition is None:
            conn.execute("UPDATE journey_progress SET processed_seq = ?", (update.processed_seq,))
        else:
            conn.execute(_SET_PARTITION_CURSOR, (partition, update.processed_seq))
    if update.schedule_ticks:
        conn.executemany(
            "INSERT INTO journey_schedules(journey_id, tick) VALUES (?, ?)"
            " ON CONFLICT(journey_id) DO UPDATE SET tick = excluded.tick",
            list(update.schedule_ticks.items()),
        )


def _load(
    conn: sqlite3.Connection, profile_ids: Collection[str], partition: int | None
) -> tuple[list[Instance], list[EntryRecord]]:
    instances: list[Instance] = []
    entries: list[EntryRecord] = []
    filed = "" if partition is None else " AND partition = ?"
    for chunk in chunks(list(set(profile_ids))):
        where = f"profile_id IN ({marks(len(chunk))})"
        instances += [
            _decode_instance(data)
            for (data,) in conn.execute(
                f"SELECT data FROM journey_instances WHERE {where} AND status = 'active'{filed}",
                chunk if partition is None else (*chunk, partition),
            )
        ]
        entries += [
            _entry(row)
            for row in conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM journey_entries WHERE {where}", chunk
            )
        ]
    return instances, entries
