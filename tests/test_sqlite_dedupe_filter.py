"""The SQLite event log's dedupe without stalls: its filter grows by layers instead of being
rebuilt from the tables, and its flushes go in slices, each in a transaction of its own."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.stores.sqlite import events as events_module
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.events import SqliteEventLog, _KeyFilter, _Layer
from safar.testing import FakeClock
from tests.contract.test_event_log import event as _event


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


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1]), st.lists(st.integers(0, 150), max_size=12)),
        max_size=40,
    )
)
def test_two_writers_flushing_in_slices_store_each_key_once(
    appends: list[tuple[int, list[int]]],
) -> None:
    """Two processes' logs on one file, flushing from 20 to 30 keys in slices of 7 keys (a slice
    per append): every append stores exactly the keys no one stored before, whichever of them is
    flushing, and so does a log opened afterwards."""
    original = events_module.FLUSH_SLICE, events_module.FLUSH_PAUSE_S
    events_module.FLUSH_SLICE, events_module.FLUSH_PAUSE_S = 7, 0.0
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "events.db"
            clock = FakeClock(1_000)
            logs = [
                SqliteEventLog(Database(path, synchronous="off"), clock, flush_threshold=20)
                for _ in range(2)
            ]
            stored: set[str] = set()
            for writer, numbers in appends:
                ids = [f"m{n}" for n in numbers]
                new = list(dict.fromkeys(i for i in ids if i not in stored))
                result = logs[writer].append([_event(i) for i in ids])
                assert result.appended == len(new)
                stored.update(new)
            later = SqliteEventLog(Database(path, synchronous="off"), clock, flush_threshold=20)
            every = [f"m{n}" for n in range(151)]
            assert later.append([_event(i) for i in every]).appended == len(
                [i for i in every if i not in stored]
            )
    finally:
        events_module.FLUSH_SLICE, events_module.FLUSH_PAUSE_S = original


def test_a_layer_sets_the_same_bits_for_a_big_batch_as_key_by_key() -> None:
    keys = [f"src\x1fm-{n}" for n in range(5_000)]  # past the size NumPy adds
    at_once, one_by_one = _Layer(100_000), _Layer(100_000)
    at_once.add(keys)
    for key in keys:
        one_by_one.add([key])
    assert at_once.maybe(keys) == keys
    assert at_once._bits == one_by_one._bits
    assert at_once.count == one_by_one.count == 5_000
