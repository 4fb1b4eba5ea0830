"""SQLite :class:`safar.ports.WorkFeed`: the partitioned work feed for one machine (ADR 15).

The feed lives in a database file of its own (``work.db`` in the data directory), so the
publisher and the partition owners never wait for the state database's write lock to pass
work along, nor make its WAL longer.

Tables:

- ``work_batches(partition, upto, since, at, items)``: one row per :class:`WorkBatch`, its items
  a MessagePack array; ``at`` is when it was published (ms), for ``max_age_s``.
- ``work_feed(partitions, published_seq)``: one row; the partition count is checked when the
  feed is opened.

A publish is one transaction: every partition gets its batch and ``published_seq`` moves, or
nothing changes. So a publish never fails part way, and two publishers at once are ordered by
the write lock, the second finding the range published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from safar.clock import SystemClock
from safar.errors import ConfigError
from safar.model.work import WorkBatch, WorkItem, lost
from safar.ports import Clock
from safar.stores.sqlite.db import Database

_MIGRATIONS = [
    """
    CREATE TABLE work_batches(
        partition INTEGER NOT NULL,
        upto INTEGER NOT NULL,
        since INTEGER NOT NULL,
        at INTEGER NOT NULL,
        items BLOB NOT NULL,
        PRIMARY KEY (partition, upto)
    ) WITHOUT ROWID;
    CREATE TABLE work_feed(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        partitions INTEGER NOT NULL,
        published_seq INTEGER NOT NULL
    )
    """,
]

_encode = msgspec.msgpack.encode
_decode_items = msgspec.msgpack.Decoder(tuple[WorkItem, ...]).decode
_LAST_UPTO = "SELECT upto FROM work_batches WHERE partition = ? ORDER BY upto DESC LIMIT 1"


class SqliteWorkFeed:
    """:class:`safar.ports.WorkFeed` in the SQLite file at ``path`` (see the module).

    Processes on one machine share it by opening the same file. ``max_age_s`` above 0 lets
    each publish drop batches published longer ago than that, read or not (a partition's last
    batch stays: publishing goes on from its ``upto``), by ``clock`` (the system's when None).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        partitions: int,
        synchronous: str = "full",
        max_age_s: float = 0,
        clock: Clock | None = None,
    ) -> None:
        if partitions < 1:
            raise ConfigError(f"a work feed needs at least one partition, not {partitions}")
        self.partitions = partitions
        self._max_age_ms = int(max_age_s * 1000)
        self._clock = clock or SystemClock()
        self._db = Database(path, synchronous=synchronous, cache_mb=16)
        try:
            self._db.migrate("work_feed", _MIGRATIONS)
            with self._db.write() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO work_feed(id, partitions, published_seq)"
                    " VALUES (1, ?, 0)",
                    (partitions,),
                )
                (stored,) = conn.execute("SELECT partitions FROM work_feed").fetchone()
        except BaseException:
            self._db.close()
            raise
        if stored != partitions:
            self._db.close()
            raise ConfigError(
                f"the work feed at {path} has {stored} partitions, not {partitions}"
                " (bus.partitions is fixed for an installation's life)"
            )

    def published_seq(self) -> int:
        with self._db.read() as conn:
            (upto,) = conn.execute("SELECT published_seq FROM work_feed").fetchone()
        return int(upto)

    def publish(self, upto: int, items: Mapping[int, Sequence[WorkItem]]) -> None:
        for partition in items:
            self._check(partition)
        now = self._clock.now_ms()
        with self._db.write() as conn:
            (published,) = conn.execute("SELECT published_seq FROM work_feed").fetchone()
            if upto <= published:
                return
            rows = []
            for partition, given in sorted(items.items()):
                if not given:
                    continue
                row = conn.execute(_LAST_UPTO, (partition,)).fetchone()
                last = row[0] if row else 0
                fresh = sorted((i for i in given if i.seq > last), key=lambda i: i.seq)
                if fresh and upto > last:
                    rows.append((partition, upto, last, now, _encode(fresh)))
            conn.executemany(
                "INSERT INTO work_batches(partition, upto, since, at, items)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("UPDATE work_feed SET published_seq = ?", (upto,))
            if self._max_age_ms:
                conn.execute(
                    "DELETE FROM work_batches AS b WHERE at < ? AND upto <"
                    " (SELECT max(upto) FROM work_batches WHERE partition = b.partition)",
                    (now - self._max_age_ms,),
                )

    def read(self, partition: int, after_seq: int, limit: int) -> list[WorkBatch]:
        return self.read_many({partition: after_seq}, limit)[partition]

    def read_many(self, after: Mapping[int, int], limit: int) -> dict[int, list[WorkBatch]]:
        for partition in after:
            self._check(partition)
        found: dict[int, list[WorkBatch]] = {}
        with self._db.read() as conn:
            for partition, after_seq in after.items():
                batches = found[partition] = []
                count = 0
                rows = conn.execute(
                    "SELECT upto, since, items FROM work_batches"
                    " WHERE partition = ? AND upto > ? ORDER BY upto",
                    (partition, after_seq),
                )
                for upto, since, data in rows:
                    if not batches and since > after_seq:
                        raise lost(partition, after_seq, since)
                    items = _decode_items(data)
                    if items and items[0].seq <= after_seq:
                        items = tuple(i for i in items if i.seq > after_seq)
                    batches.append(WorkBatch(upto=upto, items=items, since=since))
                    count += len(items)
                    if count >= limit:
                        break
        return found

    def trim(self, partition: int, upto: int) -> None:
        self._check(partition)
        with self._db.write() as conn:
            # The last batch stays: publishing goes on from its ``upto``.
            row = conn.execute(_LAST_UPTO, (partition,)).fetchone()
            if row is not None:
                conn.execute(
                    "DELETE FROM work_batches WHERE partition = ? AND upto <= ? AND upto < ?",
                    (partition, upto, row[0]),
                )

    def close(self) -> None:
        self._db.close()

    def _check(self, partition: int) -> None:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is not in 0..{self.partitions - 1}")
