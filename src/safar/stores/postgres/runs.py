"""PostgreSQL :class:`safar.ports.RunStore`: journey instances, their timers, entry records,
visits, the runtime's cursor, and the outbox entries a batch writes (tables: see
:mod:`safar.stores.postgres.journeys`).

Several worker processes may share one database:

- :meth:`PgRunStore.commit_all` locks its cursors' rows (``FOR UPDATE``: ``journey_progress``,
  or the partition's row of ``journey_partitions``, inserted first if missing) before checking
  ``after_seq``, so two runtimes committing from the same cursor are ordered by PostgreSQL and
  the second raises. Its upserts take their row locks in key order, so two commits writing
  overlapping rows wait for each other instead of deadlocking. Its checks and its writes take a
  few statements each for all the updates (one per table), so committing many partitions at
  once costs about what committing one does. No pipelines: a process frozen in the middle of
  one would keep its row locks (see :func:`~safar.stores.postgres.db.PgDatabase.write`).
- :meth:`PgRunStore.claim_timers` picks due timers from the partial index ``journey_timers``
  (``journey_partition_timers`` for one partition) with ``FOR UPDATE SKIP LOCKED`` and leases
  them in the same statement: concurrent claimers pass over the rows another one is leasing, so
  no timer is handed to two of them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg
from msgspec.structs import astuple

from safar.errors import cursor_moved
from safar.model.runs import EntryRecord, Instance, OutboxEntry, Visit
from safar.ports import JourneyUpdate
from safar.stores.postgres.db import PgDatabase
from safar.stores.postgres.journeys import (
    claim_params,
    columns,
    encode,
    migrate,
    read_cursor,
    scalar,
)
from safar.stores.postgres.leases import check_fences

_decode_instance = msgspec.json.Decoder(Instance).decode

_ENTRY_COLUMNS = "journey_id, profile_id, entries, active, last_entered_at, last_exited_at"
_VISIT_COLUMNS = "instance_id, journey_id, version, step, at, outcome"

#: Upserts whole instances, each filed under its commit's partition (the last column);
#: committing an instance releases its timer lease (its work is done).
_UPSERT_INSTANCES = (
    "INSERT INTO journey_instances"
    "(id, journey_id, version, profile_id, status, entered_at, wake_at, data, partition)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[],"
    " %b::bigint[], %b::bigint[], %b::bytea[], %b::int[])"
    " ON CONFLICT(id) DO UPDATE SET journey_id = excluded.journey_id,"
    " version = excluded.version, profile_id = excluded.profile_id, status = excluded.status,"
    " entered_at = excluded.entered_at, wake_at = excluded.wake_at, lease_owner = NULL,"
    " lease_until = NULL, data = excluded.data, partition = excluded.partition"
)
#: A handover: the active instances of each profile filed under the handing partition (source)
#: go to the profile's new one (target). ``journey_instances_profile`` finds them; the batch's
#: own instances are already stored (and locked) by then.
_MOVE_INSTANCES = (
    "UPDATE journey_instances AS i SET partition = m.target"
    " FROM unnest(%b::text[], %b::int[], %b::int[]) AS m(profile_id, target, source)"
    " WHERE i.profile_id = m.profile_id AND i.partition = m.source AND i.status = 'active'"
)
#: The partitions' cursors, moved to where their commits reached.
_SET_PARTITION_CURSORS = (
    "UPDATE journey_partitions AS j SET processed_seq = c.seq"
    " FROM unnest(%b::int[], %b::bigint[]) AS c(partition, seq) WHERE j.partition = c.partition"
)
_UPSERT_ENTRIES = (
    "INSERT INTO journey_entries"
    "(profile_id, journey_id, entries, active, last_entered_at, last_exited_at)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::int[], %b::int[], %b::bigint[],"
    " %b::bigint[])"
    " ON CONFLICT(profile_id, journey_id) DO UPDATE SET entries = excluded.entries,"
    " active = excluded.active, last_entered_at = excluded.last_entered_at,"
    " last_exited_at = excluded.last_exited_at"
)
#: A key already stored (pending, delivered or dead), or earlier in the batch, is skipped.
_INSERT_OUTBOX = (
    "INSERT INTO journey_outbox(key, status, due, attempts, last_error, profile_id, command)"
    " SELECT key, 'pending', due, attempts, last_error, profile_id, command"
    " FROM unnest(%b::text[], %b::bigint[], %b::int[], %b::text[], %b::text[], %b::bytea[])"
    " AS o(key, due, attempts, last_error, profile_id, command)"
    " ON CONFLICT(key) DO NOTHING"
)
#: In the batch's order, so ``position`` orders visits made at the same millisecond.
_APPEND_VISITS = (
    f"INSERT INTO journey_visits({_VISIT_COLUMNS}) SELECT {_VISIT_COLUMNS}"
    " FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::bigint[], %b::text[])"
    f" WITH ORDINALITY AS v({_VISIT_COLUMNS}, n) ORDER BY n"
)
_UPSERT_SCHEDULES = (
    "INSERT INTO journey_schedules(journey_id, tick)"
    " SELECT * FROM unnest(%b::text[], %b::bigint[])"
    " ON CONFLICT(journey_id) DO UPDATE SET tick = excluded.tick"
)

#: The earliest due timers whose lease is free or over, leased in the same statement.
#: ``status = 'active' AND wake_at <= now`` implies the predicate of ``journey_timers``, so that
#: index serves the order and the limit; SKIP LOCKED passes over timers another claimer (or a
#: commit) holds right now. RETURNING has no order of its own: the outer query restores it.
_CLAIM_TIMERS = (
    "WITH due AS ("
    " SELECT id FROM journey_instances"
    " WHERE status = 'active' AND wake_at <= %(now)s"
    " AND (lease_until IS NULL OR lease_until <= %(now)s){partition}"
    " ORDER BY wake_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    "), leased AS ("
    " UPDATE journey_instances AS i SET lease_owner = %(owner)s, lease_until = %(until)s"
    " FROM due WHERE i.id = due.id RETURNING i.wake_at, i.data"
    ") SELECT data FROM leased ORDER BY wake_at"
)
#: The same for one partition: ``partition = p`` with the timers' predicate selects
#: ``journey_partition_timers(partition, wake_at)``, read in ``wake_at`` order from ``p``'s start.
_CLAIM_ALL_TIMERS = _CLAIM_TIMERS.format(partition="")
_CLAIM_PARTITION_TIMERS = _CLAIM_TIMERS.format(partition=" AND partition = %(partition)s")


class PgRunStore:
    """Instances, timers, entry records, visits and the runtime's cursor; the runtime's outbox
    entries are written here too, in the same transaction."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        migrate(db)

    def processed_seq(self, partition: int | None = None) -> int:
        with self._db.read() as conn:
            return read_cursor(conn, "journey", partition)

    def load(
        self, profile_ids: Collection[str], partition: int | None = None
    ) -> tuple[list[Instance], list[EntryRecord]]:
        if not profile_ids:
            return [], []
        wanted = list(set(profile_ids))
        active = (
            "SELECT data FROM journey_instances WHERE profile_id = ANY(%s) AND status = 'active'"
        )
        with self._db.read() as conn:
            if partition is None:
                instances = conn.execute(active, (wanted,)).fetchall()
            else:
                filed = f"{active} AND partition = %s"
                instances = conn.execute(filed, (wanted, partition)).fetchall()
            entries = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM journey_entries WHERE profile_id = ANY(%s)",
                (wanted,),
            ).fetchall()
        return [_decode_instance(data) for (data,) in instances], [_entry(row) for row in entries]

    def load_filed(
        self, wanted: Mapping[int, Collection[str]]
    ) -> dict[int, tuple[list[Instance], list[EntryRecord]]]:
        found: dict[int, tuple[list[Instance], list[EntryRecord]]] = {p: ([], []) for p in wanted}
        everyone = sorted({pid for ids in wanted.values() for pid in ids})
        if not everyone:
            return found
        pairs = {(p, pid) for p, ids in wanted.items() for pid in ids}
        with self._db.read() as conn:
            instances = conn.execute(
                "SELECT partition, profile_id, data FROM journey_instances"
                " WHERE profile_id = ANY(%s) AND status = 'active' AND partition = ANY(%s)",
                (everyone, sorted(wanted)),
            ).fetchall()
            entries = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM journey_entries WHERE profile_id = ANY(%s)",
                (everyone,),
            ).fetchall()
        for partition, profile_id, data in instances:
            if (partition, profile_id) in pairs:
                found[partition][0].append(_decode_instance(data))
        for row in entries:
            record = _entry(row)
            for partition, ids in wanted.items():
                if record.profile_id in ids:
                    found[partition][1].append(record)
        return found

    def instances(self, instance_ids: Collection[str]) -> list[Instance]:
        if not instance_ids:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM journey_instances WHERE id = ANY(%s)", (list(set(instance_ids)),)
            ).fetchall()
        return [_decode_instance(data) for (data,) in rows]

    def claim_timers(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Instance]:
        if limit <= 0:
            return []
        params = claim_params(now, limit, owner, lease_ms, partition)
        query = _CLAIM_ALL_TIMERS if partition is None else _CLAIM_PARTITION_TIMERS
        with self._db.write() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_decode_instance(data) for (data,) in rows]

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        if not partitions:
            return set()
        # One probe of journey_partition_timers per partition, not a scan of every due timer.
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT p FROM unnest(%s::int[]) AS p WHERE EXISTS ("
                " SELECT 1 FROM journey_instances WHERE partition = p AND status = 'active'"
                " AND wake_at <= %s AND (lease_until IS NULL OR lease_until <= %s))",
                (sorted(set(partitions)), now, now),
            ).fetchall()
        return {p for (p,) in rows}

    def commit(self, update: JourneyUpdate) -> None:
        self.commit_all([update])

    def commit_all(self, updates: Sequence[JourneyUpdate]) -> None:
        # Rows are built (and encoded) before the transaction: its locks are held for the
        # writes only. The checks of all updates take a few statements, and so do the writes
        # (below), so a commit of many partitions costs about what a commit of one does.
        # Updates of distinct cursors go out as one statement per table: applying them in turn
        # would store the same (rows are filed by partition, and a handover moves
        # only what its own partition holds). Two updates of one cursor are applied in turn.
        cursors = [u.partition for u in updates]
        groups = [updates] if len(set(cursors)) == len(cursors) else [[u] for u in updates]
        rows = [_Rows.of(group) for group in groups]
        with self._db.write() as conn:
            _check_all(conn, updates)
            for held in rows:
                held.write(conn)

    def schedule_ticks(self) -> dict[str, int]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT journey_id, tick FROM journey_schedules").fetchall())

    def next_wake(self) -> int | None:
        with self._db.read() as conn:
            wake: int | None = scalar(
                conn,
                "SELECT min(wake_at) FROM journey_instances"
                " WHERE status = 'active' AND wake_at IS NOT NULL",
            )
        return wake

    def history(self, profile_id: str, limit: int) -> tuple[list[Instance], list[Visit]]:
        if limit <= 0:
            return [], []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id, data FROM journey_instances WHERE profile_id = %s"
                " ORDER BY entered_at DESC, position DESC LIMIT %s",
                (profile_id, limit),
            ).fetchall()
            visits = conn.execute(
                f"SELECT {_VISIT_COLUMNS} FROM journey_visits WHERE instance_id = ANY(%s)"
                " ORDER BY at, position",
                ([instance_id for instance_id, _ in rows],),
            ).fetchall()
        return [_decode_instance(data) for _, data in rows], [_visit(row) for row in visits]


@dataclass(frozen=True)
class _Rows:
    """The rows of some updates of distinct cursors, as the statements of :meth:`write` take
    them: one statement per table for all of them."""

    instances: list[tuple[Any, ...]]
    entries: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    visits: list[tuple[Any, ...]]
    ticks: list[tuple[str, int]]
    moves: list[tuple[str, int, int]]
    #: (partition or None for the cursor without one, processed_seq).
    cursors: list[tuple[int | None, int]]

    @classmethod
    def of(cls, updates: Sequence[JourneyUpdate]) -> _Rows:
        # Without a partition, instances are filed under 0 (the contract), and moved from it.
        filed = [(0 if u.partition is None else u.partition, u) for u in updates]
        ticks: dict[str, int] = {}
        for update in updates:
            ticks.update(update.schedule_ticks)
        return cls(
            instances=_instance_rows([(i, p) for p, u in filed for i in u.instances]),
            entries=_entry_rows([e for u in updates for e in u.entries]),
            outbox=_outbox_rows([e for u in updates for e in u.outbox]),
            # Columns in field order, and in the updates' order.
            visits=[astuple(visit) for u in updates for visit in u.visits],
            ticks=sorted(ticks.items()),
            moves=sorted((pid, target, p) for p, u in filed for pid, target in u.moves.items()),
            cursors=[
                (u.partition, u.processed_seq)
                for u in updates
                if u.after_seq is not None and u.processed_seq is not None
            ],
        )

    def write(self, conn: psycopg.Connection) -> None:
        """Send the writes, inside the caller's transaction (the checks are done)."""
        _write(conn, _UPSERT_INSTANCES, self.instances)
        _write(conn, _UPSERT_ENTRIES, self.entries)
        _write(conn, _INSERT_OUTBOX, self.outbox)
        _write(conn, _APPEND_VISITS, self.visits)
        _write(conn, _UPSERT_SCHEDULES, self.ticks)
        _write(conn, _MOVE_INSTANCES, self.moves)
        for partition, seq in self.cursors:
            if partition is None:
                conn.execute("UPDATE journey_progress SET processed_seq = %s WHERE id = 1", (seq,))
        _write(conn, _SET_PARTITION_CURSORS, [(p, s) for p, s in self.cursors if p is not None])


def _check_all(conn: psycopg.Connection, updates: Sequence[JourneyUpdate]) -> None:
    """Raise unless every update's cursor is at its ``after_seq`` (an earlier update of the
    same cursor counting as done) and its fence holds, locking those rows until the commit
    ends; a few statements for all the updates. A partition's cursor row is made (at 0) by the
    first commit naming it; of two commits making it at once, the second's insert waits for
    the first to end, then does nothing, and its ``FOR UPDATE`` reads the first's cursor: the
    same order as for a row that was there."""
    checked = [u for u in updates if u.after_seq is not None]
    stored: dict[int | None, int] = {}
    if any(u.partition is None for u in checked):
        stored[None] = scalar(
            conn, "SELECT processed_seq FROM journey_progress WHERE id = 1 FOR UPDATE"
        )
    partitions = sorted({u.partition for u in checked if u.partition is not None})
    if partitions:
        conn.execute(
            "INSERT INTO journey_partitions(partition, processed_seq)"
            " SELECT p, 0 FROM unnest(%s::int[]) AS p ON CONFLICT(partition) DO NOTHING",
            (partitions,),
        )
        stored.update(
            conn.execute(
                "SELECT partition, processed_seq FROM journey_partitions"
                " WHERE partition = ANY(%s) ORDER BY partition FOR UPDATE",
                (partitions,),
            ).fetchall()
        )
    for update in checked:
        current = stored[update.partition]
        if current != update.after_seq:
            raise cursor_moved("journey runtime", update.after_seq, current, update.partition)
        if update.processed_seq is not None:
            stored[update.partition] = update.processed_seq  # the next update of it builds on it
    check_fences(conn, [u.fence for u in updates if u.fence is not None])


def _write(conn: psycopg.Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Run an ``unnest`` statement over ``rows``, one array per column; nothing when empty."""
    if rows:
        conn.execute(statement, columns(rows))


def _instance_rows(instances: list[tuple[Instance, int]]) -> list[tuple[Any, ...]]:
    """One row per instance id (with the partition it is filed under), the batch's last version
    of it winning as a second upsert would (one statement cannot upsert a row twice), in id
    order, the order rows are locked."""
    latest = {instance.id: (instance, partition) for instance, partition in instances}
    return [
        (*_instance_columns(i), encode(i), partition)
        for _, (i, partition) in sorted(latest.items())
    ]


def _instance_columns(i: Instance) -> tuple[Any, ...]:
    return (i.id, i.journey_id, i.version, i.profile_id, i.status, i.entered_at, i.wake_at)


def _entry_rows(entries: list[EntryRecord]) -> list[tuple[Any, ...]]:
    """One row per (profile, journey), the last winning, in key order (see _instance_rows)."""
    latest = {(e.profile_id, e.journey_id): e for e in entries}
    return [
        (e.profile_id, e.journey_id, e.entries, e.active, e.last_entered_at, e.last_exited_at)
        for _, e in sorted(latest.items())
    ]


def _outbox_rows(entries: list[OutboxEntry]) -> list[tuple[Any, ...]]:
    """Rows in key order (see _instance_rows); the sort is stable, so of two entries with one
    key the first is inserted and the second skipped, as in separate commits."""
    ordered = sorted(entries, key=lambda entry: entry.key)
    return [
        (e.key, e.due, e.attempts, e.last_error, e.profile_id, encode(e.command)) for e in ordered
    ]


def _entry(row: tuple[Any, ...]) -> EntryRecord:
    journey_id, profile_id, entries, active, last_entered_at, last_exited_at = row
    return EntryRecord(
        journey_id=journey_id,
        profile_id=profile_id,
        entries=entries,
        active=active,
        last_entered_at=last_entered_at,
        last_exited_at=last_exited_at,
    )


def _visit(row: tuple[Any, ...]) -> Visit:
    instance_id, journey_id, version, step, at, outcome = row
    return Visit(
        instance_id=instance_id,
        journey_id=journey_id,
        version=version,
        step=step,
        at=at,
        outcome=outcome,
    )
