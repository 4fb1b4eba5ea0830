"""An idle dispatcher's claim on SQLite asks under no lock: it never waits for the write lock
that the profile processor (or anyone) holds while nothing is due."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from safar.model.runs import OutboxEntry
from safar.ports import JourneyUpdate
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.outbox import SqliteOutbox
from safar.stores.sqlite.runs import SqliteRunStore

from .conftest import outbox_entry

NOW = 1_000_000


def claim_while_locked(
    path: Path, outbox: SqliteOutbox, patience: float
) -> list[OutboxEntry] | None:
    """Claim from a thread while another connection holds the write lock for up to
    ``patience`` seconds; what the claim returned by then, or None if it was still waiting."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    returned = threading.Event()
    result: list[list[OutboxEntry]] = []

    def claim() -> None:
        result.append(outbox.claim(NOW, 10, "d1", 30_000))
        returned.set()

    thread = threading.Thread(target=claim, daemon=True)
    thread.start()
    try:
        returned.wait(patience)
        return result[0] if returned.is_set() else None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        thread.join(35)


def test_a_claim_with_nothing_due_does_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    db = Database(tmp_path / "safar.db", synchronous="normal")
    try:
        outbox = SqliteOutbox(db)
        SqliteRunStore(db).commit(JourneyUpdate(outbox=[outbox_entry("later", due=NOW + 60_000)]))
        assert claim_while_locked(tmp_path / "safar.db", outbox, patience=10) == []
    finally:
        db.close()


def test_a_claim_with_an_entry_due_waits_for_the_lock_and_takes_it(tmp_path: Path) -> None:
    db = Database(tmp_path / "safar.db", synchronous="normal")
    try:
        outbox = SqliteOutbox(db)
        SqliteRunStore(db).commit(JourneyUpdate(outbox=[outbox_entry("due", due=NOW - 1)]))
        assert claim_while_locked(tmp_path / "safar.db", outbox, patience=0.5) is None
        assert [e.key for e in outbox.claim(NOW, 10, "d2", 30_000)] == []  # d1 took it
        assert outbox.pending() == 1
    finally:
        db.close()
