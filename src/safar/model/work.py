"""The partitioned work feed's items (see :class:`safar.ports.WorkFeed` and ADR 12)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

from safar.errors import FeedGap


class WorkItem(msgspec.Struct, frozen=True, array_like=True):
    """One entry of a partition's feed: usually event ``seq`` of the log, whose customer was
    profile ``profile_id`` when it was published (the id that chose the partition).

    Around a merge (or a move of identifiers) two partitions hold state of one customer, and
    their order matters. The publisher then adds, to each partition that held some of it, a
    *handover* at the ``seq`` of the customer's first item in the new partition: ``handover`` is
    that partition, ``moves`` the profile ids whose rows (journey instances, memberships) go
    there, possibly none. The new partition's item carries in ``waits`` the partitions it must
    let pass that ``seq`` first. A wait always points at a position below the waiting one in
    another partition, so partitions never wait for each other in a circle.
    """

    seq: int
    profile_id: str
    waits: tuple[int, ...] = ()
    handover: int | None = None
    moves: tuple[str, ...] = ()
    #: The event's name (``""`` for an event without one), so an owner loads only the events
    #: some journey may care about; None when not known (load it).
    name: str | None = None

    @property
    def is_handover(self) -> bool:
        return self.handover is not None


class WorkBatch(msgspec.Struct, frozen=True, array_like=True):
    """One partition's items of the log range ``(since, upto]``, in ``seq`` order. A batch may
    hold no items: the partition had nothing in the range. ``since`` is the ``upto`` of the
    partition's batch before it (0 for the first), so a reader can tell when batches it has not
    read are gone from the feed."""

    upto: int
    items: tuple[WorkItem, ...] = ()
    since: int = 0


def lost(partition: int, after_seq: int, since: int) -> FeedGap:
    """What a read of a work feed raises when the batches after ``after_seq`` are gone."""
    return FeedGap(
        f"the work feed no longer holds partition {partition}'s items after seq {after_seq}"
        f" (its oldest batch starts after {since}): they expired or were removed before its"
        " owner read them; the partition waits for them (set bus.skip_lost to go on without"
        " them, see docs/deploy.md)",
        partition=partition,
        after_seq=after_seq,
        since=since,
    )


#: Partition -> the cursor a read of the feed was made after, and the batches it returned.
FeedRead = Mapping[int, tuple[int, Sequence[WorkBatch]]]


def past(batches: Sequence[WorkBatch], after_seq: int) -> list[WorkBatch]:
    """What of ``batches`` (one partition's, read after an earlier position) a read after
    ``after_seq`` finds: the batches ending past it, with their items past it."""
    found: list[WorkBatch] = []
    for batch in batches:
        if batch.upto <= after_seq:
            continue
        if batch.items and batch.items[0].seq <= after_seq:
            items = tuple(item for item in batch.items if item.seq > after_seq)
            batch = WorkBatch(upto=batch.upto, items=items, since=batch.since)
        found.append(batch)
    return found


def take_ready(
    batches: Sequence[WorkBatch], processed_seq: Callable[[int], int]
) -> tuple[list[WorkItem], int]:
    """The items of ``batches`` up to the first whose waits are not met (another partition's
    cursor, read with ``processed_seq``, below its seq), and the position they reach."""
    items: list[WorkItem] = []
    reached: dict[int, int] = {}
    upto = 0
    for batch in batches:
        for item in batch.items:
            for other in item.waits:
                if other not in reached:
                    reached[other] = processed_seq(other)
                if reached[other] < item.seq:
                    return items, item.seq - 1
            items.append(item)
        upto = batch.upto
    return items, upto
