"""Holding a named lease while doing a job only one process may do at a time.

Several ``safar serve --role worker`` processes can share one installation. Dispatching the
outbox is safe in all of them at once (entries are claimed with leases of their own), but the
*stepper* (profiles, audiences, journeys, their timers) and the segment exporter keep per-customer
state in memory between batches, so each runs in one process at a time: the holder of its lease.
The others stand by and take over within a lease's time to live when the holder stops renewing
(stopped, killed, cut off from the store). See docs/deploy.md.

A holder renews a third of the way into its lease, before each batch, and stops the moment a
renewal fails: a process cut off from the store stops stepping two thirds of a lease before
another can take over. A single batch must therefore finish well within a lease (batches take
milliseconds to a few seconds; the default lease is 15 s). A paused process (a VM frozen longer
than a lease) is the remaining risk; the cursor checks of the stores still refuse a batch of
events that another process has already handled.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from safar.config import Settings
from safar.model.leases import Fence
from safar.ports import Clock, LeaseStore

#: The lease of the stepper: profiles, audiences, journeys and their timers.
STEPPER = "stepper"
#: The lease of the segment webhook exporter.
SEGMENT_EXPORT = "segment-export"


def process_owner(role: str) -> str:
    """A name for this process, unique among the processes sharing an installation."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def held_lease(
    leases: LeaseStore, name: str, owner: str, clock: Clock, settings: Settings
) -> LeaseHolder:
    """A holder of lease ``name`` for ``owner``, lasting as configured (``workers``)."""
    return LeaseHolder(leases, name, owner, clock, int(settings.workers.lease_seconds * 1000))


class LeaseHolder:
    """Takes, renews and trusts one lease for one owner (see the module docstring)."""

    def __init__(
        self,
        leases: LeaseStore,
        name: str,
        owner: str,
        clock: Clock,
        ttl_ms: int,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timer`` (seconds) says when a renewal is due; a caller whose renewals must follow
        ``clock`` (a fake one in tests, say) passes a timer reading it."""
        self._leases = leases
        self._timer = timer
        self.name = name
        self.owner = owner
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._epoch: int | None = None
        self._renew_at = 0.0

    @property
    def standby_wait(self) -> float:
        """Seconds a process not holding the lease waits before trying again."""
        return self._ttl_ms / 3000

    def hold(self) -> int | None:
        """The lease's epoch while this process holds it, renewing it when due; None while
        another process holds it. Raises the store's error when it cannot be reached, after
        which the lease is not trusted until renewed."""
        started = self._timer()
        if self._epoch is not None and started < self._renew_at:
            return self._epoch
        self._epoch = None
        epoch = self._leases.acquire(self.name, self.owner, self._clock.now_ms(), self._ttl_ms)
        if epoch is not None:
            self._epoch = epoch
            self._renew_at = started + self._ttl_ms / 3000
        return epoch

    def fence(self) -> Fence | None:
        """:meth:`hold`, as the fence the holder's writes carry; None while another holds it."""
        epoch = self.hold()
        return None if epoch is None else Fence(name=self.name, owner=self.owner, epoch=epoch)

    def release(self) -> None:
        """Give the lease up so a standby takes over at once (on a clean stop)."""
        if self._epoch is not None:
            self._epoch = None
            self._leases.release(self.name, self.owner)
