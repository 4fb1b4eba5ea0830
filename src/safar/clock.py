"""The real clock. Tests use :class:`safar.testing.FakeClock` instead."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time in milliseconds since the epoch, UTC."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000
