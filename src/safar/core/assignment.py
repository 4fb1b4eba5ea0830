"""Which worker steps which partition, and which partition a customer is in (ADR 12).

Every worker computes :func:`assign` on its own from the set of live workers it reads from the
lease store, so the function must give every process the same answer for the same set: it is pure,
ignores the order of ``workers``, and hashes with BLAKE2b (Python's ``hash()`` of a string differs
between processes).

The choice: *rendezvous ranking under exact quotas*. Each pair (worker, partition) gets a stable
score; pairs are taken best score first, and a partition goes to the worker of its first pair
that still has room. Room is the quota: every worker gets ``P // N`` partitions, and the first
``P % N`` workers to want one more get it, so sizes differ by at most one. With both sides
ranking pairs by one score this is the one stable matching of partitions to worker slots: no
worker and partition both prefer each other over what they got.

Why not plain rendezvous (each partition to its top-scoring worker)? It moves the fewest
partitions when a worker joins or leaves, but with 16 to 64 partitions its shares are uneven (the
busiest of four workers usually gets 6 or more of 16 partitions, not 4), and the busiest worker
is what limits stepping.
Quotas trade a little stability for exact balance: a joining worker takes its share (about P/N),
and the quotas shrinking as N grows move a few more: on average 1 to 4 partitions for 16 to 64
partitions and up to 12 workers (8 + 4 of 64 when an eighth worker joins), and in sampled worst
cases up to ``2 * ceil(P / N) + N`` in all (tests/core/test_assignment.py). An exactly balanced
assignment that is a function of the worker set alone cannot always move only the joiner's share,
so some such excess is the price of balance without shared state. Leaving is the same change
backwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

# Domain separation: a worker's rank for a partition and a customer's partition never share
# hash inputs by accident.
_RANK = b"safar.rank"
_PARTITION = b"safar.partition"


def assign(partitions: int, workers: Collection[str]) -> dict[str, frozenset[int]]:
    """Partitions ``0 .. partitions - 1`` shared among ``workers`` (see the module docstring):
    each to exactly one worker, sizes differing by at most one, the same for the same set of
    workers in any order. Every worker is a key, possibly with no partitions; no workers, {}."""
    if partitions < 0:
        raise ValueError(f"partitions must be 0 or more, not {partitions}")
    names = sorted(set(workers))
    if not names:
        return {}
    base, extra = divmod(partitions, len(names))
    pairs = sorted(
        (
            (_rank(worker, partition), worker, partition)
            for worker in names
            for partition in range(partitions)
        ),
        reverse=True,
    )
    held: dict[str, set[int]] = {worker: set() for worker in names}
    taken: set[int] = set()
    for _, worker, partition in pairs:
        if partition in taken:
            continue
        size = len(held[worker])
        if size < base or (size == base and extra > 0):
            if size == base:
                extra -= 1
            held[worker].add(partition)
            taken.add(partition)
    return {worker: frozenset(share) for worker, share in held.items()}


def partition_of(profile_id: str, partitions: int) -> int:
    """The partition (``0 <= n < partitions``) of the customer whose canonical profile id is
    ``profile_id``: the same in every process, machine and Python version."""
    if partitions < 1:
        raise ValueError(f"partitions must be 1 or more, not {partitions}")
    return _hash(profile_id.encode(), _PARTITION) % partitions


def in_partition(profile_id: str, partition: tuple[int, int] | None) -> bool:
    """Whether the customer ``profile_id`` is in ``partition`` ``(n, P)``: partition ``n`` of
    ``P`` (always, when ``partition`` is None)."""
    return partition is None or partition_of(profile_id, partition[1]) == partition[0]


def _rank(worker: str, partition: int) -> int:
    # The partition number leads and holds no ':', so distinct pairs never give one input.
    return _hash(f"{partition}:{worker}".encode(), _RANK)


def _hash(data: bytes, person: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=person).digest(), "big")
