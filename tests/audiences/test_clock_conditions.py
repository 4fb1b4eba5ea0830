"""Segments whose CEL condition reads ``now`` change with time alone: each customer's next such
change is looked for ahead (:func:`safar.core.segments.next_flip`), and they are evaluated again
then, and at least once a day, with no event of theirs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from safar.core.segments import CLOCK_HORIZON_MS, next_flip
from safar.definitions import parse_audience
from safar.model.audiences import SEGMENT_ENTERED, SEGMENT_EXITED
from safar.model.events import iso
from safar.testing.journeys import JourneyHarness

HOUR = 3_600_000
ENDED = "now >= timestamp(profile.traits.trial_ends)"
LAPSED = f"{{id: lapsed, name: Lapsed, where: {{profile: '{ENDED}'}}}}"
DAY = 24 * HOUR
NOW = 1_700_000_000_000


@given(st.integers(1, CLOCK_HORIZON_MS))
def test_a_threshold_within_the_horizon_is_found_to_the_second(offset: int) -> None:
    found = next_flip(lambda at: at >= NOW + offset, NOW)
    assert found is not None and NOW + offset <= found < NOW + offset + 1000


def test_no_change_within_the_horizon_is_none() -> None:
    assert next_flip(lambda at: True, NOW) is None
    assert next_flip(lambda at: at >= NOW + CLOCK_HORIZON_MS + 1, NOW) is None


def test_the_first_change_of_a_window_is_found() -> None:
    start, end = NOW + 5 * HOUR, NOW + 6 * HOUR
    found = next_flip(lambda at: start <= at < end, NOW)
    assert found is not None and start <= found < start + 1000
    after = next_flip(lambda at: start <= at < end, found)
    assert after is not None and end <= after < end + 1000


def trial_harness(segment: str, **ends_in: float) -> tuple[JourneyHarness, int]:
    h = JourneyHarness()
    ends = h.clock.now_ms() + int(ends_in.get("hours", 0) * HOUR + ends_in.get("days", 0) * DAY)
    h.identify("sara", {"trial_ends": iso(ends)})
    h.identify("omid", {"trial_ends": iso(ends + 30 * DAY)})
    h.publish_audience(parse_audience(segment))
    h.run()
    return h, ends


def changes(h: JourneyHarness) -> list[tuple[str, str, int]]:
    return [
        (e.name, e.user_id or "", e.timestamp)
        for e in h.stores.events.read(0, 10_000)
        if e.name in (SEGMENT_ENTERED, SEGMENT_EXITED)
    ]


def test_a_customer_enters_when_the_condition_turns_true_with_no_event() -> None:
    h, ends = trial_harness(
        LAPSED,
        hours=3,
    )
    assert changes(h) == []
    h.advance(hours=2)
    assert changes(h) == []
    h.advance(hours=2)
    [(name, user, at)] = changes(h)
    assert (name, user) == (SEGMENT_ENTERED, "sara")
    assert ends <= at < ends + 1000


def test_a_change_beyond_a_day_is_found_by_looking_again() -> None:
    h, ends = trial_harness(
        LAPSED,
        days=3,
    )
    h.advance(days=2, hours=23)
    assert changes(h) == []
    h.advance(hours=2)
    [(name, user, at)] = changes(h)
    assert (name, user) == (SEGMENT_ENTERED, "sara")
    assert ends <= at < ends + 1000


def test_a_window_in_time_enters_and_exits() -> None:
    h, ends = trial_harness(
        f'{{id: grace, name: Grace hour, where: {{profile: "{ENDED}'
        " && now < timestamp(profile.traits.trial_ends) + duration('1h')\"}}",
        hours=5,
    )
    h.advance(hours=8)
    entered, exited = changes(h)
    assert entered[:2] == (SEGMENT_ENTERED, "sara") and ends <= entered[2] < ends + 1000
    assert exited[:2] == (SEGMENT_EXITED, "sara")
    assert ends + HOUR <= exited[2] < ends + HOUR + 1000
