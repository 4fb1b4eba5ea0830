"""What a partition owner does when some of a partition's feed items are gone (ADR 12,
decision 9).

By default the stream keeps a partition's items until its owner has committed past them, so
none are ever gone. They can be when ``bus.max_age_hours`` lets them expire, or when someone
removes them by hand or the stream is lost. They cannot be published again as they were: an
item went to the partition of its customer *when it was published*, and merges since have
changed that. So the owner either waits, or goes on without them:

- by default (``bus.skip_lost = false``) the partition waits: its owner logs an error naming
  the range once and does not ask the feed for it again until restarted, while its other
  partitions go on;
- with ``bus.skip_lost = true`` the partition goes on after the gap: the owner reads it as an
  empty batch up to where the items left start, which its audiences and journeys commit like
  any other, and logs the range as an error. Those events' journey steps and segment changes
  are missed (``safar audiences repair`` recomputes audiences from the log), and so are
  handovers among them: instances of customers merged into another partition in that range
  stay filed under this one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from safar.errors import FeedGap
from safar.model.work import WorkBatch, WorkItem
from safar.ports import WorkFeed

log = logging.getLogger(__name__)


class GapsHandled:
    """A :class:`~safar.ports.WorkFeed` whose reads meet a partition's missing items as the
    module docstring says, instead of raising :class:`~safar.errors.FeedGap`."""

    def __init__(self, feed: WorkFeed, *, skip: bool) -> None:
        self._feed = feed
        self._skip = skip
        self.partitions = feed.partitions
        #: Partition -> the cursor it waits at for lost items (logged once), when waiting.
        self._waiting: dict[int, int] = {}

    def read_many(self, after: Mapping[int, int], limit: int) -> dict[int, list[WorkBatch]]:
        # A partition still waiting at the same cursor is not asked again.
        found: dict[int, list[WorkBatch]] = {
            p: [] for p, seq in after.items() if self._waiting.get(p) == seq
        }
        rest = {p: seq for p, seq in after.items() if p not in found}
        try:
            found.update(self._feed.read_many(rest, limit) if rest else {})
        except FeedGap:
            # One partition's gap must not hold up the others: each is read on its own.
            found.update({p: self.read(p, seq, limit) for p, seq in rest.items()})
        return found

    def read(self, partition: int, after_seq: int, limit: int) -> list[WorkBatch]:
        try:
            return self._feed.read(partition, after_seq, limit)
        except FeedGap as gap:
            if self._skip:
                log.error(
                    "partition %d: the work feed lost its items in seq (%d, %d] before they"
                    " were read; going on after them (bus.skip_lost): those events' journey"
                    " steps and segment changes are missed",
                    partition,
                    gap.after_seq,
                    gap.since,
                )
                return [WorkBatch(upto=gap.since, since=gap.after_seq)]
            if self._waiting.get(partition) != after_seq:
                self._waiting[partition] = after_seq
                log.error("%s", gap)
            return []

    def published_seq(self) -> int:
        return self._feed.published_seq()

    def publish(self, upto: int, items: Mapping[int, Sequence[WorkItem]]) -> None:
        self._feed.publish(upto, items)

    def trim(self, partition: int, upto: int) -> None:
        self._feed.trim(partition, upto)

    def close(self) -> None:
        self._feed.close()
