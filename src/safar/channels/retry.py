"""When to try a failed delivery again. Channels never retry by themselves: they raise
:class:`~safar.errors.DeliveryError` with ``retryable`` set, and the dispatcher settles the outbox
entry as ``retry`` at ``now + backoff_ms(attempts, key)``, or as ``dead`` (a dead letter) after
:data:`MAX_ATTEMPTS`."""

from __future__ import annotations

import hashlib
from typing import Final

#: Deliveries tried at most this many times in all. With the default base and cap the ceilings
#: of the 13 waits between them add up to 2.3 hours (1.1 on average with full jitter): a
#: provider's outage of an hour or so is ridden out before the entry becomes a dead letter.
MAX_ATTEMPTS: Final = 14


def backoff_ceiling_ms(attempt: int, base_ms: int = 1000, cap_ms: int = 3_600_000) -> int:
    """The longest wait after failed attempt number ``attempt`` (0 for the first failure):
    ``min(cap_ms, base_ms * 2 ** attempt)``."""
    if attempt < 0:
        raise ValueError("attempt counts from 0")
    # Beyond 2**62 the cap has long been reached; stop before building huge integers.
    return min(cap_ms, base_ms << min(attempt, 62))


def backoff_ms(attempt: int, key: str, base_ms: int = 1000, cap_ms: int = 3_600_000) -> int:
    """How long to wait before retrying after failure number ``attempt`` of message ``key``.

    Exponential backoff with full jitter: a value in ``[0, backoff_ceiling_ms(attempt)]``
    spread uniformly by a hash of (key, attempt), never ``random()``: the same delivery waits
    the same time on every replay, and messages that failed together do not retry together.
    """
    ceiling = backoff_ceiling_ms(attempt, base_ms, cap_ms)
    digest = hashlib.blake2b(f"{attempt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (ceiling + 1)


def retryable_status(status: int) -> bool:
    """Whether an HTTP response status may succeed later: 408, 425, 429 and 5xx."""
    return status in (408, 425, 429) or status >= 500
