"""What the audience processor reads of an event, and what it stores of a membership."""

from __future__ import annotations

import pytest

from safar.core.segments import reads_times
from safar.definitions import parse_audience
from safar.model.audiences import Aggregate
from safar.model.events import iso
from safar.testing.journeys import JourneyHarness


@pytest.mark.parametrize(
    ("where", "value", "reads"),
    [
        (None, None, False),
        ("event.properties.revenue > 10", "properties.revenue", False),
        ("event.timestamp > '2026-01-01T00:00:00Z'", None, True),
        ("has(event.receivedAt)", None, True),
        ("event['properties'] != null", None, True),
        ("size(event) > 3", None, True),
        (None, "timestamp", True),
        (None, "receivedAt", True),
        (None, "properties.timestamp", False),
    ],
)
def test_an_aggregate_reads_the_event_times_when_its_where_or_value_may(
    where: str | None, value: str | None, reads: bool
) -> None:
    kind = "count" if value is None else "last"
    assert reads_times(Aggregate(event="Seen", kind=kind, where=where, value=value)) is reads


def test_a_where_and_a_value_on_the_event_time_see_it() -> None:
    h = JourneyHarness()
    cutoff = iso(h.clock.now_ms() + 60_000)
    where = f"'event.timestamp > \"{cutoff}\"'"
    h.publish_audience(
        parse_audience(f"{{id: late_orders, compute: {{event: Order Completed, where: {where}}}}}")
    )
    h.publish_audience(
        parse_audience(
            "{id: last_order_at, compute: {event: Order Completed, kind: last, value: receivedAt}}"
        )
    )
    h.track("u1", "Order Completed")
    h.advance(ms=120_000)
    h.track("u1", "Order Completed")
    h.track("u1", "Order Completed")
    traits = h.profile("u1").traits
    assert traits["late_orders"] == 2
    assert traits["last_order_at"] == iso(h.clock.now_ms())


def test_a_membership_is_stored_under_the_identifier_the_customer_gains() -> None:
    h = JourneyHarness()
    h.publish_audience(parse_audience("{id: buyers, name: B, where: {performed: Order Completed}}"))
    h.send({"type": "track", "anonymousId": "a1", "event": "Order Completed"})
    h.send({"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {}})
    profile = h.profile("u1")
    assert profile.segments == ["buyers"]
    stored = h.stores.audiences.memberships([profile.id])[profile.id]
    assert stored.identifier == ("user_id", "u1")
