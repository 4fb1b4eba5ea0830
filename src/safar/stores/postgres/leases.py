"""PostgreSQL :class:`safar.ports.LeaseStore` (migration component ``leases``): one row per
lease, taken or renewed by one upsert, so concurrent processes are ordered by the row lock."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from safar.errors import StoreError
from safar.model.leases import Fence
from safar.stores.postgres.db import PgDatabase

_MIGRATIONS = [
    """
    CREATE TABLE leases(
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until BIGINT NOT NULL,
        epoch BIGINT NOT NULL
    )
    """
]

#: Insert a new lease, renew the owner's, or take over an expired one (a new epoch); a lease
#: another owner holds is left alone and nothing is returned.
_ACQUIRE = (
    "INSERT INTO leases(name, owner, until, epoch) VALUES (%(name)s, %(owner)s, %(until)s, 1)"
    " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, until = excluded.until,"
    " epoch = CASE WHEN leases.owner = excluded.owner THEN leases.epoch ELSE leases.epoch + 1 END"
    " WHERE leases.owner = excluded.owner OR leases.until <= %(now)s"
    " RETURNING epoch"
)


class PgLeaseStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        db.migrate("leases", _MIGRATIONS)

    def acquire(self, name: str, owner: str, now: int, ttl_ms: int) -> int | None:
        params = {"name": name, "owner": owner, "until": now + ttl_ms, "now": now}
        with self._db.write() as conn:
            row = conn.execute(_ACQUIRE, params).fetchone()
        return None if row is None else int(row[0])

    def release(self, name: str, owner: str) -> None:
        # Kept with an expired time rather than deleted, so the next holder's epoch still grows.
        with self._db.write() as conn:
            conn.execute(
                "UPDATE leases SET until = 0 WHERE name = %s AND owner = %s", (name, owner)
            )

    def holders(self, now: int) -> dict[str, str]:
        with self._db.read() as conn:
            return dict(conn.execute("SELECT name, owner FROM leases WHERE until > %s", (now,)))


def check_fence(conn: psycopg.Connection, fence: Fence) -> None:
    """Raise unless ``fence`` still holds; call inside the write transaction it guards. The
    share lock keeps the lease from changing hands until that transaction ends, so a takeover
    either commits before this check or waits for this transaction."""
    check_fences(conn, [fence])


def check_fences(conn: psycopg.Connection, fences: Iterable[Fence]) -> None:
    """:func:`check_fence` for each of ``fences``, in one statement (rows locked in name
    order)."""
    wanted = {(f.name, f.owner, f.epoch): f for f in fences}
    if not wanted:
        return
    names = sorted({name for name, _, _ in wanted})
    held = {
        (name, owner, epoch)
        for name, owner, epoch in conn.execute(
            "SELECT name, owner, epoch FROM leases WHERE name = ANY(%s) ORDER BY name FOR SHARE",
            (names,),
        )
    }
    for key, fence in wanted.items():
        if key not in held:
            raise StoreError(f"{fence.describe()} was lost: another process took it over")
