"""Durations: ``90s``, ``3d``, ``1d12h`` to milliseconds and back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safar.definitions.durations import MAX_MS, format_duration, parse_duration

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90 * SECOND),
        ("30m", 30 * MINUTE),
        ("1h", HOUR),
        ("3d", 3 * DAY),
        ("2w", 14 * DAY),
        ("1d12h", 36 * HOUR),
        ("1d 12h", 36 * HOUR),
        (" 1h30m ", 90 * MINUTE),
        ("500ms", 500),
        ("1m500ms", MINUTE + 500),
        ("0s", 0),
        ("2w3d4h5m6s7ms", 17 * DAY + 4 * HOUR + 5 * MINUTE + 6 * SECOND + 7),
    ],
)
def test_parse(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3x", "bad duration '3x': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("3600", "bad duration '3600': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("", "bad duration '': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("h", "bad duration 'h': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("1.5h", "bad duration '1.5h': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("-1h", "bad duration '-1h': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("1h 30", "bad duration '1h 30': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
        ("12h1d", "bad duration '12h1d': write each unit once, largest first, e.g. 1d12h"),
        ("1h1h", "bad duration '1h1h': write each unit once, largest first, e.g. 1d12h"),
        ("36501d", "bad duration '36501d': at most 5214w2d"),
        ("٣d", "bad duration '٣d': use a number and a unit s, m, h, d or w, e.g. 90m or 3d"),
    ],
)
def test_bad_durations_say_how_to_write_one(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0s"), (90 * SECOND, "1m30s"), (36 * HOUR, "1d12h"), (14 * DAY, "2w"), (1500, "1s500ms")],
)
def test_format(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_format_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=MAX_MS))
def test_format_then_parse_is_identity(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


@given(st.integers(min_value=1, max_value=MAX_MS))
def test_format_is_canonical(ms: int) -> None:
    # Each part below the size of the next larger unit, so one duration has one spelling.
    limits = {"d": 7, "h": 24, "m": 60, "s": 60, "ms": 1000}
    for count, unit in re.findall(r"(\d+)(ms|w|d|h|m|s)", format_duration(ms)):
        assert 0 < int(count) < limits.get(unit, MAX_MS)
