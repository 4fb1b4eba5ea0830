"""Journeys stepped by partition owners from a work feed (ADR 12): a customer who was two customers
in two partitions is handed over in order; schedules enter through entry requests; two partition
workers on SQLite share the partitions, and one taking over from a dead one loses nothing."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from safar.config import load_settings
from safar.core.assignment import partition_of
from safar.model.journeys import Entry, Journey, Send, Wait
from safar.ports import WorkFeed
from safar.runtime.catalog import publish
from safar.runtime.partitioned import PartitionWorker
from safar.runtime.partitions import PARTITION_PREFIX
from safar.runtime.worker import Worker
from safar.stores.bundle import Stores, open_sqlite_stores
from safar.stores.memory.work import MemoryWorkFeed
from safar.stores.sqlite.work import SqliteWorkFeed
from safar.testing import FakeClock
from safar.testing.journeys import JourneyHarness, RecordingChannel

HOUR = 3_600_000
ROOT = Path(__file__).resolve().parents[2]


def reminder(journey_id: str = "reminder", template: str = "t", **entry: Any) -> Journey:
    """An hour after entry, one email."""
    return Journey(
        id=journey_id,
        name=journey_id,
        entry=Entry(**({"event": "Product Added"} | entry)),
        steps=(
            Wait(id="later", duration_ms=HOUR),
            Send(id="mail", channel="email", template=template),
        ),
    )


def harness(partitions: int) -> JourneyHarness:
    h = JourneyHarness(partitions=partitions)
    h.publish(reminder())
    return h


def split_customers(h: JourneyHarness, partitions: int = 3) -> tuple[str, str]:
    """An anonymous visitor and a known customer whose profiles sit in different partitions (of
    ``partitions``; profile ids are the same in every harness)."""
    for n in range(50):
        h.send({"type": "track", "anonymousId": f"visitor{n}", "event": "Viewed"})
        h.identify(f"user{n}", {"email": f"user{n}@shop.example"})
        anon = h.reader.find(("anonymous_id", f"visitor{n}"))
        known = h.reader.find(("user_id", f"user{n}"))
        assert anon is not None and known is not None
        if partition_of(anon.id, partitions) != partition_of(known.id, partitions):
            return f"visitor{n}", f"user{n}"
    raise AssertionError("no two customers in different partitions")


def test_a_merge_across_partitions_steps_each_journey_once_in_order() -> None:
    h = harness(partitions=3)
    visitor, user = split_customers(h)
    h.send({"type": "track", "anonymousId": visitor, "event": "Product Added"})
    h.send({"type": "track", "userId": user, "event": "Product Added", "properties": {"sku": "b"}})
    # The visitor signs in: two customers, each inside the journey in their own partition,
    # become one.
    h.send({"type": "identify", "userId": user, "anonymousId": visitor})
    merged = h.reader.find(("user_id", user))
    assert merged is not None and merged.merged_from
    h.advance(hours=2)
    assert h.feed is not None
    handovers = [
        item
        for p in range(h.feed.partitions)
        for batch in h.feed.read(p, 0, 10**6)
        for item in batch.items
        if item.is_handover
    ]
    assert handovers, "the merge crossed partitions"
    instances, _ = h.stores.runs.history(merged.id, 10)
    for gone in merged.merged_from:
        instances += h.stores.runs.history(gone, 10)[0]
    assert sorted(i.status for i in instances) == ["exited", "exited"]
    # Both entries ran to the end once: one email each, to the customer they became.
    assert [m.to for m in h.sent] == [f"{user}@shop.example"] * 2
    home = partition_of(merged.id, h.feed.partitions)
    assert all(h.stores.runs.load([i.profile_id], home)[0] == [] for i in instances)


def test_a_merge_ends_every_journey_as_stepping_from_the_log_does() -> None:
    outcomes = []
    for partitions in (0, 3):
        h = harness(partitions)
        h.publish(reminder("second", event="Signed In"))
        visitor, user = split_customers(h)
        h.send({"type": "track", "anonymousId": visitor, "event": "Product Added"})
        h.advance(hours=0.5)
        h.send({"type": "track", "userId": user, "event": "Product Added"})
        h.send({"type": "identify", "userId": user, "anonymousId": visitor})
        h.send({"type": "track", "userId": user, "event": "Signed In"})
        h.advance(hours=3)
        profile = h.reader.find(("user_id", user))
        assert profile is not None
        found = []
        for pid in (profile.id, *profile.merged_from):
            instances, _ = h.stores.runs.history(pid, 10)
            found += [(i.journey_id, i.status) for i in instances]
        outcomes.append((sorted(found), sorted((m.to, m.subject) for m in h.sent)))
    assert outcomes[0] == outcomes[1]


def test_a_schedule_enters_customers_through_entry_requests() -> None:
    results = []
    for partitions in (0, 3):
        h = JourneyHarness(partitions=partitions)
        for n in range(6):
            h.identify(f"u{n}", {"email": f"u{n}@shop.example", "vip": n % 2 == 0})
        scheduled = Journey(
            id="weekly",
            name="weekly",
            entry=Entry(schedule="0 9 * * *", where="profile.traits.vip == true"),
            steps=(Send(id="mail", channel="email", template="t"),),
        )
        h.publish(scheduled)
        h.advance(days=1)
        results.append(Counter(m.to for m in h.sent))
    assert results[0] == results[1] == Counter({f"u{n}@shop.example": 1 for n in (0, 2, 4)})


# -- partition workers on SQLite ---------------------------------------------------------------


def sqlite_installation(tmp_path: Path, clock: FakeClock) -> tuple[Any, Stores]:
    """Settings for the shipped templates without quiet hours, and SQLite stores under them."""
    settings = load_settings(data_dir=tmp_path, environ={})
    (tmp_path / "policy.yaml").write_text("quiet_hours: false\n", encoding="utf-8")
    settings.journeys.policy_file = str(tmp_path / "policy.yaml")
    settings.journeys.templates_dir = str(ROOT / "examples/templates")
    return settings, open_sqlite_stores(settings, clock)


@pytest.mark.parametrize("feed_kind", ["memory", "sqlite"])
def test_two_partition_workers_share_the_partitions_and_one_takes_over_from_a_dead_one(
    tmp_path: Path, feed_kind: str
) -> None:
    clock = FakeClock()
    settings, stores = sqlite_installation(tmp_path, clock)
    settings.workers.lease_seconds = 3
    email = RecordingChannel("email")
    feed: WorkFeed = (
        MemoryWorkFeed(4)
        if feed_kind == "memory"
        else SqliteWorkFeed(tmp_path / "w.db", partitions=4)
    )
    try:
        publish(stores.journeys, reminder(template="welcome_1"), clock.now_ms())
        stepper = Worker(stores, settings, clock, channels={"email": email}, feed=feed)
        owners = [
            PartitionWorker(stores, settings, clock, feed, owner=name) for name in ("w1", "w2")
        ]

        def rounds(alive: list[PartitionWorker], times: int = 20) -> None:
            for _ in range(times):
                stepper.step_once()
                for owner in alive:
                    owner.step_once()
                stepper.dispatcher.run_once()

        def customers(first: int, count: int) -> None:
            events = []
            for n in range(first, first + count):
                body = {"email": f"c{n}@shop.example"}
                events.append(_event(f"i{n}", "identify", f"c{n}", clock.now_ms(), traits=body))
                events.append(
                    _event(f"a{n}", "track", f"c{n}", clock.now_ms(), name="Product Added")
                )
            stores.events.append(events)

        customers(0, 20)
        for _ in range(3):  # two refreshes: both workers see each other and split
            rounds(owners, 3)
            clock.advance(ms=1100)
        held = stores.leases.holders(clock.now_ms())
        split = Counter(o for n, o in held.items() if n.startswith(PARTITION_PREFIX))
        assert split == Counter({"w1": 2, "w2": 2})

        # w2 dies (is never called again): its partitions come to w1 after the lease.
        customers(20, 20)
        rounds(owners[:1])
        clock.advance(ms=4000)
        rounds(owners[:1])  # takes w2's partitions, where the new customers enter now
        clock.advance(ms=HOUR)
        rounds(owners[:1])
        held = stores.leases.holders(clock.now_ms())
        assert {o for n, o in held.items() if n.startswith(PARTITION_PREFIX)} == {"w1"}
        sent = Counter(m.to for m in email.sent)
        assert sent == Counter({f"c{n}@shop.example": 1 for n in range(40)})
    finally:
        feed.close()
        stores.close()


def _event(mid: str, kind: str, user: str, at: int, *, name: str | None = None, **body: Any) -> Any:
    from safar.model.events import Event, iso

    payload = {"type": kind, "userId": user, "messageId": mid, "timestamp": iso(at), **body}
    if name:
        payload["event"] = name
    return Event(
        source_id="test",
        message_id=mid,
        type=kind,
        name=name,
        user_id=user,
        timestamp=at,
        received_at=at,
        body=msgspec.json.encode(payload),
    )


def test_an_owner_loads_only_the_events_some_journey_may_want(monkeypatch: Any) -> None:
    h = harness(partitions=3)
    loaded: list[int] = []
    get = h.stores.events.get
    monkeypatch.setattr(h.stores.events, "get", lambda seqs: loaded.extend(seqs) or get(seqs))
    h.identify("sara", {"email": "sara@shop.example"})
    h.send({"type": "page", "userId": "sara", "name": "Home"})
    h.track("sara", "Product Viewed")
    h.track("sara", "Product Added")
    assert loaded == [h.stores.events.last_seq()]  # the Product Added only


class CountingFeed(MemoryWorkFeed):
    def __init__(self, partitions: int) -> None:
        super().__init__(partitions)
        self.reads = 0

    def read_many(self, after: Any, limit: int) -> Any:
        self.reads += 1
        return super().read_many(after, limit)


def test_an_idle_owner_asks_only_for_the_published_position_until_it_moves(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    settings, stores = sqlite_installation(tmp_path, clock)
    email = RecordingChannel("email")
    feed = CountingFeed(4)
    try:
        publish(stores.journeys, reminder(template="welcome_1"), clock.now_ms())
        stepper = Worker(stores, settings, clock, channels={"email": email}, feed=feed)
        owner = PartitionWorker(stores, settings, clock, feed, owner="w1")

        def add(n: int) -> None:
            stores.events.append(
                [_event(f"a{n}", "track", f"c{n}", clock.now_ms(), name="Product Added")]
            )
            while stepper.step_once():  # a pipelined profile batch is published a turn later
                pass

        add(0)
        assert owner.step_once() > 0
        # Reads the feed to its end; then once more with the published position read first.
        assert owner.step_once() == owner.step_once() == 0
        reads = feed.reads
        for _ in range(5):
            assert owner.step_once() == 0
        assert feed.reads == reads  # nothing published since: no partition was read

        add(1)
        # One read, for the partitions' audiences and then their journeys.
        assert owner.step_once() > 0 and feed.reads == reads + 1
        entered = stores.runs.load([p.id for p in stores.profiles.scan("", 10)])[0]
        assert len(entered) == 2
    finally:
        stores.close()


def test_an_owner_trims_the_feed_up_to_what_it_committed(tmp_path: Path) -> None:
    from safar.errors import StoreError

    with fed_owner(tmp_path, 8) as (stores, feed, owner):
        batches = {p: len(feed.read(p, 0, 99)) for p in range(2)}
        assert sum(batches.values()) >= 8
        while owner.step_once():
            pass
        assert owner.trim_once() == len([c for c in batches.values() if c])
        assert owner.trim_once() == 0  # nothing committed since
        for partition, count in batches.items():
            cursor = stores.runs.processed_seq(partition)
            assert feed.read(partition, cursor, 99) == []
            if count > 1:  # all but the last batch are gone
                with pytest.raises(StoreError, match="expired or were removed"):
                    feed.read(partition, 0, 99)


@pytest.mark.parametrize("skip", [False, True], ids=["waits", "skips"])
def test_a_partition_whose_items_are_gone_waits_or_goes_on_after_them(
    tmp_path: Path, skip: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with fed_owner(tmp_path, 12, skip_lost=skip) as (stores, feed, owner):
        customers = {f"c{n}": stores.profiles.find(("user_id", f"c{n}")) for n in range(12)}
        home = {user: partition_of(p.id, 2) for user, p in customers.items() if p is not None}
        batches = {p: feed.read(p, 0, 99) for p in range(2)}
        lossy = max(batches, key=lambda p: len(batches[p]))
        assert len(batches[lossy]) >= 3
        # The first two batches of one partition go before its owner read them.
        gap = batches[lossy][1].upto
        feed.trim(lossy, gap)
        lost = {i.profile_id for b in batches[lossy][:2] for i in b.items}
        with caplog.at_level(logging.ERROR, logger="safar.runtime.feed_gaps"):
            for _ in range(3):
                while owner.step_once():
                    pass
        entered = {
            i.profile_id for i in stores.runs.load([p.id for p in customers.values() if p])[0]
        }
        others = {customers[u].id for u, p in home.items() if p != lossy}  # type: ignore[union-attr]
        mine = {customers[u].id for u, p in home.items() if p == lossy}  # type: ignore[union-attr]
        assert others <= entered  # the other partition went on either way
        (logged,) = [r.getMessage() for r in caplog.records]  # once, however many rounds
        assert f"partition {lossy}" in logged and str(gap) in logged
        if skip:
            assert entered & mine == mine - lost and lost
            assert stores.runs.processed_seq(lossy) == stores.audiences.processed_seq(lossy)
            assert stores.runs.processed_seq(lossy) == batches[lossy][-1].upto
        else:
            assert not entered & mine
            assert stores.runs.processed_seq(lossy) == stores.audiences.processed_seq(lossy) == 0


@contextmanager
def fed_owner(
    tmp_path: Path, customers: int, **bus: Any
) -> Iterator[tuple[Stores, MemoryWorkFeed, PartitionWorker]]:
    """SQLite stores, a memory feed of 2 partitions holding a batch for each of ``customers``
    customers (c0, c1, …, each adding a product to a cart), and a partition owner (with these
    ``bus`` settings) that has read none of it."""
    clock = FakeClock()
    settings = load_settings(data_dir=tmp_path, environ={})
    settings.bus = msgspec.structs.replace(settings.bus, **bus)
    stores = open_sqlite_stores(settings, clock)
    feed = MemoryWorkFeed(2)
    try:
        publish(stores.journeys, reminder(), clock.now_ms())
        stepper = Worker(stores, settings, clock, feed=feed)
        owner = PartitionWorker(stores, settings, clock, feed, owner="w1")
        for n in range(customers):  # a batch each
            stores.events.append(
                [_event(f"a{n}", "track", f"c{n}", clock.now_ms(), name="Product Added")]
            )
            while stepper.step_once():  # a pipelined profile batch is published a turn later
                pass
        yield stores, feed, owner
    finally:
        stores.close()


def test_a_sqlite_feed_deleted_is_published_again_and_nothing_is_stepped_twice(
    tmp_path: Path,
) -> None:
    """The feed is not a store of record: without its file, the stepper publishes the whole
    log again and each partition goes on after what it had committed."""
    clock = FakeClock()
    settings, stores = sqlite_installation(tmp_path, clock)
    email = RecordingChannel("email")
    path = tmp_path / "work.db"

    def run(count: int, first: int) -> None:
        feed = SqliteWorkFeed(path, partitions=4)
        try:
            stepper = Worker(stores, settings, clock, channels={"email": email}, feed=feed)
            owner = PartitionWorker(stores, settings, clock, feed, owner="w1")
            for n in range(first, first + count):
                traits = {"email": f"c{n}@shop.example"}
                stores.events.append(
                    [
                        _event(f"i{n}", "identify", f"c{n}", clock.now_ms(), traits=traits),
                        _event(f"a{n}", "track", f"c{n}", clock.now_ms(), name="Product Added"),
                    ]
                )
                stepper.step_once()
                owner.step_once()
            while stepper.step_once() + owner.step_once() + stepper.dispatcher.run_once():
                pass
        finally:
            feed.close()

    try:
        publish(stores.journeys, reminder(template="welcome_1"), clock.now_ms())
        run(12, 0)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        run(6, 12)
        again = SqliteWorkFeed(path, partitions=4)
        try:  # published again from the log's start
            assert again.published_seq() == stores.events.last_seq()
            assert min(b.items[0].seq for p in range(4) for b in again.read(p, 0, 99)) == 1
        finally:
            again.close()
        assert email.sent == []
        clock.advance(ms=HOUR)
        run(0, 18)
        sent = Counter(m.to for m in email.sent)
        assert sent == Counter({f"c{n}@shop.example": 1 for n in range(18)})
    finally:
        stores.close()
