"""The audience processors of the work-feed partitions one owner holds (ADR 12).

A partition's owner keeps its audiences before stepping its journeys, over the same feed: one
:class:`~safar.runtime.audiences.AudienceProcessor` per partition held, each with its own
cursor, caches and scans. A round reads the feed once for all of them and commits their
batches in one transaction (:meth:`~safar.ports.AudienceStore.commit_all`), so it costs the
same few round trips however many partitions the owner holds, and hands what it read to the
journeys of the same round (:attr:`Round.read`), which would read the same batches again. A
processor is built afresh when its partition comes back at another lease epoch (another owner
held it meanwhile, so what it cached is stale) and dropped with the partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import NamedTuple

from safar.errors import StaleBatch
from safar.model.leases import Fence
from safar.model.work import FeedRead
from safar.ports import AudienceStore, WorkFeed
from safar.runtime.audiences import DEFAULT_BATCH, AudienceProcessor

log = logging.getLogger(__name__)


class Round(NamedTuple):
    """What :meth:`PartitionAudiences.run` did."""

    #: How many feed items were handled.
    done: int
    #: Partition -> its audience cursor now (journeys step no further, so they see the
    #: segments of the events they step).
    cursors: dict[int, int]
    #: The feed as this round read it, for the journeys' read of the same round.
    read: FeedRead


class PartitionAudiences:
    """One audience processor per partition held (see the module docstring)."""

    def __init__(self, store: AudienceStore, build: Callable[[int], AudienceProcessor]) -> None:
        """``build(n)``: a new processor for partition ``n`` of ``store``."""
        self._store = store
        self._build = build
        #: Partition -> (the lease epoch it was built at, its processor).
        self._held: dict[int, tuple[int | None, AudienceProcessor]] = {}

    def hold(self, held: Mapping[int, Fence | None]) -> dict[int, AudienceProcessor]:
        """The processors of the partitions ``held`` (partition -> its fence, None when
        running alone), each working under its fence."""
        for partition in set(self._held) - held.keys():
            del self._held[partition]
        found: dict[int, AudienceProcessor] = {}
        for partition, fence in sorted(held.items()):
            epoch = None if fence is None else fence.epoch
            known = self._held.get(partition)
            if known is None or known[0] != epoch:
                known = self._held[partition] = (epoch, self._build(partition))
            known[1].fence = fence
            found[partition] = known[1]
        return found

    def run(self, feed: WorkFeed, held: Mapping[int, Fence | None]) -> Round:
        """Handle each held partition's next feed items (see :class:`Round`).

        A round computed before the coordinator changed the jobs (it assigns generations and
        takes new definitions while owners work) is refused by the store; it is computed
        again at once, from the new jobs."""
        try:
            return self._run(feed, held)
        except StaleBatch as exc:
            log.info("audience round redone, the definitions changed meanwhile: %s", exc)
            return self._run(feed, held)

    def _run(self, feed: WorkFeed, held: Mapping[int, Fence | None]) -> Round:
        processors = self.hold(held)
        if not processors:
            return Round(0, {}, {})
        after = {partition: processor.cursor() for partition, processor in processors.items()}
        read = feed.read_many(after, DEFAULT_BATCH)
        taken = []
        try:
            for partition, processor in processors.items():
                batch = processor.take(read.get(partition, []))
                if batch is not None:
                    taken.append((processor, batch))
            if taken:
                self._store.commit_all([batch.update for _, batch in taken])
        except BaseException:
            # What the processors took (job progress, changed caches) is not in the store.
            for processor, _ in taken:
                processor.forget()
            raise
        for processor, batch in taken:
            processor.committed(batch)
        cursors = {partition: processor.cursor() for partition, processor in processors.items()}
        done = sum(batch.items for _, batch in taken)
        return Round(done, cursors, {p: (after[p], read.get(p, [])) for p in after})

    @property
    def waiting(self) -> bool:
        """Whether some partition's last run stopped at an item waiting for another one."""
        return any(processor.waiting for _, processor in self._held.values())

    def run_timers(self, due: Collection[int]) -> int:
        """Due membership timers of these held partitions."""
        return sum(
            processor.run_timers()
            for partition, (_, processor) in sorted(self._held.items())
            if partition in due
        )

    def run_jobs(self, idle: bool = True) -> int:
        """A page of background work (a scan) for each held partition that has some, when
        ``idle`` and otherwise now and then (see
        :meth:`~safar.runtime.audiences.AudienceProcessor.run_background`)."""
        return sum(
            processor.run_background(idle) for _, (_, processor) in sorted(self._held.items())
        )

    def refresh(self) -> None:
        """Re-read the catalog and the coordinator's jobs (after publishes)."""
        for _, processor in self._held.values():
            processor.refresh()
