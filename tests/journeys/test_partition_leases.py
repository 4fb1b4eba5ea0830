"""Workers sharing partitions through leases (safar.runtime.partitions): never two holding one
partition, shares rebalanced within about a lease when a worker joins, stops or dies."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from safar.core.assignment import assign
from safar.errors import StoreError
from safar.model.leases import Fence
from safar.ports import LeaseStore
from safar.runtime.partitions import (
    PARTITION_PREFIX,
    PartitionLeases,
    live_workers,
    partition_lease,
    worker_lease,
)
from safar.stores.memory.leases import MemoryLeaseStore
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.leases import SqliteLeaseStore, check_fence
from safar.testing import FakeClock

TTL = 15_000
P = 16
STEP = TTL // 10
ALL = set(range(P))


class Cluster:
    """Workers on one lease store and clock; :meth:`round` has the running ones call ``hold``
    and checks what they got against the store."""

    def __init__(self, leases: LeaseStore, clock: FakeClock) -> None:
        self.leases = leases
        self.clock = clock
        self.workers: dict[str, PartitionLeases] = {}
        self.running: set[str] = set()
        self.held: dict[str, dict[int, Fence]] = {}
        # The owner and epoch each partition was last returned with.
        self.last: dict[int, tuple[str, int]] = {}

    def join(self, owner: str, leases: LeaseStore | None = None) -> None:
        self.workers[owner] = PartitionLeases(leases or self.leases, owner, self.clock, TTL, P)
        self.running.add(owner)

    def stop(self, owner: str) -> None:
        """Leave cleanly."""
        self.running.discard(owner)
        self.held.pop(owner, None)
        self.workers.pop(owner).release_all()

    def kill(self, owner: str) -> None:
        """Stop calling ``hold`` without a word, as a killed or frozen process does."""
        self.running.discard(owner)
        self.held.pop(owner, None)

    def round(self) -> None:
        for owner in sorted(self.running):
            self.held[owner] = self.workers[owner].hold()
        self.check()

    def advance(self, ms: int) -> None:
        self.clock.advance(ms=ms)
        self.round()

    def shares(self) -> dict[str, set[int]]:
        return {owner: set(fences) for owner, fences in self.held.items()}

    def check(self) -> None:
        holders = self.leases.holders(self.clock.now_ms())
        seen: set[int] = set()
        for owner, fences in self.held.items():
            for partition, fence in fences.items():
                assert fence.name == partition_lease(partition)
                assert fence.owner == owner
                # What a worker uses, the store says it holds now: so no two workers at once.
                assert holders.get(fence.name) == owner
                assert partition not in seen
                seen.add(partition)
                # The epoch grows by one on each hand-over and never otherwise.
                last_owner, last_epoch = self.last.get(partition, (owner, 1))
                assert fence.epoch == (last_epoch if last_owner == owner else last_epoch + 1)
                self.last[partition] = (owner, fence.epoch)
        assert live_workers(holders) >= self.running

    def converged(self) -> bool:
        expected = assign(P, self.running)
        return self.shares() == {owner: set(share) for owner, share in expected.items()}

    def settle_within(self, ms: int) -> int:
        """Advance in steps until the shares are the assignment; the time it took."""
        started = self.clock.now_ms()
        while not self.converged():
            assert self.clock.now_ms() - started < ms, self.shares()
            self.advance(STEP)
        return self.clock.now_ms() - started


@pytest.fixture
def cluster(clock: FakeClock) -> Cluster:
    return Cluster(MemoryLeaseStore(), clock)


def test_a_lone_worker_takes_every_partition(cluster: Cluster) -> None:
    cluster.join("w1")
    cluster.round()
    assert cluster.shares() == {"w1": ALL}
    assert {fence.epoch for fence in cluster.held["w1"].values()} == {1}


def test_a_second_worker_gets_half_within_a_lease(cluster: Cluster) -> None:
    cluster.join("w1")
    cluster.round()
    counting = CountingLeases(cluster.leases)
    cluster.join("w2", counting)
    cluster.round()
    assert cluster.shares() == {"w1": ALL, "w2": set()}  # w1 has not let go yet
    cluster.settle_within(TTL)
    assert counting.refused == 0  # it waits for w1 to let go rather than asking in vain
    assert sorted(len(share) for share in cluster.shares().values()) == [P // 2, P // 2]
    moved = cluster.held["w2"].values()
    assert {fence.epoch for fence in moved} == {2}  # handed over once
    assert {fence.epoch for fence in cluster.held["w1"].values()} == {1}


def test_the_partitions_of_a_dead_worker_are_taken_after_its_lease(cluster: Cluster) -> None:
    cluster.join("w1")
    cluster.join("w2")
    cluster.round()
    cluster.settle_within(TTL)
    theirs = set(cluster.held["w2"])
    died = cluster.clock.now_ms()
    cluster.kill("w2")
    while cluster.clock.now_ms() - died < TTL - STEP:
        cluster.advance(STEP)
        assert set(cluster.held["w1"]).isdisjoint(theirs)  # still w2's lease
    cluster.settle_within(TTL)
    assert cluster.shares() == {"w1": ALL}
    assert cluster.clock.now_ms() - died <= TTL + TTL // 3 + STEP
    # Came back after w2 held them: a new epoch tells w1 to rebuild what it cached.
    assert {cluster.held["w1"][partition].epoch for partition in theirs} == {3}


def test_a_clean_stop_hands_over_at_the_next_refresh(cluster: Cluster) -> None:
    cluster.join("w1")
    cluster.join("w2")
    cluster.round()
    cluster.settle_within(TTL)
    cluster.stop("w2")
    assert cluster.leases.holders(cluster.clock.now_ms()).keys() == {
        worker_lease("w1"),
        *(partition_lease(n) for n in cluster.held["w1"]),
    }
    cluster.advance(TTL // 3 + 1)  # w1's next refresh
    assert cluster.shares() == {"w1": ALL}


def test_hold_touches_the_store_only_once_a_third_of_a_lease(cluster: Cluster) -> None:
    counting = CountingLeases(cluster.leases)
    cluster.join("w1", counting)
    cluster.round()
    calls = counting.calls
    for _ in range(10):
        cluster.advance(TTL // 3 // 10)
    assert counting.calls == calls
    cluster.advance(TTL // 3)
    assert counting.calls > calls
    assert cluster.shares() == {"w1": ALL}


def test_a_store_failure_forgets_every_partition(cluster: Cluster) -> None:
    failing = CountingLeases(cluster.leases)
    cluster.join("w1", failing)
    cluster.round()
    cluster.clock.advance(ms=TTL // 3 + 1)
    failing.down = True
    with pytest.raises(StoreError):
        cluster.workers["w1"].hold()
    # Not trusted any more: the next call goes to the store again rather than to a cache.
    with pytest.raises(StoreError):
        cluster.workers["w1"].hold()
    failing.down = False
    cluster.round()  # back, with the same epochs: nobody else held them in between
    assert cluster.shares() == {"w1": ALL}


def test_a_partition_lost_between_reading_and_renewing_is_left_out(cluster: Cluster) -> None:
    racing = CountingLeases(cluster.leases)
    cluster.join("w1", racing)
    cluster.round()
    cluster.clock.advance(ms=TTL)  # frozen just long enough for every lease to run out
    racing.snatch.add(partition_lease(3))
    cluster.held["w1"] = cluster.workers["w1"].hold()
    assert racing.refused == 1
    assert set(cluster.held["w1"]) == ALL - {3}
    cluster.check()


def test_a_frozen_worker_wakes_up_without_what_was_taken_over(cluster: Cluster) -> None:
    cluster.join("w1")
    cluster.join("w2")
    cluster.round()
    cluster.settle_within(TTL)
    before = dict(cluster.held["w2"])
    cluster.kill("w2")  # frozen
    cluster.settle_within(2 * TTL)
    cluster.running.add("w2")  # wakes up
    cluster.round()
    assert cluster.held["w2"] == {}
    cluster.settle_within(TTL)
    # Its share again, but each partition at a new epoch: w1 stepped it in between.
    assert cluster.held["w2"].keys() == before.keys()
    assert all(cluster.held["w2"][n].epoch == fence.epoch + 2 for n, fence in before.items())


def test_partition_leases_on_sqlite(tmp_path: Path, clock: FakeClock) -> None:
    """Two processes (a database each) on one SQLite file: a split, a death, a takeover, and the
    dead worker's old fence refused by the store."""
    databases = [Database(tmp_path / "safar.db", synchronous="off") for _ in range(3)]
    try:
        stores = [SqliteLeaseStore(db) for db in databases]
        cluster = Cluster(stores[0], clock)
        cluster.join("w1", stores[1])
        cluster.join("w2", stores[2])
        cluster.round()
        cluster.settle_within(TTL)
        assert sorted(len(share) for share in cluster.shares().values()) == [P // 2, P // 2]
        stale = next(iter(cluster.held["w2"].values()))
        cluster.kill("w2")
        cluster.settle_within(2 * TTL)
        assert cluster.shares() == {"w1": ALL}
        with databases[0].write() as conn, pytest.raises(StoreError, match="was lost"):
            check_fence(conn, stale)
        fresh = cluster.held["w1"][int(stale.name.removeprefix(PARTITION_PREFIX))]
        with databases[0].write() as conn:
            check_fence(conn, fresh)
    finally:
        for db in databases:
            db.close()


class CountingLeases:
    """A lease store that counts calls and can be cut off."""

    def __init__(self, leases: LeaseStore) -> None:
        self._leases = leases
        self.calls = 0
        self.refused = 0
        self.down = False
        #: Leases another owner takes just before the next acquire of them.
        self.snatch: set[str] = set()

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreError("lease store unreachable")

    def acquire(self, name: str, owner: str, now: int, ttl_ms: int) -> int | None:
        self._call()
        if name in self.snatch:
            self.snatch.discard(name)
            assert self._leases.acquire(name, "intruder", now, ttl_ms) is not None
        epoch = self._leases.acquire(name, owner, now, ttl_ms)
        self.refused += epoch is None
        return epoch

    def release(self, name: str, owner: str) -> None:
        self._call()
        self._leases.release(name, owner)

    def holders(self, now: int) -> dict[str, str]:
        self._call()
        return self._leases.holders(now)


class Workers(RuleBasedStateMachine):
    """Random joins, clean stops, deaths, freezes and the passing of time: never two holders of
    a partition, and the assignment reached once the running set has been still for 2 leases."""

    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster(MemoryLeaseStore(), FakeClock())
        self.names = (f"w{n}" for n in itertools.count(1))
        self.frozen: set[str] = set()
        self.still_since = self.cluster.clock.now_ms()

    def _changed(self) -> None:
        self.still_since = self.cluster.clock.now_ms()

    @precondition(lambda self: len(self.cluster.running) + len(self.frozen) < 5)
    @rule()
    def join(self) -> None:
        self.cluster.join(next(self.names))
        self._changed()
        self.cluster.round()

    @precondition(lambda self: self.cluster.running)
    @rule(pick=st.integers(0, 10), how=st.sampled_from(["stop", "kill", "freeze"]))
    def leave(self, pick: int, how: str) -> None:
        owner = sorted(self.cluster.running)[pick % len(self.cluster.running)]
        if how == "stop":
            self.cluster.stop(owner)
        else:
            self.cluster.kill(owner)
            if how == "freeze":
                self.frozen.add(owner)
        self._changed()
        self.cluster.round()

    @precondition(lambda self: self.frozen)
    @rule(pick=st.integers(0, 10))
    def thaw(self, pick: int) -> None:
        owner = sorted(self.frozen)[pick % len(self.frozen)]
        self.frozen.discard(owner)
        self.cluster.running.add(owner)
        self._changed()
        self.cluster.round()

    @rule(ms=st.integers(1, STEP))
    def advance(self, ms: int) -> None:
        self.cluster.advance(ms)
        if self.cluster.clock.now_ms() - self.still_since >= 2 * TTL:
            assert self.cluster.converged(), self.cluster.shares()

    @rule()
    def wait_two_leases(self) -> None:
        while self.cluster.clock.now_ms() - self.still_since < 2 * TTL:
            self.cluster.advance(STEP)
        assert self.cluster.converged(), self.cluster.shares()


Workers.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_workers_share_partitions_safely = Workers.TestCase
