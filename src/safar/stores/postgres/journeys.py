"""PostgreSQL journey state (migration component ``journeys``) and the
:class:`safar.ports.JourneyStore`.

This module owns the schema of every journey table and the helpers the other journey adapters
share; the ports over those tables live beside it: :mod:`~safar.stores.postgres.runs`,
:mod:`~safar.stores.postgres.outbox` and :mod:`~safar.stores.postgres.delivery`. The layout is
the SQLite one (ADR 8, :mod:`safar.stores.sqlite.journeys`), in PostgreSQL's terms:

- ``journey_versions(journey_id, version)``: the status, and the version encoded whole.
- ``journey_instances``: one row per instance, keyed by ``id``; the columns queries need, the
  lease (``lease_owner``, ``lease_until``) and the instance encoded whole in ``data``. **The
  timer is the row's own ``wake_at``** under the partial index ``journey_timers(wake_at) WHERE
  status = 'active' AND wake_at IS NOT NULL``: it holds only instances that wait, earliest first,
  so a claim reads its due end and ``next_wake`` is one probe. The lease columns are in no
  index, so leasing a timer can be a HOT update (no index entry written); the price is that a
  claim reads a leased due timer's row to see its lease, and only due timers are ever read.
  ``journey_instances_profile(profile_id, entered_at, position)`` serves both a batch's ``load``
  and ``history`` newest first; ``position`` (an identity) is the insertion order, which breaks
  ties of ``entered_at`` as SQLite's rowid does. ``partition`` is the work-feed partition the
  instance is filed under (ADR 12; 0 without a feed); ``journey_partition_timers(partition,
  wake_at)``, with the predicate of ``journey_timers``, serves a claim for one partition the
  way ``journey_timers`` serves a claim across all of them.
- ``journey_entries(profile_id, journey_id)``: the re-entry counters, keyed for ``load``.
- ``journey_visits``: appended, ``position`` ordering visits made at the same millisecond.
- ``journey_progress``: one row, the runtime's ``processed_seq``; a commit locks it ``FOR
  UPDATE`` before checking it, so of two runtimes racing from one cursor the second waits for
  the first, sees its cursor and fails. ``journey_partitions(partition)``: the cursor of each
  work-feed partition, a row from the first commit naming it, locked the same way.
- ``journey_schedules(journey_id)``: the cron instant each scheduled entry last ran for.
- ``journey_outbox``: one row per command key, kept after settlement (the key is what makes a
  re-committed batch skip the command). Pending rows sit under the partial index
  ``journey_outbox_due(due)``, dead ones under ``journey_outbox_dead(dead_seq)``; ``dead_seq``
  comes from the sequence ``journey_outbox_dead_seq``, as concurrent settlers cannot agree on a
  ``max() + 1``.
- ``journey_decisions``, ``journey_sends``: appended by settlements, indexed by ``(profile_id,
  at)`` with ``position`` breaking ties newest first.
- ``journey_consents(profile_id, channel, category)``: the latest choice.
- ``journey_inbox(id)``: the item as added, its read and dismissed marks in columns.

Every text column that is a key or ordered by is ``COLLATE "C"``: ids then sort by code point,
as Python and SQLite compare them, whatever the database's locale, and byte comparison is the
cheapest one in an index. Times (milliseconds) and seqs are BIGINT. Whole structs are msgspec JSON
in BYTEA, as in the SQLite store: everything customers send arrives as JSON, so JSON holds any
value a journey context picks up (MessagePack refuses integers beyond 64 bits).

Batches bind one array per column (``= ANY(%s)``, ``INSERT … SELECT FROM unnest(…)``): a
constant number of statements per table, whatever the batch size. The arrays of bulk writes are
bound in binary (``%b``): encoded structs then travel as bytes rather than as hex text inside an
array literal the server must parse, which made a 20,000-instance commit ~40% faster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import psycopg

from safar.errors import StoreError
from safar.model.journeys import JourneyVersion
from safar.stores.postgres.db import PgDatabase, PgMigration

_MIGRATIONS: list[PgMigration] = [
    """
    CREATE TABLE journey_versions(
        journey_id TEXT COLLATE "C" NOT NULL,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (journey_id, version)
    );
    CREATE TABLE journey_instances(
        id TEXT COLLATE "C" PRIMARY KEY,
        position BIGINT GENERATED ALWAYS AS IDENTITY,
        journey_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        profile_id TEXT COLLATE "C" NOT NULL,
        status TEXT NOT NULL,
        entered_at BIGINT NOT NULL,
        wake_at BIGINT,
        lease_owner TEXT,
        lease_until BIGINT,
        data BYTEA NOT NULL
    );
    CREATE INDEX journey_instances_profile
        ON journey_instances(profile_id, entered_at, position);
    CREATE INDEX journey_timers ON journey_instances(wake_at)
        WHERE status = 'active' AND wake_at IS NOT NULL;
    CREATE TABLE journey_entries(
        profile_id TEXT COLLATE "C" NOT NULL,
        journey_id TEXT COLLATE "C" NOT NULL,
        entries INTEGER NOT NULL,
        active INTEGER NOT NULL,
        last_entered_at BIGINT,
        last_exited_at BIGINT,
        PRIMARY KEY (profile_id, journey_id)
    );
    CREATE TABLE journey_visits(
        position BIGINT GENERATED ALWAYS AS IDENTITY,
        instance_id TEXT COLLATE "C" NOT NULL,
        journey_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        step TEXT NOT NULL,
        at BIGINT NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX journey_visits_instance ON journey_visits(instance_id);
    CREATE TABLE journey_progress(
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        processed_seq BIGINT NOT NULL
    );
    INSERT INTO journey_progress(id, processed_seq) VALUES (1, 0);
    CREATE TABLE journey_schedules(
        journey_id TEXT COLLATE "C" PRIMARY KEY,
        tick BIGINT NOT NULL
    );
    CREATE TABLE journey_outbox(
        key TEXT COLLATE "C" PRIMARY KEY,
        status TEXT NOT NULL,
        due BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        profile_id TEXT NOT NULL,
        dead_seq BIGINT,
        command BYTEA
    );
    CREATE INDEX journey_outbox_due ON journey_outbox(due) WHERE status = 'pending';
    CREATE INDEX journey_outbox_dead ON journey_outbox(dead_seq) WHERE status = 'dead';
    CREATE SEQUENCE journey_outbox_dead_seq AS BIGINT;
    CREATE TABLE journey_decisions(
        position BIGINT GENERATED ALWAYS AS IDENTITY,
        profile_id TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        data BYTEA NOT NULL
    );
    CREATE INDEX journey_decisions_profile ON journey_decisions(profile_id, at, position);
    CREATE TABLE journey_sends(
        position BIGINT GENERATED ALWAYS AS IDENTITY,
        message_key TEXT NOT NULL,
        profile_id TEXT COLLATE "C" NOT NULL,
        journey_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        category TEXT NOT NULL,
        priority INTEGER NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX journey_sends_profile ON journey_sends(profile_id, at);
    CREATE TABLE journey_consents(
        profile_id TEXT COLLATE "C" NOT NULL,
        channel TEXT COLLATE "C" NOT NULL,
        category TEXT COLLATE "C" NOT NULL,
        subscribed BOOLEAN NOT NULL,
        at BIGINT NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (profile_id, channel, category)
    );
    CREATE TABLE journey_inbox(
        id TEXT COLLATE "C" PRIMARY KEY,
        position BIGINT GENERATED ALWAYS AS IDENTITY,
        profile_id TEXT COLLATE "C" NOT NULL,
        created_at BIGINT NOT NULL,
        read_at BIGINT,
        dismissed_at BIGINT,
        data BYTEA NOT NULL
    );
    CREATE INDEX journey_inbox_profile ON journey_inbox(profile_id, created_at, position)
    """,
    # Work-feed partitions (ADR 12). A constant default adds the column without rewriting the
    # table; existing instances are filed under partition 0.
    """
    ALTER TABLE journey_instances ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX journey_partition_timers ON journey_instances(partition, wake_at)
        WHERE status = 'active' AND wake_at IS NOT NULL;
    CREATE TABLE journey_partitions(
        partition INTEGER PRIMARY KEY,
        processed_seq BIGINT NOT NULL
    )
    """,
]

encode = msgspec.json.Encoder().encode
_decode_version = msgspec.json.Decoder(JourneyVersion).decode

_SAVE_VERSION = (
    "INSERT INTO journey_versions(journey_id, version, status, data) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT(journey_id, version) DO UPDATE SET status = excluded.status, data = excluded.data"
)


def migrate(db: PgDatabase) -> None:
    """Create or upgrade the journey tables (every journey adapter calls it; it is idempotent)."""
    db.migrate("journeys", _MIGRATIONS)


def scalar(conn: psycopg.Connection, query: str, *params: object) -> Any:
    """The one value of a query that always gives one row (an aggregate, the cursor row)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise StoreError(f"PostgreSQL gave no row for {query!r}")
    return row[0]


def read_cursor(conn: psycopg.Connection, processor: str, partition: int | None) -> int:
    """A processor's cursor (``processor`` names its tables ``<processor>_progress`` and
    ``<processor>_partitions``): the one without a partition (None), or a work-feed
    partition's (0 until first set)."""
    if partition is None:
        seq: int = scalar(conn, f"SELECT processed_seq FROM {processor}_progress WHERE id = 1")
        return seq
    seq = scalar(
        conn,
        f"SELECT coalesce((SELECT processed_seq FROM {processor}_partitions"
        " WHERE partition = %s), 0)",
        partition,
    )
    return seq


def claim_params(
    now: int, limit: int, owner: str, lease_ms: int, partition: int | None
) -> dict[str, Any]:
    """The named parameters of a claim of due rows (timers, memberships) with leases."""
    return {
        "now": now,
        "limit": limit,
        "owner": owner,
        "until": now + lease_ms,
        "partition": partition,
    }


def columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """``rows`` as one list per column: the arrays ``unnest(%b::text[], …)`` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


class PgJourneyStore:
    """Journey versions, one row each, the version encoded whole."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        migrate(db)

    def save(self, version: JourneyVersion) -> None:
        row = (version.journey_id, version.version, version.status, encode(version))
        with self._db.write() as conn:
            conn.execute(_SAVE_VERSION, row)

    def get(self, journey_id: str, version: int | None = None) -> JourneyVersion | None:
        if version is None:
            found = self._select("journey_id = %s ORDER BY version DESC LIMIT 1", journey_id)
        else:
            found = self._select("journey_id = %s AND version = %s", journey_id, version)
        return found[0] if found else None

    def versions(self, journey_id: str) -> list[JourneyVersion]:
        return self._select("journey_id = %s ORDER BY version", journey_id)

    def all(self) -> list[JourneyVersion]:
        return self._select("true ORDER BY journey_id, version")

    def _select(self, where: str, *params: object) -> list[JourneyVersion]:
        with self._db.read() as conn:
            rows = conn.execute(f"SELECT data FROM journey_versions WHERE {where}", params)
            return [_decode_version(data) for (data,) in rows]
