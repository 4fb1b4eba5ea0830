"""One PostgreSQL database shared by every PostgreSQL store: a connection pool, transactions,
migrations.

Each store takes a :class:`PgDatabase` and owns a migration *component* (``events``,
``profiles``, …), exactly as the SQLite stores do, with its own list of steps. The version of each
component is kept in ``schema_versions``; a process that finds a newer version than it knows
refuses to start rather than write to a schema it does not understand.

Transactions:

- :meth:`PgDatabase.write` is a READ COMMITTED transaction. Stores that check a cursor before
  committing (``after_seq``) lock its row with ``SELECT … FOR UPDATE`` first, so two processors
  racing for the same cursor are ordered by PostgreSQL: the second sees the first's new value and
  raises, as the port contracts require.
- :meth:`PgDatabase.read` is a REPEATABLE READ, READ ONLY transaction: every query in it reads
  the same snapshot, as a SQLite read transaction does.

Every driver error leaves as :class:`~safar.errors.StoreError` (``from`` the driver error), so
the runtime's retry paths are the same for both backends.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from safar.errors import StoreError

#: A migration is SQL (one or more statements, run as one script) or a function given the
#: connection inside the migration's transaction.
PgMigration = str | Callable[[psycopg.Connection], None]

#: Serializes migrations of concurrent processes starting at once (any constant works; this is
#: "safar" in ASCII).
_MIGRATION_LOCK = 0x7361666172
#: Longest a transaction may sit waiting on its client before the server ends it (below).
IDLE_IN_TRANSACTION_S = 5
#: How long a caller waits for a pooled connection before the store gives up.
_POOL_TIMEOUT_S = 30.0
#: A pooled connection idle at least this long is checked before use (one round trip).
CHECK_AFTER_IDLE_S = 1.0
_BEGIN = {
    "write": "BEGIN",
    # One statement, not BEGIN then SET TRANSACTION: a round trip less per read.
    "read": "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
}


class PgDatabase:
    """A PostgreSQL database reached through a pool of at most ``max_size`` connections."""

    def __init__(self, url: str, *, max_size: int = 8, name: str = "safar") -> None:
        self.url = url
        self._closed = False
        self._lock = threading.Lock()
        #: Connection -> when it went back to the pool (see :meth:`_check`).
        self._idle_since: weakref.WeakKeyDictionary[psycopg.Connection, float] = (
            weakref.WeakKeyDictionary()
        )
        try:
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs={"autocommit": True},
                open=True,
                timeout=_POOL_TIMEOUT_S,
                name=name,
                check=self._check,
                configure=_configure,
            )
            self._pool.wait(timeout=_POOL_TIMEOUT_S)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}: {exc}") from exc
        self._init_schema_table()

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection]:
        """A READ COMMITTED transaction, committed when the body returns, rolled back if it
        raises.

        Statements go one at a time, never in a pipeline (``conn.pipeline()``): the server ends
        a transaction whose client froze (see :func:`_configure`) only while it waits for the
        next statement; in the middle of an open pipeline it waits forever, holding the
        transaction's row locks (a cursor, a lease), and no standby could take over."""
        with self._transaction("write") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[psycopg.Connection]:
        """A consistent, read-only snapshot (REPEATABLE READ)."""
        with self._transaction("read") as conn:
            yield conn

    @contextmanager
    def _transaction(self, what: str) -> Iterator[psycopg.Connection]:
        # BEGIN and COMMIT by hand on an autocommit connection: psycopg's transaction() would
        # send the isolation level as a statement of its own.
        try:
            with self._pool.connection() as conn:
                try:
                    conn.execute(_BEGIN[what])
                    try:
                        yield conn
                    except BaseException:
                        if not conn.closed:
                            # A failure here leaves the connection unusable; the pool drops it.
                            with suppress(psycopg.Error):
                                conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    # Noted here, not by a pool ``reset`` callback: with one, the pool hands
                    # returned connections to a worker thread, and the next caller waits or
                    # the pool grows.
                    self._idle_since[conn] = time.monotonic()
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL {what} failed: {_message(exc)}") from exc
        except PoolTimeout as exc:
            raise StoreError(f"no PostgreSQL connection free for a {what}: {exc}") from exc

    def _check(self, conn: psycopg.Connection) -> None:
        """Before a connection leaves the pool: one that sat idle may have been dropped by the
        server (a restart), so it is checked (and replaced if dead). One used just now is not:
        that would cost a round trip per transaction; if the server went away meanwhile, its
        first statement fails as a retryable StoreError and the pool drops it."""
        since = self._idle_since.get(conn)
        if since is None or time.monotonic() - since >= CHECK_AFTER_IDLE_S:
            ConnectionPool.check_connection(conn)

    def _init_schema_table(self) -> None:
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    def migrate(self, component: str, migrations: Sequence[PgMigration]) -> None:
        """Bring ``component``'s tables up to ``len(migrations)``, each step once, in order, in
        one transaction; concurrent processes take turns. Never edit a released step: append."""
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE component = %s", (component,)
            ).fetchone()
            current = row[0] if row else 0
            if current > len(migrations):
                raise StoreError(
                    f"PostgreSQL database at {redact(self.url)} has {component} schema version"
                    f" {current}, newer than this Safar knows ({len(migrations)}); upgrade Safar"
                )
            for step in migrations[current:]:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)  # no parameters: several statements may run at once
            conn.execute(
                "INSERT INTO schema_versions(component, version) VALUES (%s, %s)"
                " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, len(migrations)),
            )

    def versions(self) -> dict[str, int]:
        """Component -> schema version, as stored."""
        with self.read() as conn:
            return dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())

    def close(self) -> None:
        """Close the pool; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()


def _configure(conn: psycopg.Connection) -> None:
    """Settings of every new connection.

    A process frozen inside a transaction (SIGSTOP, a paused VM, a debugger) keeps its row locks
    (a cursor row, the lease row) until its connection ends, and a standby waiting on one of
    them could never take over. The server ends such a transaction after
    :data:`IDLE_IN_TRANSACTION_S`; Safar's own transactions never wait on their client that
    long, and the frozen process, once woken, finds its connection closed and redoes the batch
    (or finds its lease gone).
    """
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_S}s'")


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable URL>"
    if "password" in info:
        info["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items() if v is not None})


def _message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary or exc).strip()


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return url.startswith(("postgresql://", "postgres://"))
