"""Backoff: exponential with full jitter, from a hash of (key, attempt), never random()."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safar.channels import MAX_ATTEMPTS, backoff_ceiling_ms, backoff_ms, retryable_status

attempts = st.integers(min_value=0, max_value=200)
keys = st.text(max_size=80)
bases = st.integers(min_value=1, max_value=60_000)
caps = st.integers(min_value=1, max_value=7 * 24 * 3_600_000)


@given(attempts, keys, bases, caps)
def test_within_zero_and_the_ceiling(attempt: int, key: str, base: int, cap: int) -> None:
    wait = backoff_ms(attempt, key, base, cap)
    assert 0 <= wait <= backoff_ceiling_ms(attempt, base, cap) <= cap


@given(attempts, keys)
def test_deterministic(attempt: int, key: str) -> None:
    assert backoff_ms(attempt, key) == backoff_ms(attempt, key)


@given(st.integers(min_value=0, max_value=100), bases, caps)
def test_the_ceiling_doubles_until_the_cap(attempt: int, base: int, cap: int) -> None:
    ceiling = backoff_ceiling_ms(attempt, base, cap)
    assert ceiling == min(cap, base * 2**attempt)
    assert backoff_ceiling_ms(attempt + 1, base, cap) == min(cap, 2 * ceiling)


@pytest.mark.parametrize("attempt", [0, 3, 6, 11])
def test_waits_spread_over_the_whole_range(attempt: int) -> None:
    ceiling = backoff_ceiling_ms(attempt)
    waits = [backoff_ms(attempt, f"key-{n}") for n in range(400)]
    # Full jitter: messages that failed together do not come back together.
    assert len(set(waits)) > 300
    assert min(waits) < ceiling * 0.1 and max(waits) > ceiling * 0.9
    assert abs(sum(waits) / len(waits) - ceiling / 2) < ceiling * 0.1


def test_attempts_and_defaults() -> None:
    assert backoff_ceiling_ms(0) == 1000 and backoff_ceiling_ms(40) == 3_600_000
    # The waits between MAX_ATTEMPTS tries can outlast an hour-long provider outage.
    assert sum(backoff_ceiling_ms(n) for n in range(MAX_ATTEMPTS - 1)) / 2 > 3_600_000
    with pytest.raises(ValueError):
        backoff_ms(-1, "k")


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (503, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (422, False),
    ],
)
def test_retryable_status(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable
