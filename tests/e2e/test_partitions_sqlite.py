"""Partitioned workers on one machine: the embedded SQLite stores with the work feed in a SQLite
file (``bus.url = "sqlite:"``, ADR 15), as real processes. An API and two ``--role worker``
processes, each stepping the journeys of the partitions it holds, while customers sign up; one
worker's partition owner is killed with SIGKILL mid-load. The survivor takes its partitions
over; in the end no acknowledged event is lost, every customer's wait fires and their one
message goes out exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from safar.testing import wait_until
from tests.e2e.workers import (
    assert_every_customer_done,
    installation,
    partition_owners,
    shared_partitions,
    sign_up,
)

pytestmark = [pytest.mark.slow]

LEASE_SECONDS = 2
PARTITIONS = 4


def test_partition_owners_on_a_sqlite_feed_share_the_work_and_survive_a_kill(
    tmp_path: Path,
) -> None:
    env = {
        "SAFAR_BUS_URL": "sqlite:",
        "SAFAR_BUS_PARTITIONS": str(PARTITIONS),
        "SAFAR_WORKERS_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    with installation(tmp_path, env) as (api, workers, stores):
        acked = sign_up(api, 0, 10)
        shared = shared_partitions(stores, PARTITIONS, workers)
        assert (api.data_dir / "work.db").exists()

        victim = sorted(set(shared.values()))[0]
        os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
        acked += sign_up(api, 10, 10)
        wait_until(
            lambda: (
                victim not in partition_owners(stores).values()
                and len(partition_owners(stores)) == PARTITIONS
            ),
            timeout=60,
            what="the survivor takes every partition",
        )
        acked += sign_up(api, 20, 10)

        customers = 30
        assert len(acked) == 2 * customers
        assert_every_customer_done(workers, stores, acked, customers)
