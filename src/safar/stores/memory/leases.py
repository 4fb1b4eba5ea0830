"""In-memory :class:`safar.ports.LeaseStore`, for tests and simulations (one process)."""

from __future__ import annotations

import threading
from typing import NamedTuple


class _Lease(NamedTuple):
    owner: str
    until: int
    epoch: int


class MemoryLeaseStore:
    def __init__(self) -> None:
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()

    def acquire(self, name: str, owner: str, now: int, ttl_ms: int) -> int | None:
        with self._lock:
            held = self._leases.get(name)
            if held is None:
                epoch = 1
            elif held.owner == owner:
                epoch = held.epoch
            elif held.until <= now:
                epoch = held.epoch + 1
            else:
                return None
            self._leases[name] = _Lease(owner, now + ttl_ms, epoch)
            return epoch

    def release(self, name: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get(name)
            if held is not None and held.owner == owner:
                # Kept, expired, so the next holder's epoch still grows.
                self._leases[name] = held._replace(until=0)

    def holders(self, now: int) -> dict[str, str]:
        with self._lock:
            return {name: lease.owner for name, lease in self._leases.items() if lease.until > now}
