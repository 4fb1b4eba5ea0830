"""A database written with one row per event opens, migrated, under the segment layout."""

from __future__ import annotations

from pathlib import Path

from safar.model.events import Event
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.events import _MIGRATIONS, SqliteEventLog
from safar.testing import FakeClock


def _event(message_id: str) -> Event:
    return Event(
        source_id="src",
        message_id=message_id,
        type="track",
        name="Tick",
        user_id="u1",
        timestamp=1_000,
        received_at=2_000,
        body=b'{"event":"Tick"}',
    )


def test_rows_from_before_segments_are_migrated(tmp_path: Path, clock: FakeClock) -> None:
    db = Database(tmp_path / "events.db", synchronous="normal")
    db.migrate("events", _MIGRATIONS[:1])  # the layout of one row per event
    rows = [
        (seq, "src", f"m{seq}", "track", "Tick", "u1", None, 1_000 + seq, 2_000, b'{"n":1}')
        for seq in range(1, 12_346)
    ]
    with db.write() as conn:
        conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    log = SqliteEventLog(db, clock)
    assert log.count() == 12_345
    assert log.last_seq() == 12_345
    assert [e.seq for e in log.read(4_998, 5)] == [4_999, 5_000, 5_001, 5_002, 5_003]
    picked = log.get([1, 5_000, 5_001, 12_345])
    assert [(e.seq, e.message_id, e.timestamp) for e in picked] == [
        (1, "m1", 1_001),
        (5_000, "m5000", 6_000),
        (5_001, "m5001", 6_001),
        (12_345, "m12345", 13_345),
    ]
    assert picked[0].body == b'{"n":1}' and picked[0].anonymous_id is None

    # Migrated events still count for deduplication, and new seqs follow on.
    result = log.append([_event("m7"), _event("fresh")])
    assert (result.appended, result.duplicates, result.last_seq) == (1, 1, 12_346)
    log.close()
    db.close()
