"""Journeys and audiences: entry on segment entry, a segment's members on a schedule, branches
on membership, and journeys that see a customer's segments as of the event they handle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from safar.core.assignment import partition_of
from safar.definitions import parse_audience, parse_journey
from safar.definitions.validate import validate_journey
from safar.testing.journeys import JourneyHarness

pytestmark = pytest.mark.usefixtures("journey_modes")

#: Monday 2026-11-16 12:00 UTC.
START = int(datetime(2026, 11, 16, 12, 0, tzinfo=UTC).timestamp() * 1000)
BUYERS = "{id: buyers, name: Buyers, where: {performed: Order Completed, at_least: 2}}"


def harness() -> JourneyHarness:
    h = JourneyHarness(start=START)
    h.publish_audience(parse_audience(BUYERS))
    return h


def customer(h: JourneyHarness, uid: str) -> None:
    h.identify(uid, {"email": f"{uid}@shop.example", "timezone": "UTC"})


def subjects(h: JourneyHarness, uid: str) -> list[str]:
    pid = h.profile(uid).id
    return [m.subject or "" for m in h.sent if m.profile_id == pid]


def test_customers_enter_when_they_enter_the_segment_and_only_then() -> None:
    h = harness()
    h.publish(
        parse_journey(
            "id: thanks\nname: Thanks\nentry: {segment: buyers}\n"
            "steps:\n  - id: hello\n    send: {channel: email, template: thank_you}\n"
        )
    )
    customer(h, "sara")
    customer(h, "reza")
    h.track("sara", "Order Completed")
    h.track("reza", "Order Completed")
    assert h.sent == []
    h.track("sara", "Order Completed")
    assert subjects(h, "sara") == ["thank_you"]
    # Staying in the segment enters nobody again; another segment's entry enters nobody.
    h.track("sara", "Order Completed")
    h.publish_audience(parse_audience("{id: all, name: All, where: {identifier: user_id}}"))
    assert subjects(h, "sara") == ["thank_you"]
    assert subjects(h, "reza") == []


def test_a_schedule_with_a_segment_enters_its_members_at_each_tick() -> None:
    h = harness()
    for uid in ("sara", "reza"):
        customer(h, uid)
    h.track("sara", "Order Completed")
    h.track("sara", "Order Completed")
    h.publish(
        parse_journey(
            "id: weekly\nname: Weekly\n"
            'entry: {segment: buyers, schedule: "0 9 * * *", reentry: always}\n'
            "steps:\n  - id: news\n    send: {channel: email, template: buyers_news}\n"
        )
    )
    h.advance(days=1)
    assert subjects(h, "sara") == ["buyers_news"]
    assert subjects(h, "reza") == []


def test_branches_read_the_segments_as_of_the_event() -> None:
    """The Order Completed that makes Sara a buyer is the one the journey handles: the branch
    already sees her in the segment."""
    h = harness()
    h.publish(
        parse_journey(
            "id: order\nname: Order\nentry: {event: Order Completed, reentry: always}\n"
            "steps:\n"
            "  - id: check\n"
            "    branch:\n"
            "      - if: \"'buyers' in profile.segments\"\n"
            "        next: loyal\n"
            "      - else: first\n"
            "  - id: loyal\n    send: {channel: email, template: loyal}\n    next: exit\n"
            "  - id: first\n    send: {channel: email, template: first}\n"
        )
    )
    customer(h, "sara")
    h.track("sara", "Order Completed")
    h.track("sara", "Order Completed")
    assert subjects(h, "sara") == ["first", "loyal"]


def test_an_entry_names_an_event_or_a_segment_not_both() -> None:
    journey = parse_journey(
        "id: both\nname: Both\nentry: {event: Signed Up, segment: buyers}\n"
        "steps:\n  - id: a\n    exit: true\n"
    )
    assert [p.field for p in validate_journey(journey)] == ["entry.segment"]


def test_journeys_wait_for_audiences_to_handle_an_event() -> None:
    """The runtime reads profiles through the audience reader, whose cursor is the lower of the
    profile and audience processors': an event folded into profiles but not yet into audiences
    is not handed to journeys. With a work feed, a partition's journeys step no further than
    its audience cursor."""
    h = harness()
    customer(h, "sara")
    before = h.stores.audiences.processed_seq()
    h.stores.events.append([h.event({"userId": "sara", "event": "Order Completed"})])
    assert h.profiler.run_once() == 1
    last = h.stores.profiles.processed_seq()
    assert last > before
    if h.publisher is None or h.feed is None:
        assert h.reader.processed_seq() == before
        assert h.runtime.run_events() == 0
        h.run()
        assert h.reader.processed_seq() == last
        return
    assert h.publisher.run_once() == 1
    held = dict.fromkeys(range(h.feed.partitions))
    cursors = {p: h.stores.audiences.processed_seq(p) for p in held}
    assert h.runtime.run_partitions(h.feed, held, limits=cursors) == 0
    h.run()
    home = partition_of(h.profile("sara").id, h.feed.partitions)
    assert h.stores.audiences.processed_seq(home) == h.stores.runs.processed_seq(home) == last
