"""Sharing the partitions of an installation among its workers, one lease per partition (ADR 12).

Each worker advertises itself with a heartbeat lease ``worker:<owner>`` that only it renews, and
steps a partition only while it holds the partition's lease ``partition:<n>``. Nobody hands
partitions out: every worker reads the live workers (the heartbeats not expired), computes the
same :func:`~safar.core.assignment.assign` from them, takes the free partitions assigned to it and
releases the ones it holds that are assigned to someone else. The lease store decides every race
(two workers never hold one partition at the same time), and the fence of each partition guards
the writes made under it, as for the stepper lease (ADR 11, :mod:`safar.runtime.leases`).

Timing, with ``ttl`` the lease's time to live (``workers.lease_seconds``, 15 s by default). A
worker *refreshes* when :meth:`PartitionLeases.hold` is called a third of a lease after its last
refresh (:attr:`PartitionLeases.refresh_wait`): it renews its heartbeat and partitions, reads the
live workers once, and takes and releases. In between, ``hold`` touches no store, so a worker
calling it before every batch costs the store a few writes and one read per ttl / 3.

- A worker joins: the others see it at their next refresh (within ttl / 3) and release what is
  now its share; it takes that at its own next refresh. Balanced within 2/3 ttl.
- A worker stops cleanly (:meth:`PartitionLeases.release_all`): its partitions are free at once
  and the others take them at their next refresh, within ttl / 3.
- A worker dies or is cut off: its heartbeat and partitions expire at most ttl after its last
  refresh; the others take them at their first refresh after that, within 4/3 ttl.
- A worker whose calls to ``hold`` are more than 2/3 ttl apart (a round of work that long) lets
  its leases lapse and may lose its partitions: keep a round well within ttl / 3.
"""

from __future__ import annotations

from collections.abc import Mapping

from safar.core.assignment import assign
from safar.model.leases import Fence
from safar.ports import Clock, LeaseStore
from safar.runtime.leases import LeaseHolder

#: Lease names: a worker's heartbeat is ``worker:<owner>``, partition n's lease ``partition:<n>``.
WORKER_PREFIX = "worker:"
PARTITION_PREFIX = "partition:"


def worker_lease(owner: str) -> str:
    """The name of ``owner``'s heartbeat lease."""
    return WORKER_PREFIX + owner


def partition_lease(partition: int) -> str:
    """The name of the lease of partition ``partition``."""
    return f"{PARTITION_PREFIX}{partition}"


def live_workers(holders: Mapping[str, str]) -> set[str]:
    """The workers whose heartbeat is among ``holders`` (a :meth:`LeaseStore.holders` answer)."""
    return {owner for name, owner in holders.items() if name == worker_lease(owner)}


class PartitionLeases:
    """The partitions one worker holds, kept in line with the assignment (see the module
    docstring)."""

    def __init__(
        self, leases: LeaseStore, owner: str, clock: Clock, ttl_ms: int, partitions: int
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be 1 or more, not {partitions}")
        if ttl_ms < 1:
            raise ValueError(f"a lease must last at least 1 ms, not {ttl_ms}")
        self._leases = leases
        self.owner = owner
        self._clock = clock
        self._ttl_ms = ttl_ms
        self.partitions = partitions
        # A hair over a third of a lease, so the holders below are due at every refresh
        # whatever the rounding of their (float) renewal times.
        self._refresh_ms = ttl_ms // 3 + 1
        self._refreshed_at = 0
        self._heartbeat = self._holder(worker_lease(owner))
        self._held: dict[int, LeaseHolder] = {}
        self._fences: dict[int, Fence] = {}
        self._refresh_at: int | None = None

    @property
    def refresh_wait(self) -> float:
        """Seconds between refreshes: how long a worker holding no partition waits before
        calling :meth:`hold` again."""
        return self._refresh_ms / 1000

    def hold(self) -> dict[int, Fence]:
        """The partitions this worker holds now, each with the fence its writes carry;
        refreshing first when due (see the module docstring). Call it before each round of
        work and use only the partitions it returns, for that round.

        Compare each epoch with the last one seen for its partition: a different one means
        another worker held the partition in between, so rebuild whatever is cached for it. A
        partition whose renewal failed is left out at once. Raises the store's error
        (:class:`~safar.errors.StoreError`) when it cannot be reached, after forgetting every
        partition: none is trusted until the next refresh."""
        now = self._clock.now_ms()
        if self._refresh_at is None or now >= self._refresh_at:
            try:
                self._refresh(now)
            except BaseException:
                self._forget()
                raise
        return dict(self._fences)

    def release_all(self) -> None:
        """Give up the heartbeat and every partition, so the others take over at their next
        refresh (on a clean stop). :meth:`hold` afterwards joins again."""
        held = set(self._held)
        self._forget()
        self._leases.release(worker_lease(self.owner), self.owner)
        # Also those held before a failure made this worker forget them.
        in_store = self._leases.holders(self._clock.now_ms())
        held.update(
            n for n in range(self.partitions) if in_store.get(partition_lease(n)) == self.owner
        )
        for partition in sorted(held):
            self._leases.release(partition_lease(partition), self.owner)

    def _refresh(self, now: int) -> None:
        self._refreshed_at = now
        # Renewed first, so this worker is among the live ones it reads.
        self._heartbeat.hold()
        holders = self._leases.holders(now)
        mine = assign(self.partitions, live_workers(holders)).get(self.owner, frozenset())
        fences: dict[int, Fence] = {}
        for partition in range(self.partitions):
            name = partition_lease(partition)
            holder_now = holders.get(name)
            if partition not in mine:
                if self._held.pop(partition, None) is not None or holder_now == self.owner:
                    self._leases.release(name, self.owner)
                continue
            if holder_now not in (None, self.owner):
                # Another worker has not let go yet (it releases at its next refresh, or its
                # lease runs out): trying now would only be refused.
                self._held.pop(partition, None)
                continue
            holder = self._held.pop(partition, None) or self._holder(name)
            epoch = holder.hold()
            if epoch is not None:
                self._held[partition] = holder
                fences[partition] = Fence(name=name, owner=self.owner, epoch=epoch)
        self._fences = fences
        self._refresh_at = now + self._refresh_ms

    def _forget(self) -> None:
        self._heartbeat = self._holder(worker_lease(self.owner))
        self._held = {}
        self._fences = {}
        self._refresh_at = None

    def _holder(self, name: str) -> LeaseHolder:
        # Renewals are timed by the refresh they happen in, so every refresh renews what it
        # keeps (and a fake clock in tests moves them too).
        return LeaseHolder(
            self._leases,
            name,
            self.owner,
            self._clock,
            self._ttl_ms,
            timer=lambda: self._refreshed_at / 1000,
        )
