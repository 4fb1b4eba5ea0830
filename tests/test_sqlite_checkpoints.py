"""SQLite checkpoints run in a thread of their own (safar.stores.sqlite.db), off the writers'
commits."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

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
