"""Token buckets on the fake clock: no sleeping, time is moved by hand."""

from __future__ import annotations

import pytest

from safar.config import IngestSettings
from safar.ingest.ratelimit import RateLimiter
from safar.testing import FakeClock


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock, rate=10, burst=20)


def test_a_full_bucket_allows_a_burst_then_refuses(limiter: RateLimiter) -> None:
    assert limiter.take({"a": 20}) == 0
    assert limiter.take({"a": 1}) == pytest.approx(0.1)


def test_the_wait_is_the_time_to_refill_what_is_missing(limiter: RateLimiter) -> None:
    limiter.take({"a": 15})
    assert limiter.take({"a": 10}) == pytest.approx(0.5)


def test_a_refused_take_takes_nothing(limiter: RateLimiter) -> None:
    limiter.take({"a": 15})
    assert limiter.take({"a": 10}) > 0
    assert limiter.take({"a": 5}) == 0


def test_tokens_refill_with_time_up_to_the_burst(limiter: RateLimiter, clock: FakeClock) -> None:
    limiter.take({"a": 20})
    clock.advance(seconds=0.5)
    assert limiter.take({"a": 5}) == 0
    assert limiter.take({"a": 1}) > 0
    clock.advance(hours=1)
    assert limiter.take({"a": 20}) == 0
    assert limiter.take({"a": 1}) > 0


def test_keys_have_their_own_buckets(limiter: RateLimiter) -> None:
    assert limiter.take({"a": 20}) == 0
    assert limiter.take({"b": 20}) == 0


def test_several_keys_are_charged_all_or_nothing(limiter: RateLimiter) -> None:
    limiter.take({"b": 18})
    assert limiter.take({"a": 5, "b": 5}) == pytest.approx(0.3)
    assert limiter.take({"a": 20}) == 0  # "a" was not charged by the refused take


def test_a_cost_over_the_burst_passes_on_a_full_bucket(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    assert limiter.take({"a": 50}) == 0
    assert limiter.take({"a": 50}) == pytest.approx(2.0)
    clock.advance(seconds=2)
    assert limiter.take({"a": 50}) == 0


def test_a_zero_rate_means_no_limit(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, rate=0, burst=0)
    assert limiter.take({"a": 10**9}) == 0


def test_from_settings(clock: FakeClock) -> None:
    limiter = RateLimiter.from_settings(clock, IngestSettings(rate_limit=1, rate_limit_burst=2))
    assert limiter.take({"a": 2}) == 0
    assert limiter.take({"a": 1}) == pytest.approx(1.0)
