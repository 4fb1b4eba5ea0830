"""SQLite :class:`safar.ports.LeaseStore` (migration component ``leases``): one row per lease.

On one machine leases matter when several worker processes share a data directory; the write
lock SQLite takes for each acquire makes it atomic.
"""

from __future__ import annotations

import sqlite3

from safar.errors import StoreError
from safar.model.leases import Fence
from safar.stores.sqlite.db import Database

_MIGRATIONS = [
    """
    CREATE TABLE leases(
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until INTEGER NOT NULL,
        epoch INTEGER NOT NULL
    ) WITHOUT ROWID
    """
]

#: Insert a new lease, renew the owner's, or take over an expired one (a new epoch); a lease
#: another owner holds is left alone and nothing is returned.
_ACQUIRE = (
    "INSERT INTO leases(name, owner, until, epoch) VALUES (?1, ?2, ?3 + ?4, 1)"
    " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until,"
    " epoch = CASE WHEN leases.owner = excluded.owner THEN leases.epoch ELSE leases.epoch + 1 END"
    " WHERE leases.owner = excluded.owner OR leases.until <= ?3"
    " RETURNING epoch"
)


class SqliteLeaseStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.migrate("leases", _MIGRATIONS)

    def acquire(self, name: str, owner: str, now: int, ttl_ms: int) -> int | None:
        with self._db.write() as conn:
            row = conn.execute(_ACQUIRE, (name, owner, now, ttl_ms)).fetchone()
        return None if row is None else int(row[0])

    def release(self, name: str, owner: str) -> None:
        # Kept with an expired time rather than deleted, so the next holder's epoch still grows.
        with self._db.write() as conn:
            conn.execute("UPDATE leases SET until = 0 WHERE name = ? AND owner = ?", (name, owner))

    def holders(self, now: int) -> dict[str, str]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT name, owner FROM leases WHERE until > ?", (now,)))


def check_fence(conn: sqlite3.Connection, fence: Fence) -> None:
    """Raise unless ``fence`` still holds; call inside the write transaction it guards (SQLite's
    write lock keeps the lease from changing hands until that transaction ends)."""
    row = conn.execute("SELECT owner, epoch FROM leases WHERE name = ?", (fence.name,)).fetchone()
    if row is None or (row[0], row[1]) != (fence.owner, fence.epoch):
        raise StoreError(f"{fence.describe()} was lost: another process took it over")
