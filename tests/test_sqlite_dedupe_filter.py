"""The SQLite event log's filter over its dedupe tables grows by layers instead of being rebuilt
from the tables (which stalled every writer of the log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safar.model.events import Event
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.events import SqliteEventLog, _KeyFilter
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


def test_a_filter_past_its_capacity_adds_a_layer_and_forgets_nothing() -> None:
    bloom = _KeyFilter(0)
    added: list[str] = []
    for batch in range(12):
        keys = [f"src\x1fm-{batch}-{n}" for n in range(1_000)]
        bloom.add(keys)
        added += keys
    assert bloom.layers() > 1  # 12,000 keys past the first layer's 4,096
    assert bloom.maybe(added) == added  # no false "no"
    unknown = [f"src\x1fother-{n}" for n in range(10_000)]
    assert len(bloom.maybe(unknown)) < 500  # about 1.4% per layer answer "maybe"


def test_the_log_never_reads_its_tables_again_as_they_grow(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilds: list[int] = []
    original = SqliteEventLog._rebuild_filter

    def counted(self: SqliteEventLog, *args: object) -> None:
        rebuilds.append(1)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteEventLog, "_rebuild_filter", counted)
    log = SqliteEventLog(Database(tmp_path / "events.db"), clock, flush_threshold=200)
    ids = [f"m{n}" for n in range(10_000)]
    for start in range(0, len(ids), 100):
        log.append([_event(i) for i in ids[start : start + 100]])
    assert log._filter.layers() > 1  # 10,000 flushed keys past the first layer's 4,096
    assert rebuilds == [1]  # on first use only
    # Every key is still found: none of them is stored again, by this log or a new one.
    assert log.append([_event(i) for i in ids]).appended == 0
    fresh = SqliteEventLog(Database(tmp_path / "events.db"), clock, flush_threshold=200)
    assert fresh.append([_event(i) for i in ids[::7]]).appended == 0
