"""Audiences kept by partition owners (ADR 12): the history of a new aggregate is folded once,
by the coordinator, up to where the profile processor was when it gave the generation; a
partition's batch computed before that is refused and redone; a customer merged across
partitions ends in one partition with one membership."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from safar.core.assignment import partition_of
from safar.definitions import parse_audience
from safar.model.audiences import ComputedTrait
from safar.runtime import audience_catalog
from safar.testing.journeys import JourneyHarness

PARTITIONS = 3
ORDERS = "{id: orders, compute: {event: Order Completed}}"
BUYERS = "{id: buyers, name: Buyers, where: {performed: Order Completed}}"
USERS = [f"u{n}" for n in range(9)]


def order(h: JourneyHarness, user: str) -> None:
    """Append an order and run the profile processor and the publisher only: the partitions
    have not seen it yet."""
    h.stores.events.append([h.event({"type": "track", "userId": user, "event": "Order Completed"})])
    h.profiler.run_once()
    assert h.publisher is not None
    h.publisher.run_once()


def publish_only(h: JourneyHarness, text: str) -> None:
    """Publish a definition and let the coordinator give it its generation, nothing more."""
    definition = parse_audience(text)
    audience_catalog.publish(h.stores.audience_catalog, definition, h.clock.now_ms())
    h.audiences.refresh()


def orders_of(h: JourneyHarness, user: str) -> object:
    return h.profile(user).traits.get("orders")


def test_events_published_before_an_aggregate_are_counted_once() -> None:
    h = JourneyHarness(partitions=PARTITIONS)
    for user in USERS:
        h.identify(user, {})
    # Orders the partitions have not reached when the aggregate is published: up to its
    # generation they are the coordinator's history, not the partitions' live events.
    for user in USERS:
        order(h, user)
        order(h, user)
    publish_only(h, ORDERS)
    h.run()
    h.reader.invalidate()
    assert {user: orders_of(h, user) for user in USERS} == dict.fromkeys(USERS, 2)
    h.track(USERS[0], "Order Completed")
    assert orders_of(h, USERS[0]) == 3


def test_a_batch_read_before_a_new_generation_is_refused_then_redone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = JourneyHarness(partitions=PARTITIONS)
    for user in USERS:
        h.identify(user, {})
    assert h.feed is not None
    held = dict.fromkeys(range(PARTITIONS))
    h.partition_audiences.hold(held)
    for user in USERS:
        order(h, user)
    # The coordinator gives the aggregate a generation after the partitions read their jobs:
    # a batch they computed without it would miss these orders for good.
    publish_only(h, ORDERS)
    with caplog.at_level(logging.INFO, logger="safar.runtime.partition_audiences"):
        assert h.partition_audiences.run(h.feed, held).done == len(USERS)
    # Refused by the store, then computed again with the generation, in the same round.
    (redone,) = [r.getMessage() for r in caplog.records if "redone" in r.getMessage()]
    assert "generations" in redone
    h.run()
    h.reader.invalidate()
    assert {user: orders_of(h, user) for user in USERS} == dict.fromkeys(USERS, 1)


def test_a_customer_merged_across_partitions_keeps_one_membership() -> None:
    h = JourneyHarness(partitions=PARTITIONS)
    h.publish_audience(parse_audience(BUYERS))
    for n in range(50):
        visitor, user = f"visitor{n}", f"user{n}"
        h.send({"type": "track", "anonymousId": visitor, "event": "Order Completed"})
        h.identify(user, {})
        h.track(user, "Order Completed")
        anon = h.reader.find(("anonymous_id", visitor))
        known = h.reader.find(("user_id", user))
        assert anon is not None and known is not None
        if partition_of(anon.id, PARTITIONS) != partition_of(known.id, PARTITIONS):
            break
    else:
        raise AssertionError("no two customers in different partitions")
    h.send({"type": "identify", "userId": user, "anonymousId": visitor})
    merged = h.profile(user)
    assert merged.merged_from == [anon.id]
    members = {m.profile_id for m in h.stores.audiences.members("buyers", "", 1000)}
    assert merged.id in members and anon.id not in members
    assert merged.segments == ["buyers"]
    # The merged-away profile's membership was handed over, then deleted where the customer is.
    assert h.stores.audiences.memberships([anon.id]) == {}


def test_an_aggregate_is_not_folded_by_a_partition_before_it_has_a_generation() -> None:
    h = JourneyHarness(partitions=PARTITIONS)
    trait = parse_audience(ORDERS)
    assert isinstance(trait, ComputedTrait)
    h.identify("sara", {})
    # Published in the catalog, but the coordinator has not refreshed since.
    audience_catalog.publish(h.stores.audience_catalog, trait, h.clock.now_ms())
    h.partition_audiences.refresh()
    for _ in range(2):
        order(h, "sara")
    assert h.partition_audiences.run(h.feed, dict.fromkeys(range(PARTITIONS))).done  # type: ignore[arg-type]
    assert h.stores.audiences.folds([("user_id", "sara")]) == {}
    h.audiences.refresh()
    h.run()
    h.reader.invalidate()
    assert orders_of(h, "sara") == 2


@pytest.mark.parametrize("partitions", [0, PARTITIONS])
def test_segments_published_together_are_scanned_in_one_pass(
    partitions: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = JourneyHarness(partitions=partitions)
    for user in USERS:
        h.identify(user, {"vip": user in ("u1", "u2")})
    pages: list[tuple[str, tuple[int, int] | None]] = []
    scan = h.stores.profiles.scan

    def scanned(after: str, limit: int, partition: tuple[int, int] | None = None) -> Any:
        pages.append((after, partition))
        return scan(after, limit, partition)

    monkeypatch.setattr(h.stores.profiles, "scan", scanned)
    for text in (BUYERS, "{id: vips, name: VIPs, where: {trait: vip, eq: true}}"):
        audience_catalog.publish(h.stores.audience_catalog, parse_audience(text), h.clock.now_ms())
    h.audiences.refresh()
    h.run()
    # One page (fewer than a page of profiles) per processor for both segments, of the
    # processor's partition only.
    expected = [("", (n, partitions)) for n in range(partitions)] if partitions else [("", None)]
    assert sorted(pages, key=str) == sorted(expected, key=str)
    h.reader.invalidate()
    assert [u for u in USERS if "vips" in h.profile(u).segments] == ["u1", "u2"]
