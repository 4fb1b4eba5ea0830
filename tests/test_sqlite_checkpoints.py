"""SQLite checkpoints run in a thread of their own (safar.stores.sqlite.db), off the writers'
commits."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from safar.stores.sqlite import db as db_module
from safar.stores.sqlite.db import Database


def _rows_in_main_file(path: Path) -> int:
    """Rows of ``t`` in the database file itself, ignoring the WAL: what checkpoints copied."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # the table itself is still only in the WAL
        return 0
    finally:
        conn.close()


def _checkpointers(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"safar-checkpoint-{path.name}"]


def test_writes_reach_the_database_file_without_a_commit_checkpointing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = Database(path)
    with db.write() as conn:
        # Writers' connections never checkpoint in their commits.
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        conn.execute("CREATE TABLE t(x)")
    for n in range(50):
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (?)", (n,))
    assert db.checkpointed(timeout=10)
    assert _rows_in_main_file(path) == 50
    assert len(_checkpointers(path)) == 1
    db.close()
    assert _checkpointers(path) == []
    # Used again after close: checkpoints resume.
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (50)")
    assert db.checkpointed(timeout=10)
    assert _rows_in_main_file(path) == 51
    db.close()


def test_a_database_dropped_without_close_stops_its_checkpointer(tmp_path: Path) -> None:
    import gc

    path = tmp_path / "dropped.db"
    db = Database(path)
    with db.write() as conn:
        conn.execute("CREATE TABLE t(x)")
    assert len(_checkpointers(path)) == 1
    del db, conn
    gc.collect()
    assert _checkpointers(path) == []


def test_the_wal_starts_over_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``PASSIVE`` checkpoint never catches up with commits that keep coming, so SQLite would
    append to the WAL for ever (each commit here adds about four times its row to it); the
    checkpointer's ``RESTART`` lets a later write start the WAL over, so the file stops
    growing."""
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY_S", 0.01)
    monkeypatch.setattr(db_module, "RESTART_FRAMES", 64)
    path = tmp_path / "busy.db"
    db = Database(path, synchronous="normal")
    with db.write() as conn:
        conn.execute("CREATE TABLE t(x)")
    row = b"x" * 3000
    written = 0
    for _ in range(16_000):
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (?)", (row,))
        written += len(row)
        # A reader between the writes, as the processors read between their commits.
        with db.read() as conn:
            conn.execute("SELECT length(x) FROM t ORDER BY rowid DESC LIMIT 1").fetchone()
    wal = path.with_name(path.name + "-wal").stat().st_size
    db.close()
    assert wal < 2 * written, f"WAL {wal} bytes after {written} bytes of rows"
