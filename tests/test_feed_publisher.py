"""The feed publisher: every applied event goes once to its customer's partition, in order, and a
merge across partitions hands the merged customer over (ADR 12)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.config import IdentitySettings
from safar.core.assignment import partition_of
from safar.core.identity import IdentityRules
from safar.model.events import Event
from safar.model.work import WorkItem
from safar.runtime.publisher import PUBLISH_BATCH, FeedPublisher
from safar.stores.memory.profiles import MemoryProfileStore
from safar.stores.memory.work import MemoryWorkFeed
from tests.test_profiler import Harness, ev


class Setup:
    """Profiles folded from a list log, published to a memory feed of ``partitions``."""

    def __init__(self, partitions: int, *, routes: bool = True) -> None:
        """``routes``: the publisher takes the profile processor's routes as hints."""
        self.harness = Harness(MemoryProfileStore())
        self.feed = MemoryWorkFeed(partitions)
        self.publisher = FeedPublisher(
            self.harness.log,
            self.harness.store,
            self.feed,
            IdentityRules(IdentitySettings()),
            routes=self.harness.processor.keep_routes() if routes else None,
        )

    def send(self, *events: Event, batch: int = 5000) -> None:
        self.harness.send(*events, batch=batch)

    def publish(self, batch: int = 5000) -> None:
        while self.publisher.run_once(batch):
            pass

    def items(self) -> dict[int, list[WorkItem]]:
        return {
            p: [i for b in self.feed.read(p, 0, 10**9) for i in b.items]
            for p in range(self.feed.partitions)
        }


def test_every_applied_event_goes_once_to_its_customers_partition_in_order() -> None:
    setup = Setup(partitions=4)
    users = [f"u{n}" for n in range(12)]
    setup.send(*(ev(user=u, event="Viewed") for _ in range(3) for u in users))
    setup.publish(batch=7)
    items = setup.items()
    assert setup.feed.published_seq() == setup.harness.log.last_seq() == 36
    seen = [i.seq for found in items.values() for i in found]
    assert sorted(seen) == list(range(1, 37))
    for partition, found in items.items():
        assert [i.seq for i in found] == sorted(i.seq for i in found)
        for item in found:
            assert partition_of(item.profile_id, 4) == partition
            assert not item.waits and not item.is_handover
    for user in users:
        profile = setup.harness.find(("user_id", user))
        assert {i.seq for i in items[partition_of(profile.id, 4)] if i.profile_id == profile.id}
        assert sum(i.profile_id == profile.id for f in items.values() for i in f) == 3


def test_nothing_is_published_before_the_profile_processor_applied_it() -> None:
    setup = Setup(partitions=2)
    setup.send(ev(user="u1"))
    setup.harness.log.append([ev(user="u2"), ev(user="u3")])  # appended, not yet processed
    setup.publish()
    assert setup.feed.published_seq() == 1
    assert sum(len(found) for found in setup.items().values()) == 1


def _two_partitions(routes: bool = True) -> tuple[int, Setup, str, str]:
    """A setup where the first two profiles (``p1`` for a1, ``p2`` for u1) fall in different
    partitions."""
    for partitions in range(2, 16):
        if partition_of("p1", partitions) != partition_of("p2", partitions):
            return partitions, Setup(partitions, routes=routes), "p1", "p2"
    raise AssertionError("no partition count separates p1 and p2")


def test_remembered_routes_spare_the_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = Setup(partitions=4)
    lookups: list[int] = []
    find_many = setup.harness.store.find_many
    monkeypatch.setattr(
        setup.harness.store, "find_many", lambda ids: lookups.append(len(ids)) or find_many(ids)
    )
    setup.send(*(ev(user=f"u{n}", event="Viewed") for n in range(10)))
    setup.publish()
    assert lookups == []
    setup.harness.processor.routes.clear()  # forgotten (a restart): looked up instead
    setup.send(ev(user="u1"), ev(user="u2"))
    setup.harness.processor.routes.clear()
    setup.publish()
    assert lookups == [2]
    assert sum(len(found) for found in setup.items().values()) == 12


def test_a_range_whose_routes_are_all_remembered_is_published_without_reading_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = Setup(partitions=4)
    reads: list[int] = []
    read = setup.harness.log.read
    monkeypatch.setattr(
        setup.harness.log, "read", lambda after, limit: reads.append(after) or read(after, limit)
    )
    setup.send(*(ev(user=f"u{n}", event="Viewed") for n in range(10)))
    setup.send(*(msgspec.structs.replace(ev(user=f"v{n}"), name="Bought") for n in range(2)))
    reads.clear()  # the profile processor's own reads
    setup.publish(batch=4)
    assert reads == []
    items = setup.items()
    assert sorted(i.seq for found in items.values() for i in found) == list(range(1, 13))
    names = {i.seq: i.name for found in items.values() for i in found}
    assert names == {**dict.fromkeys(range(1, 11), ""), 11: "Bought", 12: "Bought"}

    setup.send(ev(user="u1", event="Viewed"), ev(user="u2"))
    assert setup.harness.processor.routes is not None
    del setup.harness.processor.routes[14]  # one forgotten: the range is read
    reads.clear()
    setup.publish()
    assert reads == [12]
    assert sum(len(found) for found in setup.items().values()) == 14


def test_published_routes_are_taken_out_of_the_processors_memory() -> None:
    setup = Setup(partitions=4)
    setup.send(*(ev(user=f"u{n}", event="Viewed") for n in range(10)))
    routes = setup.harness.processor.routes
    assert routes is not None and len(routes) == 10
    setup.publish(batch=4)
    assert routes == {}


def test_a_stepper_with_a_feed_publishes_a_whole_batch_a_turn_without_lookups(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from safar.config import load_settings
    from safar.runtime.worker import Worker
    from safar.stores.bundle import memory_stores
    from safar.testing import FakeClock

    clock = FakeClock()
    stores = memory_stores(clock)
    feed = MemoryWorkFeed(4)
    worker = Worker(stores, load_settings(data_dir=tmp_path, environ={}), clock, feed=feed)
    lookups: list[int] = []
    find_many = stores.profiles.find_many
    monkeypatch.setattr(
        stores.profiles, "find_many", lambda ids: lookups.append(len(ids)) or find_many(ids)
    )
    events = [ev(user=f"u{n % 300}", event="Viewed", ts=n) for n in range(PUBLISH_BATCH + 1000)]
    stores.events.append(events)
    worker.step_once()  # the very first turn: the processor's routes are kept from its start
    assert feed.published_seq() == len(events)
    assert lookups == []


@pytest.mark.parametrize("routes", [True, False])
def test_a_merge_across_partitions_hands_the_customer_over_and_waits_for_it(routes: bool) -> None:
    partitions, setup, anon_profile, user_profile = _two_partitions(routes)
    setup.send(ev(anon="a1", event="Viewed"), ev(anon="a1", event="Viewed"))
    setup.send(ev(user="u1", event="Signed Up"))
    setup.publish()
    assert setup.harness.find(("anonymous_id", "a1")).id == anon_profile
    assert setup.harness.find(("user_id", "u1")).id == user_profile
    setup.send(ev("identify", user="u1", anon="a1"), ev(user="u1", event="Viewed"))
    setup.publish()

    merged = setup.harness.find(("user_id", "u1"))
    assert setup.harness.find(("anonymous_id", "a1")).id == merged.id
    gone = ({anon_profile, user_profile} - {merged.id}).pop()
    home, away = partition_of(merged.id, partitions), partition_of(gone, partitions)
    items = setup.items()
    handovers = [i for i in items[away] if i.is_handover]
    assert handovers == [WorkItem(4, merged.id, handover=home, moves=(gone,))]
    # Everything of the customer the old partition holds comes before the handover.
    assert all(i.seq < 4 for i in items[away] if not i.is_handover)
    waiting = [i for i in items[home] if i.waits]
    assert waiting == [WorkItem(4, merged.id, waits=(away,), name="")]  # an identify call
    assert [i.seq for i in items[home] if i.seq > 3] == [4, 5]


@pytest.mark.parametrize("batch", [1, 2, 100])
def test_a_merge_in_one_partition_needs_no_handover(batch: int) -> None:
    setup = Setup(partitions=1)
    setup.send(ev(anon="a1"), ev(user="u1"), ev("identify", user="u1", anon="a1"))
    setup.publish(batch=batch)
    found = setup.items()[0]
    assert [i.seq for i in found] == [1, 2, 3]
    assert not any(i.waits or i.is_handover for i in found)


_people = st.sampled_from(["u1", "u2", "u3", None])
_devices = st.sampled_from(["a1", "a2", "a3", "a4", None])


@st.composite
def _streams(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = []
    for n in range(draw(st.integers(1, 25))):
        user, anon = draw(_people), draw(_devices)
        if user is None and anon is None:
            anon = "a1"
        kind = "identify" if user and anon and draw(st.booleans()) else "track"
        events.append(ev(kind, user=user, anon=anon, ts=1_000 + n, event="Viewed"))
    return events


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stream=_streams(),
    partitions=st.integers(1, 4),
    process_batch=st.integers(1, 6),
    publish_batch=st.integers(1, 6),
    publish_every=st.integers(1, 4),
    routes=st.booleans(),
)
def test_any_stream_is_published_once_in_order_with_a_handover_for_every_move(
    stream: list[Event],
    partitions: int,
    process_batch: int,
    publish_batch: int,
    publish_every: int,
    routes: bool,
) -> None:
    setup = Setup(partitions, routes=routes)
    for start in range(0, len(stream), publish_every):
        setup.send(*stream[start : start + publish_every], batch=process_batch)
        setup.publish(batch=publish_batch)
    items = setup.items()
    events = [i for found in items.values() for i in found if not i.is_handover]
    assert sorted(i.seq for i in events) == list(range(1, len(stream) + 1))
    home_of: dict[str, int] = {}
    for partition, found in items.items():
        assert [i.seq for i in found] == sorted({i.seq for i in found}), "strictly increasing"
        for item in found:
            if not item.is_handover:
                assert partition_of(item.profile_id, partitions) == partition
                home_of[item.profile_id] = partition
    # Every item in a partition other than where its customer lives now is followed there by a
    # handover of the customer, which the customer's item in the next partition waits for; the
    # chain of handovers ends where the customer lives.
    waits: dict[tuple[int, int], set[int]] = defaultdict(set)
    for partition, found in items.items():
        for item in found:
            waits[(partition, item.seq)].update(item.waits)
    identifiers = [("user_id", u) for u in ("u1", "u2", "u3")]
    identifiers += [("anonymous_id", a) for a in ("a1", "a2", "a3", "a4")]
    customers = list(
        {p.id: p for p in setup.harness.store.find_many(identifiers).values()}.values()
    )
    for partition, found in items.items():
        for item in found:
            if item.is_handover:
                continue
            now = next(p for p in customers if item.profile_id in (p.id, *p.merged_from))
            home = partition_of(now.id, partitions)
            at, seq, pid = partition, item.seq, item.profile_id
            while at != home:
                handover = next(
                    h
                    for h in items[at]
                    if h.is_handover and h.seq > seq and pid in (h.profile_id, *h.moves)
                )
                assert handover.handover is not None
                assert at in waits[(handover.handover, handover.seq)], handover
                at, seq, pid = handover.handover, handover.seq, handover.profile_id
