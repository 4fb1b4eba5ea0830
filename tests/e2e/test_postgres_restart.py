"""A PostgreSQL restart under load, as real processes: an API and two ``--role worker`` processes
share an installation on a PostgreSQL of the test's own, with the journeys stepped from the event
log or, with a work feed, by partition owners. While customers sign up (each batch sent again
until acknowledged, as Segment's SDKs do), PostgreSQL is stopped for longer than a lease and
started again. Every process recovers by itself; in the end no acknowledged event is lost or
doubled, every customer's wait fires and their one message goes out exactly once, and every
customer went the same way through the journey."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from safar.stores.bundle import Stores
from safar.testing import wait_until
from safar.testing.services import PostgresServer
from tests.e2e.live import LiveServer
from tests.e2e.workers import (
    Worker,
    assert_every_customer_done,
    installation,
    sent_keys,
    sign_up_retrying,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_SECONDS = 2
#: How long PostgreSQL stays down: longer than a lease, so every lease lapses meanwhile.
OUTAGE_SECONDS = 3
PARTITIONS = 4
#: Seconds between sign-ups around the outage: a steady stream, not a burst that ends first.
SIGN_UP_EVERY = 0.05


@pytest.fixture(params=[False, True], ids=["log", "feed"])
def on_private_postgres(
    request: pytest.FixtureRequest, tmp_path: Path, private_postgres: PostgresServer
) -> Iterator[tuple[LiveServer, list[Worker], Stores]]:
    env = {
        "SAFAR_STORAGE_URL": private_postgres.url,
        "SAFAR_WORKERS_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    if request.param:
        nats = request.getfixturevalue("private_nats")
        env |= {"SAFAR_BUS_URL": nats.url, "SAFAR_BUS_PARTITIONS": str(PARTITIONS)}
    with installation(tmp_path, env) as found:
        yield found


def test_every_process_recovers_from_a_postgres_restart_under_load(
    on_private_postgres: tuple[LiveServer, list[Worker], Stores], private_postgres: PostgresServer
) -> None:
    api, workers, stores = on_private_postgres
    acked = sign_up_retrying(api, 0, 10)
    wait_until(lambda: len(sent_keys(workers)) >= 3, timeout=60, what="the first messages")
    acked += sign_up_retrying(api, 10, 10)

    # Customers keep signing up, one every SIGN_UP_EVERY seconds, while PostgreSQL goes down
    # and comes back, with the last ones' waits due during the outage and messages going out.
    enough = threading.Event()
    with ThreadPoolExecutor(1) as client:
        signing_up = client.submit(keep_signing_up, api, 20, acked, enough)
        wait_until(lambda: len(acked) >= 2 * 23, timeout=30, what="sign-ups under way")
        private_postgres.stop()
        time.sleep(OUTAGE_SECONDS)  # the length of the fault, not a wait for an outcome
        private_postgres.start()
        restarted = len(acked)
        wait_until(
            lambda: len(acked) >= restarted + 2 * 5 or signing_up.done(),
            timeout=60,
            what="sign-ups acknowledged again after the restart",
        )
        enough.set()
        customers = signing_up.result(timeout=60)

    assert len(acked) == 2 * customers
    assert_every_customer_done(workers, stores, acked, customers)


def keep_signing_up(api: LiveServer, first: int, acked: list[str], enough: threading.Event) -> int:
    """Customers ``first`` … sign up, each until acknowledged (their ids added to ``acked``),
    until ``enough`` is set; how many customers there are now."""
    n = first
    while not enough.is_set():
        acked += sign_up_retrying(api, n, 1)
        n += 1
        enough.wait(SIGN_UP_EVERY)
    return n
