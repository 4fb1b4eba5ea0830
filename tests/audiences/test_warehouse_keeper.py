"""The warehouse previews use is kept: caught up with what is new (events, and only the profiles
they or merges touched), kept in a file across keepers and processes, and rebuilt whenever it
cannot be trusted."""

from __future__ import annotations

import fcntl
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.model.profiles import Identifier, MergeRecord, Profile, TraitChange
from safar.runtime.warehouse import Warehouse
from safar.runtime.warehouse_keeper import KeptWarehouse
from safar.testing.journeys import JourneyHarness


class CountingReader:
    """A profile reader that counts full scans and lookups by identifier."""

    def __init__(self, h: JourneyHarness) -> None:
        self._inner = h.stores.profiles
        self.scans = 0
        self.looked_up: list[int] = []

    def processed_seq(self) -> int:
        return self._inner.processed_seq()

    def find(self, identifier: Identifier) -> Profile | None:
        return self._inner.find(identifier)

    def scan(
        self, after_id: str, limit: int, partition: tuple[int, int] | None = None
    ) -> list[Profile]:
        self.scans += 1
        return self._inner.scan(after_id, limit, partition)

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        self.looked_up.append(len(identifiers))
        return self._inner.find_many(identifiers)

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        return self._inner.timeline(profile_id, limit, before_seq)

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        return self._inner.trait_history(profile_id, limit)

    def reshaped(self, after_seq: int, upto_seq: int) -> list[str]:
        return self._inner.reshaped(after_seq, upto_seq)

    def merges(self, profile_id: str) -> list[MergeRecord]:
        return self._inner.merges(profile_id)


def shop(h: JourneyHarness, customers: int = 6) -> None:
    for n in range(customers):
        h.identify(f"u{n}", {"vip": n % 2 == 0, "email": f"u{n}@example.com"})
        h.track(f"u{n}", "Order Completed", {"revenue": 10 * n})


def keeper(h: JourneyHarness, reader: CountingReader, path: Path | None = None) -> KeptWarehouse:
    return KeptWarehouse(h.stores.events, reader, h.stores.delivery, IdentitySettings(), path)


def contents(warehouse: Warehouse) -> list[list[tuple[Any, ...]]]:
    con = warehouse.con
    return [
        con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        for table in ("events", "profiles", "idents", "consents")
    ]


def fresh_contents(h: JourneyHarness) -> list[list[tuple[Any, ...]]]:
    """What a warehouse built from nothing over the harness's stores holds."""
    s = h.stores
    kept = KeptWarehouse(s.events, s.profiles, s.delivery, IdentitySettings())
    with kept.current() as warehouse:
        return contents(warehouse)


def test_new_events_and_a_merge_reload_only_the_customers_they_touch() -> None:
    h = JourneyHarness()
    shop(h)
    # An anonymous customer, a profile of their own.
    h.send({"anonymousId": "a1", "event": "Order Completed", "properties": {"revenue": 99}})
    reader = CountingReader(h)
    kept = keeper(h, reader)
    with kept.current() as warehouse:
        assert reader.scans > 0 and warehouse.profile_count() == 7
    reader.scans = 0
    h.track("u1", "Order Completed", {"revenue": 5})
    h.send({"type": "identify", "userId": "u2", "anonymousId": "a1", "traits": {}})
    with kept.current() as warehouse:
        assert reader.scans == 0
        assert warehouse.profile_count() == 6  # a1 merged into u2
        owner = warehouse.scalar("SELECT profile_id FROM idents WHERE ident = 'anonymous_id:a1'")
        assert owner == h.profile("u2").id
        assert contents(warehouse) == fresh_contents(h)
    # Nothing new: nothing read.
    reader.looked_up.clear()
    with kept.current():
        assert reader.scans == 0 and reader.looked_up == []


def test_events_the_profiles_do_not_reflect_yet_wait() -> None:
    h = JourneyHarness()
    shop(h, customers=2)
    h.stores.events.append([h.event({"type": "track", "userId": "u9", "event": "Order Completed"})])
    kept = keeper(h, CountingReader(h))
    with kept.current() as warehouse:
        assert warehouse.last_seq() == h.stores.profiles.processed_seq()
        assert warehouse.last_seq() < h.stores.events.last_seq()
    h.run()
    with kept.current() as warehouse:
        assert warehouse.last_seq() == h.stores.events.last_seq()
        assert contents(warehouse) == fresh_contents(h)


def test_a_file_warehouse_outlives_its_keeper(tmp_path: Path) -> None:
    h = JourneyHarness()
    shop(h)
    path = tmp_path / "warehouse.duckdb"
    with keeper(h, CountingReader(h), path).current() as warehouse:
        before = contents(warehouse)
    h.track("u3", "Order Completed", {"revenue": 7})
    reader = CountingReader(h)
    with keeper(h, reader, path).current() as warehouse:
        assert reader.scans == 0
        assert len(contents(warehouse)[0]) == len(before[0]) + 1
        assert contents(warehouse) == fresh_contents(h)


def test_it_is_rebuilt_when_events_would_be_attributed_otherwise(tmp_path: Path) -> None:
    h = JourneyHarness()
    shop(h)
    path = tmp_path / "warehouse.duckdb"
    with keeper(h, CountingReader(h), path).current():
        pass
    reader = CountingReader(h)
    other = IdentitySettings(external_ids=["crm_id", "shop_id"])
    kept = KeptWarehouse(h.stores.events, reader, h.stores.delivery, other, path)
    with kept.current() as warehouse:
        assert reader.scans > 0
        assert contents(warehouse) == fresh_contents(h)


def test_it_is_rebuilt_over_stores_behind_it(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    bigger = JourneyHarness()
    shop(bigger, customers=6)
    with keeper(bigger, CountingReader(bigger), path).current():
        pass
    smaller = JourneyHarness()  # as after restoring an older copy of the data directory
    shop(smaller, customers=2)
    with keeper(smaller, CountingReader(smaller), path).current() as warehouse:
        assert warehouse.profile_count() == 2
        assert contents(warehouse) == fresh_contents(smaller)


def test_it_is_rebuilt_over_another_log_that_got_further(tmp_path: Path) -> None:
    """A backup restored and written to since: its seqs pass the warehouse's, with other
    events under them."""
    path = tmp_path / "warehouse.duckdb"
    first = JourneyHarness()
    shop(first, customers=2)
    with keeper(first, CountingReader(first), path).current():
        pass
    other = JourneyHarness()
    for n in range(8):
        other.send({"userId": f"v{n}", "event": "Signed Up", "messageId": f"other-{n}"})
    assert other.stores.profiles.processed_seq() > first.stores.profiles.processed_seq()
    with keeper(other, CountingReader(other), path).current() as warehouse:
        assert contents(warehouse) == fresh_contents(other)


def test_a_catch_up_cut_off_half_way_loads_every_profile_again(tmp_path: Path) -> None:
    h = JourneyHarness()
    shop(h)
    path = tmp_path / "warehouse.duckdb"
    with keeper(h, CountingReader(h), path).current():
        pass
    h.send({"type": "identify", "userId": "u1", "traits": {"vip": True}})
    # As if the process died after copying the new events, before reloading profiles.
    with Warehouse(str(path)) as warehouse:
        warehouse.sync_events(h.stores.events, IdentityRules(IdentitySettings()))
    reader = CountingReader(h)
    with keeper(h, reader, path).current() as warehouse:
        assert reader.scans > 0
        assert contents(warehouse) == fresh_contents(h)


def test_a_file_duckdb_cannot_read_is_rebuilt(tmp_path: Path) -> None:
    h = JourneyHarness()
    shop(h)
    path = tmp_path / "warehouse.duckdb"
    path.write_bytes(b"not a database" * 100)
    with keeper(h, CountingReader(h), path).current() as warehouse:
        assert contents(warehouse) == fresh_contents(h)


def test_the_file_is_locked_while_in_use_only(tmp_path: Path) -> None:
    h = JourneyHarness()
    shop(h, customers=1)
    path = tmp_path / "data" / "warehouse.duckdb"
    lock = tmp_path / "data" / "warehouse.duckdb.lock"
    with (
        keeper(h, CountingReader(h), path).current(),
        lock.open("a") as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with lock.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_keep_warm_catches_the_file_up_until_stopped(tmp_path: Path) -> None:
    import threading

    from safar.runtime.warehouse_keeper import keep_warm
    from safar.testing import wait_until

    h = JourneyHarness()
    shop(h)
    path = tmp_path / "warehouse.duckdb"
    kept = KeptWarehouse(h.stores.events, h.stores.profiles, None, IdentitySettings(), path)
    stop = threading.Event()
    warm = threading.Thread(target=keep_warm, args=(kept, stop, 0.01), daemon=True)
    warm.start()

    def copied() -> int:
        with _opened(path) as warehouse:
            return warehouse.last_seq()

    try:
        wait_until(lambda: path.exists() and copied() == h.stores.profiles.processed_seq())
        h.track("u1", "Order Completed", {"revenue": 5})
        wait_until(lambda: copied() == h.stores.profiles.processed_seq())
    finally:
        stop.set()
        warm.join(5)
    assert not warm.is_alive()


def _opened(path: Path) -> Any:
    """The warehouse file, opened under the keeper's lock (as another process would)."""
    from contextlib import contextmanager

    @contextmanager
    def opened() -> Any:
        with (path.with_name(path.name + ".lock")).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            warehouse = Warehouse(str(path))
            try:
                yield warehouse
            finally:
                warehouse.close()
                fcntl.flock(lock, fcntl.LOCK_UN)

    return opened()
