"""Event times as text: :func:`iso` and :func:`parse_time` agree with :mod:`datetime`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from safar.model.events import iso, parse_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: 0001-01-01 to 9999-12-31, in milliseconds since the epoch.
FIRST_MS = -62_135_596_800_000
LAST_MS = 253_402_300_799_999


def reference(ms: int) -> str:
    """The same instant formatted by datetime, exactly (no float seconds)."""
    at = EPOCH + timedelta(milliseconds=ms)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_iso_examples() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1) == "1970-01-01T00:00:00.001Z"
    assert iso(-1) == "1969-12-31T23:59:59.999Z"
    assert iso(1_795_447_250_123) == "2026-11-23T15:20:50.123Z"
    assert iso(FIRST_MS) == "0001-01-01T00:00:00.000Z"
    assert iso(LAST_MS) == "9999-12-31T23:59:59.999Z"


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS))
def test_iso_matches_datetime_and_round_trips(ms: int) -> None:
    text = iso(ms)
    assert text == reference(ms)
    assert parse_time(text) == ms
