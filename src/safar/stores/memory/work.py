"""In-memory :class:`safar.ports.WorkFeed`, for tests and single-process simulations."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from safar.model.work import WorkBatch, WorkItem, lost


class MemoryWorkFeed:
    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("a work feed needs at least one partition")
        self.partitions = partitions
        self._batches: list[list[WorkBatch]] = [[] for _ in range(partitions)]
        self._published = 0
        self._lock = threading.Lock()

    def published_seq(self) -> int:
        return self._published

    def publish(self, upto: int, items: Mapping[int, Sequence[WorkItem]]) -> None:
        with self._lock:
            if upto <= self._published:
                return
            for partition, given in sorted(items.items()):
                if not 0 <= partition < self.partitions:
                    raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")
                batches = self._batches[partition]
                last = batches[-1].upto if batches else 0
                fresh = tuple(sorted((i for i in given if i.seq > last), key=lambda i: i.seq))
                if fresh and upto > last:
                    batches.append(WorkBatch(upto=upto, items=fresh, since=last))
            self._published = upto

    def read(self, partition: int, after_seq: int, limit: int) -> list[WorkBatch]:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")
        with self._lock:
            found: list[WorkBatch] = []
            count = 0
            for batch in self._batches[partition]:
                if batch.upto <= after_seq:
                    continue
                if not found and batch.since > after_seq:
                    raise lost(partition, after_seq, batch.since)
                items = tuple(i for i in batch.items if i.seq > after_seq)
                found.append(WorkBatch(upto=batch.upto, items=items, since=batch.since))
                count += len(items)
                if count >= limit:
                    break
            return found

    def read_many(self, after: Mapping[int, int], limit: int) -> dict[int, list[WorkBatch]]:
        return {partition: self.read(partition, seq, limit) for partition, seq in after.items()}

    def trim(self, partition: int, upto: int) -> None:
        with self._lock:
            batches = self._batches[partition]
            # The last batch stays: publishing goes on from its ``upto``.
            kept = [b for b in batches[:-1] if b.upto > upto]
            self._batches[partition] = kept + batches[-1:]

    def close(self) -> None:
        pass
