"""Partitioned workers on PostgreSQL and NATS JetStream, as real processes (ADR 12): an API and two
``--role worker`` processes, each stepping the journeys of the partitions it holds, while
customers sign up. One worker's partition owner is killed with SIGKILL mid-load, then NATS is
restarted. The surviving worker takes the dead one's partitions over; in the end no acknowledged
event is lost, every customer's wait fires and their one message goes out exactly once, and every
customer went the same way."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from safar.stores.bundle import Stores
from safar.testing import wait_until
from safar.testing.nats import NatsServer
from tests.e2e.live import LiveServer
from tests.e2e.workers import (
    Worker,
    assert_every_customer_done,
    installation,
    partition_owners,
    shared_partitions,
    sign_up,
)
from tests.services import postgres_schema_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_SECONDS = 2
PARTITIONS = 4


@pytest.fixture
def partitioned(
    tmp_path: Path, private_nats: NatsServer
) -> Iterator[tuple[LiveServer, list[Worker], Stores]]:
    env = {
        "SAFAR_STORAGE_URL": postgres_schema_url(),
        "SAFAR_BUS_URL": private_nats.url,
        "SAFAR_BUS_PARTITIONS": str(PARTITIONS),
        "SAFAR_WORKERS_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    with installation(tmp_path, env) as found:
        yield found


def test_partition_owners_share_the_work_and_survive_a_kill_and_a_nats_restart(
    partitioned: tuple[LiveServer, list[Worker], Stores], private_nats: NatsServer
) -> None:
    api, workers, stores = partitioned
    nats = private_nats
    acked = sign_up(api, 0, 10)
    shared = shared_partitions(stores, PARTITIONS, workers)

    # Kill one partition owner mid-load: the other worker takes its partitions over.
    victim = sorted(set(shared.values()))[0]
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
    acked += sign_up(api, 10, 10)
    wait_until(
        lambda: (
            set(partition_owners(stores).values()) - {victim}
            and victim not in partition_owners(stores).values()
            and len(partition_owners(stores)) == PARTITIONS
        ),
        timeout=60,
        what="the survivor takes every partition",
    )
    acked += sign_up(api, 20, 10)

    # NATS restarts while customers keep coming: the feed carries on where it was.
    nats.stop()
    acked += sign_up(api, 30, 10)
    nats.start()
    acked += sign_up(api, 40, 10)

    customers = 50
    assert len(acked) == 2 * customers
    assert_every_customer_done(workers, stores, acked, customers)
