"""Per-source token buckets: a sustained rate of events per second, with bursts up to a ceiling.

Time comes from the injected :class:`~safar.ports.Clock`, so tests move it instead of sleeping.
A bucket is a pair of numbers per key; there is one key per source, so memory stays small.
"""

from __future__ import annotations

from collections.abc import Mapping

from safar.config import IngestSettings
from safar.ports import Clock


class RateLimiter:
    """Token buckets keyed by source (one per write key), refilled at ``rate`` tokens a second up to
    ``burst``. One event costs one token. ``rate <= 0`` turns limiting off.

    Not thread-safe: the ingestion handlers call it from one event loop.
    """

    def __init__(self, clock: Clock, *, rate: float, burst: float) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        # key -> [tokens, last refill in ms]
        self._buckets: dict[str, list[float]] = {}

    @classmethod
    def from_settings(cls, clock: Clock, settings: IngestSettings) -> RateLimiter:
        """A limiter using ``settings.rate_limit`` and ``settings.rate_limit_burst``."""
        return cls(clock, rate=settings.rate_limit, burst=settings.rate_limit_burst)

    def take(self, costs: Mapping[str, int]) -> float:
        """Take ``costs[key]`` tokens from each key's bucket, all or none.

        Returns 0.0 when taken, else the seconds until every bucket could pay (nothing is taken).
        A cost above the burst ceiling is charged as a full bucket, so it can pass once the bucket
        has refilled instead of never.
        """
        if self._rate <= 0:
            return 0.0
        now = self._clock.now_ms()
        wait = 0.0
        buckets: list[tuple[list[float], float]] = []
        for key, cost in costs.items():
            bucket = self._refill(key, now)
            needed = min(float(cost), self._burst)
            if bucket[0] < needed:
                wait = max(wait, (needed - bucket[0]) / self._rate)
            buckets.append((bucket, needed))
        if wait > 0:
            return wait
        for bucket, needed in buckets:
            bucket[0] -= needed
        return 0.0

    def _refill(self, key: str, now: int) -> list[float]:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self._burst, float(now)]
        elif now > bucket[1]:
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate / 1000)
            bucket[1] = float(now)
        return bucket
