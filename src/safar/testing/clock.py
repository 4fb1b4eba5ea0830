"""A clock that only moves when told to."""

from __future__ import annotations

from datetime import UTC, datetime


class FakeClock:
    """A :class:`safar.ports.Clock` for tests: starts at ``start`` and moves by :meth:`advance`."""

    def __init__(self, start: int | datetime = datetime(2026, 1, 1, tzinfo=UTC)) -> None:
        self._now = int(start.timestamp() * 1000) if isinstance(start, datetime) else start

    def now_ms(self) -> int:
        return self._now

    def advance(self, *, ms: int = 0, seconds: float = 0, hours: float = 0, days: float = 0) -> int:
        """Move forward; returns the new time. Moving backwards is refused."""
        step = ms + int((seconds + hours * 3600 + days * 86400) * 1000)
        if step < 0:
            raise ValueError("a FakeClock never goes backwards")
        self._now += step
        return self._now

    def advance_to(self, ms: int) -> int:
        """Move to ``ms`` (not earlier than now); returns it."""
        if ms < self._now:
            raise ValueError("a FakeClock never goes backwards")
        self._now = ms
        return self._now
