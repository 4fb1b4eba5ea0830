"""The work feed across a NATS restart, with real processes: ``safar serve`` publishes every event
to its customer's partition of a JetStream stream on a private ``nats-server``, which is stopped
while customers keep coming and started again. Meanwhile ingestion and profiles go on; afterwards
the feed catches up, and every acknowledged event is in it exactly once, in its customer's
partition, in order (ADR 12)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest

from safar.clock import SystemClock
from safar.core.assignment import partition_of
from safar.stores.bundle import open_stores
from safar.stores.nats import JetStreamWorkFeed
from safar.testing import wait_until
from safar.testing.nats import NatsServer
from tests.e2e.live import LiveServer

pytestmark = pytest.mark.slow

PARTITIONS = 4


def send(api: LiveServer, first: int, count: int) -> list[str]:
    """Customers ``first`` … browse anonymously, sign up and buy; the message ids acknowledged."""
    acked: list[str] = []
    for n in range(first, first + count):
        batch = [
            {"type": "page", "anonymousId": f"d{n}", "name": "Home", "messageId": f"p{n}"},
            {"type": "identify", "userId": f"c{n}", "anonymousId": f"d{n}", "messageId": f"i{n}"},
            {"type": "track", "userId": f"c{n}", "event": "Order Completed", "messageId": f"o{n}"},
        ]
        status, _ = api.request(
            "POST", "/v1/batch", msgspec.json.encode({"batch": batch}), {"Authorization": api.basic}
        )
        if status == 200:
            acked += [f"p{n}", f"i{n}", f"o{n}"]
    return acked


def test_the_feed_survives_a_nats_restart_with_every_event_once_in_order(
    tmp_path: Path, private_nats: NatsServer
) -> None:
    nats = private_nats
    # The owners do not trim: the test reads every partition's feed from its start.
    env = {
        "SAFAR_BUS_URL": nats.url,
        "SAFAR_BUS_PARTITIONS": str(PARTITIONS),
        "SAFAR_BUS_TRIM_SECONDS": "0",
    }
    api = LiveServer(tmp_path / "data", env=env).start()
    stores = open_stores(api.settings(), SystemClock())
    feed: JetStreamWorkFeed | None = None
    try:
        acked = send(api, 0, 20)
        feed = JetStreamWorkFeed(nats.url, partitions=PARTITIONS, timeout_s=2)
        wait_until(lambda: feed.published_seq() >= 60, what="the first customers published")
        feed.close()
        feed = None

        nats.stop()
        acked += send(api, 20, 20)
        api.wait_processed()  # profiles go on without NATS
        nats.start()
        acked += send(api, 40, 20)
        api.wait_processed()

        last = stores.events.last_seq()
        feed = JetStreamWorkFeed(nats.url, partitions=PARTITIONS, timeout_s=5)
        opened = feed
        wait_until(lambda: opened.published_seq() >= last, timeout=60, what="the feed caught up")
        assert len(acked) == 180 == last

        seqs: Counter[int] = Counter()
        for partition in range(PARTITIONS):
            items = [i for b in feed.read(partition, 0, 10**6) for i in b.items]
            assert [i.seq for i in items] == sorted({i.seq for i in items}), partition
            for item in items:
                if item.is_handover:
                    continue
                seqs[item.seq] += 1
                assert partition_of(item.profile_id, PARTITIONS) == partition
        assert seqs == Counter(range(1, last + 1)), "every event exactly once"
        # Each customer's events are in the partition of the profile it has now.
        for n in (0, 25, 59):
            profile = stores.profiles.find(("user_id", f"c{n}"))
            assert profile is not None
            home = partition_of(profile.id, PARTITIONS)
            mine = {
                i.seq
                for b in feed.read(home, 0, 10**6)
                for i in b.items
                if i.profile_id == profile.id and not i.is_handover
            }
            assert len(mine) >= 2, (n, mine)  # at least the identify and the order
    finally:
        if feed is not None:
            feed.close()
        stores.close()
        api.stop()
