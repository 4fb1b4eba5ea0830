"""One SQLite database file shared by every SQLite store: connections, pragmas, migrations.

Each thread gets its own connection (sqlite3 connections must not be shared across threads while
in use). Writes go through :meth:`Database.write`, which takes SQLite's write lock up front
(``BEGIN IMMEDIATE``) so a transaction never fails half-way on a lock upgrade.

Checkpoints (copying the WAL back into the database file) run in a thread of their own, not in
the commit that happens to cross SQLite's threshold: under the journeys' latency load such a
commit took 20-40 ms instead of 0.3, holding up whoever made it (the stepper, the dispatcher);
with checkpoints off the writers' path, the time their commits took halved.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from safar.errors import StoreError

#: A migration is SQL (one or more statements) or a function given the connection.
Migration = str | Callable[[sqlite3.Connection], None]

#: How long a writer waits for the write lock before giving up.
_WRITE_TIMEOUT_S = 30.0
#: SQLite's own busy handler sleeps 1, 2, 5, 10 … 100 ms between tries, so a writer waiting
#: behind another process's 1 ms commit often slept ten times longer than needed, and processing
#: fell behind at a few thousand events/s. Writers wait in :func:`_begin_immediate` instead;
#: this short timeout only covers the rare busy read.
_READ_BUSY_TIMEOUT_MS = 1
#: Seconds between checkpoints while this process writes.
CHECKPOINT_EVERY_S = 0.25
#: A WAL holding more frames than this (64 MiB of 4 KiB pages) after a ``PASSIVE`` checkpoint
#: is started over by a ``RESTART`` one (see :class:`_Checkpointer`). A restart holds writers
#: while it copies and syncs; at 16 MiB they came four times a second under the latency load,
#: and p99 was 86-267 ms against 64-104 ms at 64 MiB (alternated runs).
RESTART_FRAMES = 16384
#: How long the checkpointer keeps trying a ``RESTART`` checkpoint, and the pause between tries.
RESTART_TRYING_S = 0.05
RESTART_PAUSE_S = 0.0005
#: The first and the longest pause between tries for the write lock.
_FIRST_PAUSE_S = 0.0001
_LONGEST_PAUSE_S = 0.002


class Database:
    """A SQLite database in WAL mode, with a connection per thread."""

    def __init__(self, path: Path | str, *, synchronous: str = "full", cache_mb: int = 64) -> None:
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.cache_mb = cache_mb
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._checkpointer = _Checkpointer(self.path, self.synchronous)
            # Stopped with the database, or when it is dropped without being closed.
            weakref.finalize(self, self._checkpointer.stop)
        self._init_schema_table()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=_READ_BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={_READ_BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA cache_size=-{self.cache_mb * 1024}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA temp_store=MEMORY")
            if self._checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back if the body raises."""
        conn = self.connection()
        try:
            _begin_immediate(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start a write transaction on {self.path}: {exc}") from exc
        try:
            yield conn
        except BaseException:
            self._rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise StoreError(f"commit failed on {self.path}: {exc}") from exc
        if self._checkpointer is not None:
            self._checkpointer.wrote()

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLite may already have rolled back (e.g. after SQLITE_FULL); the original error matters.
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot (a deferred transaction), translating driver errors."""
        conn = self.connection()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"read failed on {self.path}: {exc}") from exc

    def _init_schema_table(self) -> None:
        with self.write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions("
                " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )

    def migrate(self, component: str, migrations: Sequence[Migration]) -> None:
        """Bring ``component``'s tables up to ``len(migrations)``, each step once, in order.

        Each store module owns its component and appends steps; it never edits a released step.
        """
        with self.write() as conn:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE component = ?", (component,)
            ).fetchone()
            current = row[0] if row else 0
            if current > len(migrations):
                raise StoreError(
                    f"database {self.path} has {component} schema version {current}, newer"
                    f" than this Safar knows ({len(migrations)}); upgrade Safar"
                )
            for step in migrations[current:]:
                if callable(step):
                    step(conn)
                else:
                    for statement in step.split(";"):
                        if statement.strip():
                            conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions(component, version) VALUES (?, ?)"
                " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, len(migrations)),
            )

    def checkpointed(self, timeout: float) -> bool:
        """Wait until what this process committed so far has been checkpointed (as far as a
        ``PASSIVE`` checkpoint could: not past an open reader); False after ``timeout``
        seconds. For tests and tools: writers never wait for checkpoints."""
        return self._checkpointer is None or self._checkpointer.wait(timeout)

    def close(self) -> None:
        """Close every connection this object opened (the last one to close checkpoints)."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """Take the write lock, retrying with short pauses while another connection holds it."""
    deadline = time.monotonic() + _WRITE_TIMEOUT_S
    pause = _FIRST_PAUSE_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE_S)


class _Checkpointer:
    """Checkpoints one database's WAL every :data:`CHECKPOINT_EVERY_S` after this process wrote
    to it, from a daemon thread started on the first write, on a connection of its own.

    ``PASSIVE``: it copies what it can without waiting for readers or writers, as SQLite's
    automatic checkpoint does. Another process's checkpointer may run at the same time; SQLite
    lets one at a time proceed, and the other finds less or nothing to copy.

    That alone lets the WAL grow without bound under steady load: SQLite starts the WAL over
    only when a write begins after a checkpoint copied all of it, and a ``PASSIVE`` copy taking
    longer than the gap between commits never catches up (the journeys' latency load grew one
    to 1.7 GB in 23 s, and every read slowed down with it). So once a ``PASSIVE`` checkpoint
    leaves more than :data:`RESTART_FRAMES` frames, a ``RESTART`` one follows: once it has copied
    everything and the readers of the old WAL are done, the next write starts the WAL over.
    It is tried without SQLite's busy handler, every :data:`RESTART_PAUSE_S` for up to
    :data:`RESTART_TRYING_S`: the handler sleeps 1, 2, 5, 10 ms … between its tries and holds
    new writers back all the while, so a restart held every writer 30-40 ms, four times a
    second under the latency load; a try that finds a writer or a reader in the way returns at
    once, holding no one.
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        #: Guards the counts and the thread; notified when either count moves or on stop.
        self._changed = threading.Condition()
        self._writes = 0
        #: The writes the last checkpoint started after.
        self._checkpointed = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def wrote(self) -> None:
        with self._changed:
            self._writes += 1
            self._changed.notify_all()
            if self._thread is None:
                # An event per thread: a database closed and then used again gets a new one.
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._stop,),
                    name=f"safar-checkpoint-{self._path.name}",
                    daemon=True,
                )
                self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait until a checkpoint started after every write so far has run; False on
        timeout."""
        with self._changed:
            target = self._writes
            return self._changed.wait_for(lambda: self._checkpointed >= target, timeout)

    def stop(self) -> None:
        with self._changed:
            thread, self._thread, stop = self._thread, None, self._stop
            stop.set()
            self._changed.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self, stop: threading.Event) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(
                        lambda: stop.is_set() or self._writes > self._checkpointed
                    )
                if stop.wait(CHECKPOINT_EVERY_S):
                    return
                with self._changed:
                    target = self._writes
                # A failure (the file unreachable for a moment) is tried again next time; the
                # writers' own connections report what is wrong with the file.
                try:
                    if conn is None:
                        conn = sqlite3.connect(
                            self._path, isolation_level=None, check_same_thread=False, timeout=0
                        )
                        conn.execute(f"PRAGMA synchronous={self._synchronous}")
                    _checkpoint(conn)
                except sqlite3.Error:
                    continue
                with self._changed:
                    self._checkpointed = target
                    self._changed.notify_all()
        finally:
            if conn is not None:
                conn.close()


def _checkpoint(conn: sqlite3.Connection) -> None:
    """A ``PASSIVE`` checkpoint, then a ``RESTART`` one when the WAL is still long."""
    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if frames <= RESTART_FRAMES:
        return
    until = time.monotonic() + RESTART_TRYING_S
    while conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]:  # 1: busy
        if time.monotonic() > until:
            return
        time.sleep(RESTART_PAUSE_S)
