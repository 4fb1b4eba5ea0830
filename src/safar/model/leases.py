"""A fence: the lease a write was computed under (see :class:`safar.ports.LeaseStore`)."""

from __future__ import annotations

import msgspec


class Fence(msgspec.Struct, frozen=True, kw_only=True):
    """``owner`` held lease ``name`` at ``epoch`` when it computed the write.

    A store given a fence commits only while the lease is still at that epoch with that owner,
    in the same transaction: a process that lost its lease (paused past its end, say) and
    wakes up cannot write over its successor's work. This is the *fencing token* of lease
    designs; the epoch grows on every hand-over, so a stale one never matches again.
    """

    name: str
    owner: str
    epoch: int

    def describe(self) -> str:
        return f"lease {self.name!r} of {self.owner} at epoch {self.epoch}"
