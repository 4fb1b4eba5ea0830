"""Local time in a customer's timezone: parsing, zones, and the next HH:MM across DST."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.core.localtime import local_clock, next_local_time, parse_hhmm, utc_text, zone

MINUTE = 60_000
HOUR = 60 * MINUTE


def ms(text: str) -> int:
    """An ISO instant with an explicit offset, as epoch milliseconds."""
    stamp = datetime.fromisoformat(text)
    assert stamp.tzinfo is not None
    return int(stamp.timestamp()) * 1000


@pytest.mark.parametrize(
    ("text", "expected"), [("00:00", (0, 0)), ("08:05", (8, 5)), ("23:59", (23, 59))]
)
def test_parse_hhmm_reads_24_hour_times(text: str, expected: tuple[int, int]) -> None:
    assert parse_hhmm(text) == expected


@pytest.mark.parametrize(
    "text", ["24:00", "12:60", "8:00", "08:5", "0800", "08:00:00", "", "ab:cd"]
)
def test_parse_hhmm_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|00-23"):
        parse_hhmm(text)


def test_zone_falls_back_to_the_default_for_unknown_names() -> None:
    assert zone("Asia/Tehran", "UTC").key == "Asia/Tehran"
    for bad in ["Mars/Olympus", "", None, 3.5, "Asia", "../etc/passwd", "localtime"]:
        assert zone(bad, "Europe/London").key == "Europe/London", bad
    assert zone(None).key == "UTC"


def test_zone_refuses_an_unknown_default() -> None:
    with pytest.raises(ValueError, match="default timezone 'Nowhere'"):
        zone("Mars/Olympus", "Nowhere")


def test_local_clock_reads_the_wall_clock_in_the_zone() -> None:
    now = ms("2026-11-20T18:00:00+00:00")  # a Friday
    assert local_clock(now, "UTC") == (18, 0, 4)
    assert local_clock(now, "Asia/Tehran") == (21, 30, 4)  # +03:30, no DST since 2022
    assert local_clock(now, ZoneInfo("Asia/Tokyo")) == (3, 0, 5)  # already Saturday
    assert utc_text(now + 59_999) == "2026-11-20 18:00 UTC"


def test_next_local_time_is_strictly_after_now() -> None:
    at_nine = ms("2026-06-01T09:00:00+00:00")
    assert next_local_time(at_nine - 1, "09:00", "UTC") == at_nine
    assert next_local_time(at_nine, "09:00", "UTC") == at_nine + 24 * HOUR
    assert next_local_time(at_nine + 1, "09:00", "UTC") == at_nine + 24 * HOUR


def test_next_local_time_in_tehran() -> None:
    now = ms("2026-11-20T22:00:00+03:30")
    assert next_local_time(now, "08:00", "Asia/Tehran") == ms("2026-11-21T08:00:00+03:30")
    assert next_local_time(now, "23:15", "Asia/Tehran") == ms("2026-11-20T23:15:00+03:30")


@pytest.mark.parametrize(
    ("now", "hhmm", "expected"),
    [
        # 2026-03-08: New York springs forward, 02:00 EST -> 03:00 EDT.
        ("2026-03-07T15:00:00-05:00", "09:00", "2026-03-08T09:00:00-04:00"),  # a 23-hour day
        ("2026-03-08T00:00:00-05:00", "02:30", "2026-03-08T03:00:00-04:00"),  # gap: its end
        ("2026-03-08T03:00:00-04:00", "02:30", "2026-03-09T02:30:00-04:00"),  # gap end is now
        ("2026-03-08T00:00:00-05:00", "03:00", "2026-03-08T03:00:00-04:00"),
        ("2026-03-08T00:00:00-05:00", "01:59", "2026-03-08T01:59:00-05:00"),
        # 2026-11-01: New York falls back, 02:00 EDT -> 01:00 EST; 01:xx happens twice.
        ("2026-10-31T15:00:00-04:00", "09:00", "2026-11-01T09:00:00-05:00"),  # a 25-hour day
        ("2026-11-01T00:00:00-04:00", "01:30", "2026-11-01T01:30:00-04:00"),  # first occurrence
        ("2026-11-01T01:45:00-04:00", "01:30", "2026-11-02T01:30:00-05:00"),  # once a day
        ("2026-11-01T01:10:00-05:00", "01:30", "2026-11-02T01:30:00-05:00"),
        ("2026-11-01T01:45:00-04:00", "02:00", "2026-11-01T02:00:00-05:00"),
    ],
)
def test_next_local_time_across_new_york_dst(now: str, hhmm: str, expected: str) -> None:
    assert next_local_time(ms(now), hhmm, "America/New_York") == ms(expected)


def test_next_local_time_accepts_a_zone_or_a_name_and_unknown_names_mean_utc() -> None:
    now = ms("2026-06-01T12:00:00+00:00")
    expected = ms("2026-06-02T08:00:00+04:00")
    assert next_local_time(now, "08:00", "Asia/Dubai") == expected
    assert next_local_time(now, "08:00", ZoneInfo("Asia/Dubai")) == expected
    assert next_local_time(now, "08:00", "Mars/Olympus") == ms("2026-06-02T08:00:00+00:00")


def test_a_skipped_day_resolves_to_the_first_instant_after_it() -> None:
    # Samoa skipped 2011-12-30 entirely, jumping from -10:00 to +14:00.
    now = ms("2011-12-29T12:00:00-10:00")
    assert next_local_time(now, "09:00", "Pacific/Apia") == ms("2011-12-31T00:00:00+14:00")


ZONES = [
    "UTC",
    "Asia/Tehran",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Havana",  # changes at midnight
    "Asia/Kathmandu",
]


@settings(max_examples=60)
@given(
    now=st.integers(ms("2024-01-01T00:00:00+00:00"), ms("2030-01-01T00:00:00+00:00")),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 15, 30, 45, 59]),
    name=st.sampled_from(ZONES),
)
def test_next_local_time_is_the_first_such_wall_time(
    now: int, hour: int, minute: int, name: str
) -> None:
    tz = ZoneInfo(name)
    result = next_local_time(now, f"{hour:02d}:{minute:02d}", tz)
    assert now < result <= now + 49 * HOUR
    local = datetime.fromtimestamp(result // 1000, tz)
    if (local.hour, local.minute, local.second) != (hour, minute, 0):
        # Only a spring-forward gap may move it: the wall clock jumps over HH:MM right here.
        before = datetime.fromtimestamp(result // 1000 - 1, tz)
        wanted = timedelta(hours=hour, minutes=minute)
        assert _clock(before) < wanted < _clock(local) or local.date() > before.date()
    # No earlier whole minute after now showed HH:MM for the first time that day.
    t = (now // MINUTE + 1) * MINUTE
    while t < result:
        seen = datetime.fromtimestamp(t // 1000, tz)
        assert not (seen.hour == hour and seen.minute == minute and seen.fold == 0), seen
        t += MINUTE


def _clock(moment: datetime) -> timedelta:
    return timedelta(hours=moment.hour, minutes=moment.minute, seconds=moment.second)
