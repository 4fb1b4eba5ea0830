"""``safar migrate --to postgresql://…``: copy an embedded (SQLite) installation into PostgreSQL,
verified by counts and checksums.

What is copied:

- The event log, event by event with its ``seq`` (the processors' cursors and the profiles'
  timelines refer to it), together with the dedupe window: a client retrying a batch it sent
  before the move is still recognised.
- Every table of the state database, row for row into the table of the same name: the
  PostgreSQL stores keep the SQLite layout (same tables, same columns), so a row means the same
  on both sides. Rows go in rowid order, so tables whose order matters (merges, pending
  membership events) keep it, and identity counters continue after the copied ids.

Everything is written in one PostgreSQL transaction: the target ends up with all of it or none
of it. The target must be empty (fresh database or schema), and Safar must be stopped while it
runs: the source is read in snapshots and compared again at the end.

Verification reads both sides back: each table's row count and an order-independent checksum
of its rows (values normalized to bytes, integers, text and null), and the event logs read
through their ports, encoded, in ``seq`` order.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

from safar.config import Settings
from safar.errors import SafarError
from safar.ports import Clock, EventLog
from safar.stores.bundle import open_sqlite_stores
from safar.stores.postgres.db import PgDatabase, redact

#: State tables that are not copied: schema versions (the target's stores create their own) and
#: process leases (they name processes of the old installation).
_NOT_COPIED = frozenset({"schema_versions", "leases"})
#: Rows read and written per round trip.
_PAGE = 5_000


class MigrationError(SafarError):
    """The migration could not be done, or its verification failed; the target is unchanged."""


@dataclass(frozen=True)
class Copied:
    """One table (or the event log) copied and verified."""

    name: str
    rows: int
    checksum: str


def migrate_to_postgres(
    settings: Settings, url: str, clock: Clock, *, report: Callable[[str], None] = print
) -> list[Copied]:
    """Copy the embedded installation ``settings`` describes into the empty PostgreSQL
    database at ``url`` and verify it; returns what was copied. Raises
    :class:`MigrationError` (the target unchanged) when anything disagrees."""
    from safar.stores.postgres import open_postgres_stores

    target_settings = msgspec.structs.replace(
        settings, storage=msgspec.structs.replace(settings.storage, url=url)
    )
    with open_sqlite_stores(settings, clock) as source:
        # Opening the target creates its tables (every store runs its migrations).
        with open_postgres_stores(target_settings, clock) as target:
            target.close()
        state = sqlite3.connect(f"file:{settings.database_path}?mode=ro", uri=True)
        db = PgDatabase(url, max_size=1, name="migrate")
        try:
            return _copy_all(source.events, state, db, settings, clock, report)
        finally:
            db.close()
            state.close()


def _copy_all(
    events: EventLog,
    state: sqlite3.Connection,
    db: PgDatabase,
    settings: Settings,
    clock: Clock,
    report: Callable[[str], None],
) -> list[Copied]:
    from safar.stores.postgres.events import PgEventLog

    tables = _state_tables(state)
    last_seq = events.last_seq()
    window_ms = int(settings.ingest.dedupe_window_hours * 3600 * 1000)
    copied: list[Copied] = []
    with db.write() as conn:
        _refuse_unless_empty(conn, tables, db.url)
        count = 0
        for page in _pages(events):
            PgEventLog.import_history(conn, page, dedupe_since=clock.now_ms() - window_ms)
            count += len(page)
        report(f"events: {count} copied")
        for table in tables:
            columns = _copy_table(state, conn, table)
            report(f"{table}: {_count(state, table)} rows copied")
            _continue_identities(conn, table, columns)
        if events.last_seq() != last_seq:
            raise MigrationError("events arrived while migrating: stop Safar and run it again")
        copied.append(_verify_events(events, conn))
        copied += [_verify_table(state, conn, table) for table in tables]
    return copied


def _state_tables(state: sqlite3.Connection) -> list[str]:
    names = [
        name
        for (name,) in state.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    return [name for name in names if name not in _NOT_COPIED]


def _refuse_unless_empty(conn: psycopg.Connection, tables: Sequence[str], url: str) -> None:
    filled = [
        table
        for table in ("events", *tables)
        if conn.execute(
            f'SELECT EXISTS (SELECT 1 FROM "{table}" {_NOT_SEEDED.get(table, "")})'
        ).fetchone()
        == (True,)
    ]
    if filled:
        raise MigrationError(
            f"the PostgreSQL database at {redact(url)} already holds data ({', '.join(filled)}):"
            " migrate into an empty database or schema"
        )


#: Tables the stores seed with one row of their own: empty means only that row.
_NOT_SEEDED = {
    table: "WHERE processed_seq <> 0"
    for table in ("profile_progress", "journey_progress", "audience_progress")
}


def _pages(events: EventLog) -> Iterator[list[Any]]:
    after = 0
    while page := events.read(after, _PAGE):
        yield page
        after = page[-1].seq


def _columns(state: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in state.execute(f'PRAGMA table_info("{table}")')]


def _has_rowid(state: sqlite3.Connection, table: str) -> bool:
    try:
        state.execute(f'SELECT rowid FROM "{table}" LIMIT 0')
    except sqlite3.OperationalError:
        return False  # a WITHOUT ROWID table: its primary key orders it
    return True


def _rows(
    state: sqlite3.Connection, table: str, columns: Sequence[str]
) -> Iterable[tuple[Any, ...]]:
    listed = ", ".join(f'"{c}"' for c in columns)
    order = " ORDER BY rowid" if _has_rowid(state, table) else ""
    return state.execute(f'SELECT {listed} FROM "{table}"{order}')


def _copy_table(state: sqlite3.Connection, conn: psycopg.Connection, table: str) -> list[str]:
    columns = _columns(state, table)
    target = _target_columns(conn, table)
    missing = [c for c in columns if c not in target]
    if missing:
        raise MigrationError(
            f"table {table}: the PostgreSQL schema lacks column(s) {', '.join(missing)};"
            " this Safar cannot migrate this installation"
        )
    # The seeded single rows make way for the copied ones.
    conn.execute(f'DELETE FROM "{table}"')
    listed = ", ".join(f'"{c}"' for c in columns)
    with conn.cursor().copy(f'COPY "{table}" ({listed}) FROM STDIN') as copy:
        for row in _rows(state, table, columns):
            copy.write_row(_for_postgres(row, target, columns))
    return columns


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


def _for_postgres(row: Sequence[Any], types: dict[str, str], columns: Sequence[str]) -> list[Any]:
    """SQLite stores booleans as 0/1; PostgreSQL wants them typed."""
    return [
        bool(value) if value is not None and types[column] == "boolean" else value
        for value, column in zip(row, columns, strict=True)
    ]


def _continue_identities(conn: psycopg.Connection, table: str, columns: Sequence[str]) -> None:
    """Move identity/serial counters past the copied ids, so new rows do not collide."""
    for column in columns:
        sequence = conn.execute(
            "SELECT pg_get_serial_sequence(%s, %s)", (f'"{table}"', column)
        ).fetchone()
        if sequence and sequence[0]:
            conn.execute(
                f'SELECT setval(%s, GREATEST((SELECT max("{column}") FROM "{table}"), 1))',
                (sequence[0],),
            )


def _count(state: sqlite3.Connection, table: str) -> int:
    (count,) = state.execute(f'SELECT count(*) FROM "{table}"').fetchone()
    return int(count)


def _verify_table(state: sqlite3.Connection, conn: psycopg.Connection, table: str) -> Copied:
    columns = _columns(state, table)
    listed = ", ".join(f'"{c}"' for c in columns)
    source = _checksum(state.execute(f'SELECT {listed} FROM "{table}"'))
    target = _checksum(conn.execute(f'SELECT {listed} FROM "{table}"'))
    if source != target:
        raise MigrationError(
            f"table {table} differs after copying: {source[0]} rows (checksum {source[1]}) in"
            f" SQLite, {target[0]} rows (checksum {target[1]}) in PostgreSQL"
        )
    return Copied(table, *source)


def _verify_events(events: EventLog, conn: psycopg.Connection) -> Copied:
    from safar.stores.postgres.events import PgEventLog

    source = hashlib.blake2b(digest_size=16)
    target = hashlib.blake2b(digest_size=16)
    count = 0
    for page in _pages(events):
        copied = PgEventLog.read_in(conn, page[0].seq - 1, len(page))
        for mine, theirs in zip(page, copied, strict=False):
            source.update(msgspec.msgpack.encode(mine))
            target.update(msgspec.msgpack.encode(theirs))
        if len(copied) != len(page):
            break
        count += len(page)
    if count != events.count() or source.digest() != target.digest():
        raise MigrationError("the event log differs after copying")
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
