"""``safar migrate --to postgresql://…``: copy an embedded (SQLite) installation into PostgreSQL,
verified by counts and checksums.

What is copied:

- The event log, event by event with its ``seq`` (the processors' cursors and the profiles'
  timelines refer to it), together with the dedupe window: a client retrying a batch it sent
  before the move is still recognised.
- Every table of the state database, row for row into the table of the same name: the
  PostgreSQL stores keep the SQLite layout (same tables, same columns), so a row means the same
  on both sides. Rows go in rowid order, so the columns PostgreSQL adds to stand in for SQLite's
  rowid (``position``, ``created_order``: identities filled as rows arrive) keep the order the
  stores read by. Then every sequence of the schema is moved past the values copied, so new rows
  neither collide with copied ids nor sort before copied rows (dead letters' ``dead_seq``).

Leases are not copied (they name processes of the old installation), nor schema versions (the
target's stores record their own).

The target must hold no data (a fresh database or schema; tables a failed run left empty are
fine): this is checked before the stores create their tables there, and again in the copying
transaction. Everything is written in that one transaction: the target ends up with all of it or
none of it. Safar must be stopped: the migration is refused while a worker holds a lease on the
installation, and fails if the event log or the state database changes meanwhile (new events, a
worker committing) rather than leave the change behind.

Verification reads both sides back: each table's row count and an order-independent checksum
of its rows (values normalized to bytes, integers, text and null), the event logs through their
ports, encoded, in ``seq`` order, and the event log's head (last seq and count).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

from safar.config import Settings
from safar.errors import SafarError
from safar.ports import Clock, EventLog, LeaseStore
from safar.stores.bundle import open_sqlite_stores
from safar.stores.postgres import open_postgres_stores
from safar.stores.postgres.db import PgDatabase, redact
from safar.stores.postgres.events import PgEventLog

#: State tables that are not copied: schema versions (the target's stores create their own) and
#: process leases (they name processes of the old installation).
_NOT_COPIED = frozenset({"schema_versions", "leases"})
#: Tables the stores seed with one row of their own: empty means only that row.
_NOT_SEEDED = {
    "event_head": "WHERE last_seq <> 0",
    **{
        table: "WHERE processed_seq <> 0"
        for table in ("profile_progress", "journey_progress", "audience_progress")
    },
}
#: Sequences no column owns, with the ``(table, column)`` they number.
_FREE_SEQUENCES = {"journey_outbox_dead_seq": ("journey_outbox", "dead_seq")}
#: Rows read and written per round trip.
_PAGE = 5_000

#: What the migration reports as it goes (``print`` on the command line).
Report = Callable[[str], None]


class MigrationError(SafarError):
    """The migration could not be done, or its verification failed; the target holds no data."""


@dataclass(frozen=True)
class Copied:
    """One table (or the event log, named ``events``) copied and verified."""

    name: str
    rows: int
    checksum: str


def migrate_to_postgres(
    settings: Settings, url: str, clock: Clock, *, report: Report = print
) -> list[Copied]:
    """Copy the embedded installation ``settings`` describes into the PostgreSQL database at
    ``url``, which must hold no data, and verify it; returns what was copied, the event log
    first. Raises :class:`MigrationError` (the target left without data) when anything
    disagrees."""
    _require_installation(settings)
    with open_sqlite_stores(settings, clock) as source:
        _refuse_if_running(source.leases, clock.now_ms(), settings)
        db = PgDatabase(url, max_size=1, name="migrate")
        try:
            return _migrate(source.events, db, settings, clock, report)
        finally:
            db.close()


def _migrate(
    events: EventLog, db: PgDatabase, settings: Settings, clock: Clock, report: Report
) -> list[Copied]:
    # Before the stores' migrations touch the target: a database holding another installation
    # is refused as it was found.
    with db.read() as conn:
        _refuse_unless_empty(conn, _existing_tables(conn), db.url)
    _create_tables(settings, db.url, clock)
    with _read_only(settings) as state:
        return _copy_all(events, state, db, settings, clock, report)


def _require_installation(settings: Settings) -> None:
    """Opening the stores would create an empty installation: a mistyped ``--data-dir`` would
    then migrate nothing, successfully."""
    missing = [
        path.name
        for path in (settings.database_path, settings.events_database_path)
        if not path.is_file()
    ]
    if missing:
        raise MigrationError(
            f"no embedded installation in {settings.data_dir} ({' and '.join(missing)} missing):"
            " give the data directory of the installation to move with --data-dir"
        )


def _refuse_if_running(leases: LeaseStore, now: int, settings: Settings) -> None:
    """A worker holds its leases while it runs: refuse at once rather than fail (or, if it
    happens to be idle, succeed while it is still serving the old installation)."""
    held = leases.holders(now)
    if held:
        named = ", ".join(f"{name} by {owner}" for name, owner in sorted(held.items()))
        raise MigrationError(
            f"Safar is running on {settings.data_dir} (leases held: {named}): stop it first;"
            f" after a crash, its leases expire within {settings.workers.lease_seconds:g} s"
        )


def _create_tables(settings: Settings, url: str, clock: Clock) -> None:
    """Every table the PostgreSQL stores use, through the stores' own migrations."""
    target = msgspec.structs.replace(
        settings, storage=msgspec.structs.replace(settings.storage, url=url)
    )
    open_postgres_stores(target, clock).close()


def _read_only(settings: Settings) -> closing[sqlite3.Connection]:
    uri = f"{settings.database_path.resolve().as_uri()}?mode=ro"
    return closing(sqlite3.connect(uri, uri=True))


def _copy_all(
    events: EventLog,
    state: sqlite3.Connection,
    db: PgDatabase,
    settings: Settings,
    clock: Clock,
    report: Report,
) -> list[Copied]:
    tables = _state_tables(state)
    before = _source_version(events, state)
    window_ms = int(settings.ingest.dedupe_window_hours * 3600 * 1000)
    with db.write() as conn:
        _refuse_unless_empty(conn, ("events", *tables), db.url)
        report(f"events: {_copy_events(events, conn, clock.now_ms() - window_ms)} copied")
        for table in tables:
            report(f"{table}: {_copy_table(state, conn, table)} rows copied")
        _continue_sequences(conn)
        # Before verifying, so that a change is not reported as a bad copy; after, so that a
        # change made while verifying is caught too.
        _require_unchanged(events, state, before)
        copied = [_verify_events(events, conn)]
        copied += [_verify_table(state, conn, table) for table in tables]
        _require_unchanged(events, state, before)
    return copied


def _state_tables(state: sqlite3.Connection) -> list[str]:
    names = [
        name
        for (name,) in state.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            r" AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name"
        )
    ]
    return [name for name in names if name not in _NOT_COPIED]


def _source_version(events: EventLog, state: sqlite3.Connection) -> tuple[int, int, int]:
    """What changes when anything is written to the installation: the event log's last seq and
    count, and the state database's ``data_version`` (moved by every commit of another
    connection)."""
    (data_version,) = state.execute("PRAGMA data_version").fetchone()
    return events.last_seq(), events.count(), int(data_version)


def _require_unchanged(
    events: EventLog, state: sqlite3.Connection, before: tuple[int, int, int]
) -> None:
    if _source_version(events, state) != before:
        raise MigrationError(
            "the installation changed while migrating (events arrived, or a worker"
            " committed): stop Safar and run the migration again"
        )


def _existing_tables(conn: psycopg.Connection) -> list[str]:
    """The tables of the current schema (none in a fresh one)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
    ).fetchall()
    return sorted(name for (name,) in rows if name not in _NOT_COPIED)


def _refuse_unless_empty(conn: psycopg.Connection, tables: Iterable[str], url: str) -> None:
    filled = [
        table
        for table in tables
        if conn.execute(
            f'SELECT EXISTS (SELECT 1 FROM "{table}" {_NOT_SEEDED.get(table, "")})'
        ).fetchone()
        == (True,)
    ]
    if filled:
        named = ", ".join(filled[:3]) + (f" and {len(filled) - 3} more" if len(filled) > 3 else "")
        raise MigrationError(
            f"the PostgreSQL database at {redact(url)} already holds data (in {named}):"
            " migrate into an empty database or schema"
        )


# -- copying -----------------------------------------------------------------------------------


def _copy_events(events: EventLog, conn: psycopg.Connection, dedupe_since: int) -> int:
    count = 0
    for page in _pages(events):
        PgEventLog.import_history(conn, page, dedupe_since=dedupe_since)
        count += len(page)
    return count


def _pages(events: EventLog) -> Iterator[list[Any]]:
    after = 0
    while page := events.read(after, _PAGE):
        yield page
        after = page[-1].seq


def _copy_table(state: sqlite3.Connection, conn: psycopg.Connection, table: str) -> int:
    """Copy ``table``'s rows in rowid order; how many."""
    columns = _columns(state, table)
    types = _target_columns(conn, table)
    missing = [c for c in columns if c not in types]
    if missing:
        raise MigrationError(
            f"table {table}: the PostgreSQL schema lacks column(s) {', '.join(missing)};"
            " this Safar cannot migrate this installation"
        )
    # The seeded single rows make way for the copied ones.
    conn.execute(f'DELETE FROM "{table}"')
    booleans = [types[column] == "boolean" for column in columns]
    count = 0
    with conn.cursor().copy(f'COPY "{table}" ({_listed(columns)}) FROM STDIN') as copy:
        for row in _rows(state, table, columns):
            copy.write_row(_for_postgres(row, booleans))
            count += 1
    return count


def _columns(state: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in state.execute(f'PRAGMA table_info("{table}")')]


def _listed(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _has_rowid(state: sqlite3.Connection, table: str) -> bool:
    try:
        state.execute(f'SELECT rowid FROM "{table}" LIMIT 0')
    except sqlite3.OperationalError:
        return False  # a WITHOUT ROWID table: its primary key orders it
    return True


def _rows(
    state: sqlite3.Connection, table: str, columns: Sequence[str]
) -> Iterable[tuple[Any, ...]]:
    order = " ORDER BY rowid" if _has_rowid(state, table) else ""
    return state.execute(f'SELECT {_listed(columns)} FROM "{table}"{order}')


def _target_columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """Column -> PostgreSQL data type, for the table in the current schema."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    ).fetchall()
    if not rows:
        raise MigrationError(f"table {table} has no counterpart in the PostgreSQL schema")
    return dict(rows)


def _for_postgres(row: Sequence[Any], booleans: Sequence[bool]) -> list[Any]:
    """SQLite stores booleans as 0/1; PostgreSQL wants them typed."""
    return [
        bool(value) if boolean and value is not None else value
        for value, boolean in zip(row, booleans, strict=True)
    ]


def _continue_sequences(conn: psycopg.Connection) -> None:
    """Move every sequence of the schema past the values its column holds, so new rows do not
    collide with copied ids, nor sort before copied rows. The copied ids were given explicitly,
    which PostgreSQL does not count against a sequence."""
    for sequence, table, column in _sequences(conn):
        conn.execute(
            f'SELECT setval(%s::oid::regclass, coalesce((SELECT max("{column}") FROM "{table}"), 0)'
            " + 1, false)",
            (sequence,),
        )


def _sequences(conn: psycopg.Connection) -> list[tuple[int, str, str]]:
    """``(sequence oid, table, column)`` of every sequence in the current schema: identity
    columns own theirs; the others must be in :data:`_FREE_SEQUENCES`."""
    rows = conn.execute(
        "SELECT s.oid::bigint, s.relname, t.relname, a.attname FROM pg_class s"
        " LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid"
        "  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
        " LEFT JOIN pg_class t ON t.oid = d.refobjid"
        " LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        " WHERE s.relkind = 'S'"
        "  AND s.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
        " ORDER BY s.relname"
    ).fetchall()
    found = []
    for oid, sequence, table, column in rows:
        if table is None:
            if sequence not in _FREE_SEQUENCES:
                raise MigrationError(
                    f"sequence {sequence} numbers no column this Safar knows of: it cannot"
                    " migrate into this schema"
                )
            table, column = _FREE_SEQUENCES[sequence]
        found.append((oid, table, column))
    return found


# -- verifying ---------------------------------------------------------------------------------


def _verify_table(state: sqlite3.Connection, conn: psycopg.Connection, table: str) -> Copied:
    query = f'SELECT {_listed(_columns(state, table))} FROM "{table}"'
    source = _checksum(state.execute(query))
    with conn.cursor(name=f"verify_{table}") as cursor:
        # A server-side cursor: the table is read in pages, never held whole in memory.
        cursor.itersize = _PAGE
        target = _checksum(cursor.execute(query))
    if source != target:
        raise MigrationError(
            f"table {table} differs after copying: {source[0]} rows (checksum {source[1]}) in"
            f" SQLite, {target[0]} rows (checksum {target[1]}) in PostgreSQL"
        )
    return Copied(table, *source)


def _verify_events(events: EventLog, conn: psycopg.Connection) -> Copied:
    source = hashlib.blake2b(digest_size=16)
    target = hashlib.blake2b(digest_size=16)
    count = 0
    for page in _pages(events):
        copied = PgEventLog.read_in(conn, page[0].seq - 1, len(page))
        source.update(b"".join(msgspec.msgpack.encode(event) for event in page))
        target.update(b"".join(msgspec.msgpack.encode(event) for event in copied))
        count += len(page)
    head = conn.execute("SELECT last_seq, event_count FROM event_head").fetchone()
    if source.digest() != target.digest():
        raise MigrationError("the event log differs after copying")
    if head != (events.last_seq(), events.count()) or count != events.count():
        raise MigrationError(
            f"the event log's head differs after copying: last seq and count {head} in"
            f" PostgreSQL, ({events.last_seq()}, {events.count()}) in SQLite"
        )
    return Copied("events", count, source.hexdigest())


def _checksum(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """Row count and the sum of the rows' hashes (order-independent) modulo 2**128."""
    total = 0
    count = 0
    for row in rows:
        digest = hashlib.blake2b(msgspec.msgpack.encode(_normalized(row)), digest_size=16)
        total = (total + int.from_bytes(digest.digest(), "big")) % (1 << 128)
        count += 1
    return count, f"{total:032x}"


def _normalized(row: Sequence[Any]) -> list[Any]:
    return [
        bytes(value)
        if isinstance(value, memoryview | bytearray)
        else int(value)
        if isinstance(value, bool)
        else value
        for value in row
    ]
