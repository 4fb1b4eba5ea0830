"""The :class:`safar.ports.WorkFeed` contract, run against every adapter: in memory, in a SQLite
file, and on NATS JetStream (``SAFAR_TEST_NATS_URL``, else a private nats-server; see
:mod:`safar.testing.nats`)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.errors import ConfigError, FeedGap, StoreError
from safar.model.work import WorkBatch, WorkItem
from safar.ports import WorkFeed
from safar.stores.memory.work import MemoryWorkFeed
from safar.testing import wait_until
from tests.services import nats_stream

PARTITIONS = 4
EVERYTHING = 1_000_000  # a read limit no test reaches


class Feeds:
    """Opens work feeds of one kind on one storage, as separate processes would."""

    #: Examples for the hypothesis properties: a JetStream one costs a stream and connections.
    examples = 60

    def open(self, partitions: int = PARTITIONS) -> WorkFeed:
        raise NotImplementedError

    def close(self) -> None:
        """Close every feed opened so far."""

    def reject_messages_over(self, size: int | None) -> bool:
        """Make the storage refuse any batch over ``size`` bytes (None: any size again); False
        when the adapter cannot fail part way."""
        return False


class MemoryFeeds(Feeds):
    """One in-memory feed, handed to every opener (it cannot be reopened)."""

    def __init__(self) -> None:
        self._feed: MemoryWorkFeed | None = None

    def open(self, partitions: int = PARTITIONS) -> WorkFeed:
        if self._feed is None:
            self._feed = MemoryWorkFeed(partitions)
        return self._feed


class SqliteFeeds(Feeds):
    """Feeds on a SQLite file of their own, each open a connection of its own."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="safar-feed-")
        self._opened: list[WorkFeed] = []

    def open(self, partitions: int = PARTITIONS) -> WorkFeed:
        from safar.stores.sqlite.work import SqliteWorkFeed

        feed = SqliteWorkFeed(f"{self._dir.name}/work.db", partitions=partitions)
        self._opened.append(feed)
        return feed

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()
        self._dir.cleanup()


class JetStreamFeeds(Feeds):
    """Feeds on a stream and subject of their own on the test NATS server."""

    examples = 10

    def __init__(self) -> None:
        self.url, self.stream, self.subject = nats_stream()
        self._opened: list[WorkFeed] = []

    def open(self, partitions: int = PARTITIONS) -> WorkFeed:
        from safar.stores.nats import JetStreamWorkFeed

        feed = JetStreamWorkFeed(
            self.url, partitions=partitions, stream=self.stream, subject=self.subject
        )
        self._opened.append(feed)
        return feed

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()

    def reject_messages_over(self, size: int | None) -> bool:
        asyncio.run(self._set_max_msg_size(-1 if size is None else size))
        return True

    async def _set_max_msg_size(self, size: int) -> None:
        import nats

        client = await nats.connect(self.url, allow_reconnect=False)
        try:
            js = client.jetstream()
            config = (await js.stream_info(self.stream)).config
            config.max_msg_size = size
            await js.update_stream(config)
        finally:
            await client.close()


FEED_KINDS = [
    pytest.param(MemoryFeeds, id="memory"),
    pytest.param(SqliteFeeds, id="sqlite"),
    pytest.param(JetStreamFeeds, id="jetstream"),
]


@pytest.fixture(params=FEED_KINDS)
def make_feeds(request: pytest.FixtureRequest) -> Iterator[Callable[[], Feeds]]:
    """Makes fresh, empty storages (hypothesis needs one per example); all closed at the end."""
    made: list[Feeds] = []

    def make() -> Feeds:
        made.append(request.param())
        return made[-1]

    yield make
    for feeds in made:
        feeds.close()


@pytest.fixture
def feeds(make_feeds: Callable[[], Feeds]) -> Feeds:
    return make_feeds()


@pytest.fixture
def jetstream_feeds() -> Iterator[JetStreamFeeds]:
    feeds = JetStreamFeeds()
    yield feeds
    feeds.close()


def item(seq: int, profile_id: str | None = None) -> WorkItem:
    return WorkItem(seq=seq, profile_id=profile_id or f"profile-{seq}")


def items(*seqs: int) -> list[WorkItem]:
    return [item(seq) for seq in seqs]


def shape(batches: Sequence[WorkBatch]) -> list[tuple[int, list[int]]]:
    """Batches as ``(upto, [seq, ...])``, for readable comparisons."""
    return [(batch.upto, [i.seq for i in batch.items]) for batch in batches]


def everything(feed: WorkFeed) -> list[list[tuple[int, list[int]]]]:
    return [shape(feed.read(n, 0, EVERYTHING)) for n in range(feed.partitions)]


# -- publishing and reading ---------------------------------------------------------------------


def test_a_new_feed_is_empty(feeds: Feeds) -> None:
    feed = feeds.open()
    assert feed.partitions == PARTITIONS
    assert feed.published_seq() == 0
    assert everything(feed) == [[]] * PARTITIONS
    assert feed.read(0, 100, 10) == []


def test_a_publish_appends_one_batch_to_each_partition_given_items(feeds: Feeds) -> None:
    feed = feeds.open()
    feed.publish(10, {0: items(4, 1), 2: items(3, 9), 3: []})
    assert feed.published_seq() == 10
    assert everything(feed) == [[(10, [1, 4])], [], [(10, [3, 9])], []]

    handover = WorkItem(seq=12, profile_id="b", waits=(2,), handover=1, moves=("a", "c"))
    feed.publish(20, {0: [handover], 1: items(15)})
    assert feed.published_seq() == 20
    assert everything(feed) == [
        [(10, [1, 4]), (20, [12])],
        [(20, [15])],
        [(10, [3, 9])],
        [],
    ]
    assert feed.read(0, 10, 10) == [WorkBatch(upto=20, items=(handover,), since=10)]


def test_a_read_returns_the_batches_past_after_seq_with_their_items_past_it(
    feeds: Feeds,
) -> None:
    feed = feeds.open()
    feed.publish(10, {0: items(1, 4, 9)})
    feed.publish(20, {0: items(12, 18)})
    assert shape(feed.read(0, 0, 10)) == [(10, [1, 4, 9]), (20, [12, 18])]
    assert shape(feed.read(0, 4, 10)) == [(10, [9]), (20, [12, 18])]
    assert shape(feed.read(0, 9, 10)) == [(10, []), (20, [12, 18])]  # its upto is past 9
    assert shape(feed.read(0, 10, 10)) == [(20, [12, 18])]
    assert shape(feed.read(0, 15, 10)) == [(20, [18])]
    assert feed.read(0, 20, 10) == []
    assert feed.read(0, 99, 10) == []
    assert feed.read(1, 0, 10) == []


def test_a_read_stops_after_the_batch_that_reaches_the_limit(feeds: Feeds) -> None:
    feed = feeds.open()
    for upto, seqs in ((10, (1, 2, 3)), (20, (11, 13, 15)), (30, (21, 22, 23))):
        feed.publish(upto, {0: items(*seqs)})
    uptos = {limit: [b.upto for b in feed.read(0, 0, limit)] for limit in (1, 3, 4, 6, 7, 99)}
    assert uptos == {1: [10], 3: [10], 4: [10, 20], 6: [10, 20], 7: [10, 20, 30], 99: [10, 20, 30]}
    assert shape(feed.read(0, 12, 2)) == [(20, [13, 15])]  # only items past after_seq count
    assert shape(feed.read(0, 12, 3)) == [(20, [13, 15]), (30, [21, 22, 23])]
    assert shape(feed.read(0, 3, 1)) == [(10, []), (20, [11, 13, 15])]  # an empty batch counts 0


def test_read_many_reads_each_partition_from_its_own_position(feeds: Feeds) -> None:
    feed = feeds.open()
    feed.publish(10, {0: items(1, 4), 1: items(2, 9), 2: items(3)})
    feed.publish(20, {0: items(12), 1: items(15, 18)})
    found = feed.read_many({0: 10, 1: 0, 2: 3, 3: 0}, 2)
    assert {n: shape(batches) for n, batches in found.items()} == {
        0: [(20, [12])],
        1: [(10, [2, 9])],  # the limit, as in read
        2: [(10, [])],
        3: [],
    }
    assert {n: feed.read(n, after, 2) for n, after in ((0, 10), (1, 0))} == {
        n: found[n] for n in (0, 1)
    }
    assert feed.read_many({}, 10) == {}
    with pytest.raises(ValueError, match="partition 7"):
        feed.read_many({7: 0}, 10)


def test_each_batch_names_where_the_one_before_it_ended(feeds: Feeds) -> None:
    feed = feeds.open()
    feed.publish(10, {0: items(1)})
    feed.publish(20, {1: items(12)})
    feed.publish(30, {0: items(25)})
    assert [b.since for b in feed.read(0, 0, EVERYTHING)] == [0, 10]
    assert [b.since for b in feed.read(1, 0, EVERYTHING)] == [0]


def test_trim_drops_what_was_committed_and_reads_past_it_are_unchanged(feeds: Feeds) -> None:
    feed = feeds.open()
    for upto in (10, 20, 30, 40):
        feed.publish(upto, {0: items(upto - 5), 1: items(upto - 4)})
    before = {after: feed.read(0, after, EVERYTHING) for after in (20, 25, 30, 40)}
    feed.trim(0, 20)
    assert {after: feed.read(0, after, EVERYTHING) for after in before} == before
    assert shape(feed.read(1, 0, EVERYTHING)) == [(u, [u - 4]) for u in (10, 20, 30, 40)]
    feed.trim(0, 99)  # past the end: the last batch stays, publishing goes on after it
    feed.publish(50, {0: items(45)})
    assert shape(feed.read(0, 40, EVERYTHING)) == [(50, [45])]
    feed.trim(3, 10)  # an empty partition


def test_a_read_of_trimmed_batches_names_the_lost_range(feeds: Feeds) -> None:
    feed = feeds.open()
    for upto in (10, 20, 30):
        feed.publish(upto, {0: items(upto - 5)})
    feed.trim(0, 20)
    with pytest.raises(FeedGap, match=r"partition 0's items after seq 5 .*after 20") as gap:
        feed.read(0, 5, EVERYTHING)
    assert (gap.value.partition, gap.value.after_seq, gap.value.since) == (0, 5, 20)
    with pytest.raises(FeedGap, match="after seq 0"):
        feed.read_many({0: 0, 1: 0}, EVERYTHING)
    assert shape(feed.read(0, 20, EVERYTHING)) == [(30, [25])]


def test_publishing_a_range_again_appends_nothing_twice(feeds: Feeds) -> None:
    feed = feeds.open()
    first = {0: items(2, 5), 1: items(7)}
    feed.publish(10, first)
    before = everything(feed)
    feed.publish(10, first)
    feed.publish(8, {0: items(2, 5), 3: items(6)})  # at or below published_seq: nothing
    assert everything(feed) == before
    assert feed.published_seq() == 10

    feed.publish(20, {0: [*items(2, 5), item(15)], 1: items(7), 2: items(11)})  # a longer range
    assert everything(feed) == [[(10, [2, 5]), (20, [15])], [(10, [7])], [(20, [11])], []]
    assert feed.published_seq() == 20


@pytest.mark.parametrize("retry_upto", [10, 20], ids=["same-range", "longer-range"])
def test_a_publish_that_failed_part_way_is_completed_by_the_next(
    feeds: Feeds, retry_upto: int
) -> None:
    feed = feeds.open()
    if not feeds.reject_messages_over(256):
        return  # the adapter publishes all partitions or none
    big = [item(seq, "customer-" + "x" * 100) for seq in (1, 3, 5, 7, 9)]  # over 256 bytes
    with pytest.raises(StoreError):
        feed.publish(10, {0: items(2), 1: big, 2: items(4)})
    assert everything(feed) == [[(10, [2])], [], [(10, [4])], []]  # two of three got through
    assert feed.published_seq() == 0

    feeds.reject_messages_over(None)
    if retry_upto == 10:
        feed.publish(10, {0: items(2), 1: big, 2: items(4)})
        assert everything(feed) == [[(10, [2])], [(10, [1, 3, 5, 7, 9])], [(10, [4])], []]
    else:
        feed.publish(20, {0: items(2, 12), 1: [*big, item(15)], 2: items(4)})
        assert everything(feed) == [
            [(10, [2]), (20, [12])],
            [(20, [1, 3, 5, 7, 9, 15])],
            [(10, [4])],
            [],
        ]
    assert feed.published_seq() == retry_upto


def test_what_was_published_is_there_when_the_feed_is_opened_again(feeds: Feeds) -> None:
    feed = feeds.open()
    feed.publish(10, {0: items(3), 3: items(7, 8)})
    feed.close()
    again = feeds.open()
    assert again.published_seq() == 10
    assert everything(again) == [[(10, [3])], [], [], [(10, [7, 8])]]
    again.publish(15, {1: items(12)})
    assert again.published_seq() == 15


@pytest.mark.parametrize("kind", [SqliteFeeds, JetStreamFeeds], ids=["sqlite", "jetstream"])
def test_a_feed_opened_with_another_partition_count_is_refused(kind: type[Feeds]) -> None:
    feeds = kind()
    try:
        feed = feeds.open(partitions=4)
        feed.publish(5, {1: items(5)})
        with pytest.raises(ConfigError, match=r"has 4 partitions, not 6"):
            feeds.open(partitions=6)
        assert feeds.open(partitions=4).read(1, 0, 10) == feed.read(1, 0, 10)
    finally:
        feeds.close()


# -- two publishers, and reads from anywhere -----------------------------------------------------


def check_complete(feed: WorkFeed, log: Sequence[int], upto: int) -> None:
    """Every partition holds exactly its events of ``log`` up to ``upto`` (event ``seq`` is
    ``log[seq - 1]``'s partition), once each, in order, in batches of growing ``upto``."""
    assert feed.published_seq() == upto
    for n in range(feed.partitions):
        batches = feed.read(n, 0, EVERYTHING)
        uptos = [b.upto for b in batches]
        assert uptos == sorted(set(uptos))
        assert all(i.seq <= b.upto for b in batches for i in b.items)
        seqs = [i.seq for b in batches for i in b.items]
        assert seqs == [seq for seq in range(1, upto + 1) if log[seq - 1] == n]


def range_items(log: Sequence[int], after: int, upto: int) -> dict[int, list[WorkItem]]:
    """The items of the log range ``(after, upto]``, by partition, as a publisher gives them."""
    found: dict[int, list[WorkItem]] = {}
    for seq in range(after + 1, upto + 1):
        found.setdefault(log[seq - 1], []).append(item(seq))
    return found


def reads_agree(feed: WorkFeed, reader: WorkFeed, after: int, limit: int) -> None:
    """``reader``'s reads match the contract's definition on the full feed, and reading on
    batch by batch from ``after`` goes through the rest of it."""
    for n in range(feed.partitions):
        full = feed.read(n, 0, EVERYTHING)
        wanted: list[WorkBatch] = []
        count = 0
        for batch in full:
            if batch.upto <= after:
                continue
            kept = tuple(i for i in batch.items if i.seq > after)
            wanted.append(WorkBatch(batch.upto, kept, batch.since))
            count += len(kept)
            if count >= limit:
                break
        assert reader.read(n, after, limit) == wanted
        walked: list[WorkBatch] = []
        cursor = after
        while batches := reader.read(n, cursor, limit):
            walked += batches
            cursor = batches[-1].upto
        rest = [b for b in full if b.upto > after]
        trimmed = [
            WorkBatch(b.upto, tuple(i for i in b.items if i.seq > after), b.since) for b in rest
        ]
        assert walked == trimmed


publish_steps = st.lists(
    st.tuples(st.integers(0, 1), st.integers(1, 12), st.booleans()), min_size=1, max_size=8
)


def test_two_publishers_with_stale_views_never_duplicate_or_reorder(
    make_feeds: Callable[[], Feeds],
) -> None:
    """Publishers that each publish from the range they last published (a stale view of
    ``published_seq`` after the other's publishes: the crash-and-retry case), then one that
    finishes the log: every partition ends up with its items exactly once, in order, and any
    read agrees with the full feed."""
    examples = make_feeds().examples

    @settings(max_examples=examples)
    @given(
        log=st.lists(st.integers(0, PARTITIONS - 1), min_size=1, max_size=60),
        steps=publish_steps,
        after=st.integers(0, 60),
        limit=st.integers(1, 8),
    )
    def check(log: list[int], steps: list[tuple[int, int, bool]], after: int, limit: int) -> None:
        feeds = make_feeds()
        try:
            publishers, observer = [feeds.open(), feeds.open()], feeds.open()
            seen = [0, 0]  # what each publisher last knew of published_seq
            for who, length, refresh in steps:
                feed = publishers[who]
                if refresh:
                    seen[who] = feed.published_seq()
                upto = min(len(log), seen[who] + length)
                feed.publish(upto, range_items(log, seen[who], upto))
                seen[who] = max(seen[who], upto)
                assert observer.published_seq() == max(seen)
            last = publishers[0]
            last.publish(len(log), range_items(log, last.published_seq(), len(log)))
            check_complete(last, log, len(log))
            reads_agree(last, feeds.open(), after, limit)  # a reader that never read
            reads_agree(last, publishers[1], after, limit)
        finally:
            feeds.close()

    check()


def test_concurrent_publishers_never_duplicate_or_reorder(feeds: Feeds) -> None:
    log = [(seq * 7919) % PARTITIONS for seq in range(1, 301)]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def publish_all(feed: WorkFeed, step: int) -> None:
        try:
            start.wait()
            while (done := feed.published_seq()) < len(log):
                upto = min(len(log), done + step)
                feed.publish(upto, range_items(log, done, upto))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=publish_all, args=(feeds.open(), step)) for step in (7, 11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    check_complete(feeds.open(), log, len(log))


# -- SQLite only ----------------------------------------------------------------------------------


def test_sqlite_drops_batches_older_than_max_age_when_it_next_publishes(tmp_path: Any) -> None:
    from safar.stores.sqlite.work import SqliteWorkFeed
    from safar.testing import FakeClock

    clock = FakeClock(1_000_000)
    feed = SqliteWorkFeed(tmp_path / "work.db", partitions=2, max_age_s=60, clock=clock)
    try:
        feed.publish(5, {0: items(2, 5), 1: items(3)})
        clock.advance(seconds=30)
        feed.publish(9, {0: items(7)})
        clock.advance(seconds=31)  # the batches up to 5 are 61 s old, the one up to 9 is 31 s old
        feed.publish(12, {0: items(12)})
        # Partition 1's only batch stays: publishing goes on from its ``upto``.
        assert feed.read(1, 0, EVERYTHING) == [WorkBatch(5, (item(3),), since=0)]
        with pytest.raises(FeedGap, match="partition 0's items after seq 0"):
            feed.read(0, 0, EVERYTHING)
        assert feed.read(0, 5, EVERYTHING) == [
            WorkBatch(9, (item(7),), since=5),
            WorkBatch(12, (item(12),), since=9),
        ]
    finally:
        feed.close()


# -- JetStream only -------------------------------------------------------------------------------


def test_a_range_too_large_for_one_message_is_published_whole_in_order(
    jetstream_feeds: JetStreamFeeds,
) -> None:
    """Over the server's max_payload (1 MB by default) a batch goes as several messages."""
    feed = jetstream_feeds.open()
    many = [item(seq, f"customer-{seq:080d}") for seq in range(1, 30_001)]  # 3 MB
    feed.publish(30_000, {2: many})
    batches = feed.read(2, 0, EVERYTHING)
    assert len(batches) > 2
    assert batches[-1].upto == 30_000
    assert [i for b in batches for i in b.items] == many
    assert all(b.upto == b.items[-1].seq for b in batches[:-1])
    assert [b.since for b in batches] == [0, *(b.upto for b in batches[:-1])]
    assert feed.read(2, 29_999, 1) == [WorkBatch(30_000, (many[-1],), batches[-1].since)]
    reader = jetstream_feeds.open()
    for after in (0, 1, batches[0].upto, batches[0].upto + 1, batches[1].upto + 7, 29_999):
        reader.read(2, 0, 1)  # the reader is at the first message, then reads from `after`
        reads_agree(feed, reader, after, 5_000)  # these messages are neighbours in the stream


def test_calls_fail_retryably_while_nats_is_down_and_work_again_after(
    jetstream_feeds: JetStreamFeeds,
) -> None:
    from safar.stores.nats import JetStreamWorkFeed
    from safar.testing.nats import NatsServer

    server = NatsServer()
    timeout_s = 0.5
    names: dict[str, Any] = {"stream": jetstream_feeds.stream, "subject": jetstream_feeds.subject}
    feed = JetStreamWorkFeed(server.url, partitions=2, timeout_s=timeout_s, **names)
    try:
        feed.publish(5, {0: items(1, 5), 1: items(3)})
        server.stop()
        calls: list[Callable[[], object]] = [
            lambda: feed.publish(9, {0: items(7), 1: items(9)}),
            lambda: feed.read(0, 0, 10),
            feed.published_seq,
            lambda: JetStreamWorkFeed(server.url, partitions=2, timeout_s=timeout_s, **names),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreError) as raised:
                call()
            assert raised.value.retryable
            assert time.monotonic() - started < timeout_s + 5  # bounded, not hanging

        server.start()  # the same port and store: a restart
        wait_until(lambda: _answers(feed), timeout=20, what="the feed reconnected")
        feed.publish(9, {0: items(7), 1: items(9)})  # the range that failed, again
        assert everything(feed) == [[(5, [1, 5]), (9, [7])], [(5, [3]), (9, [9])]]
        assert feed.published_seq() == 9
    finally:
        feed.close()
        server.remove()


def _answers(feed: WorkFeed) -> bool:
    try:
        feed.published_seq()
    except StoreError:
        return False
    return True
