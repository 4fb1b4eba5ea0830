"""Workers on PostgreSQL, as real processes: an API process and two ``--role worker`` processes
share an installation while customers sign up, and the worker stepping is stopped for longer than
its lease, then killed with SIGKILL. After each fault the other worker takes over; in the end no
acknowledged event is lost, every customer's wait fires and their one message goes out exactly
once, and the paused worker, woken after being replaced, commits nothing (its fence is stale).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from safar.clock import SystemClock
from safar.runtime.leases import STEPPER
from safar.stores.bundle import Stores
from safar.testing import wait_until
from tests.e2e.live import LiveServer
from tests.e2e.workers import (
    Worker,
    assert_every_customer_done,
    installation,
    sent_keys,
    sign_up,
)
from tests.services import postgres_schema_url

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_SECONDS = 2


@pytest.fixture
def workers_on_postgres(tmp_path: Path) -> Iterator[tuple[LiveServer, list[Worker], Stores]]:
    env = {
        "SAFAR_STORAGE_URL": postgres_schema_url(),
        "SAFAR_WORKERS_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    with installation(tmp_path, env) as found:
        yield found


def stepper(stores: Stores, workers: list[Worker]) -> tuple[Worker, int]:
    """The worker whose child holds the stepper lease, and that child's pid."""
    owner = wait_until(
        lambda: stores.leases.holders(SystemClock().now_ms()).get(STEPPER), what="a stepper"
    )
    pid = int(owner.rsplit(":", 1)[1])
    (worker,) = [w for w in workers if pid in w.children()]
    return worker, pid


def test_workers_take_over_from_a_paused_and_a_killed_stepper(
    workers_on_postgres: tuple[LiveServer, list[Worker], Stores],
) -> None:
    api, workers, stores = workers_on_postgres
    acked = sign_up(api, 0, 10)
    first, paused_pid = stepper(stores, workers)

    # Paused past its lease (perhaps inside a transaction, whose locks the server then frees):
    # the other worker takes over and carries on.
    os.kill(paused_pid, signal.SIGSTOP)
    try:
        acked += sign_up(api, 10, 10)
        _, second_pid = wait_until(
            lambda: (found := stepper(stores, workers))[0] is not first and found,
            timeout=60,
            what="the standby takes over",
        )
        acked += sign_up(api, 20, 10)
        wait_until(lambda: len(sent_keys(workers)) >= 25, timeout=60, what="messages flow again")
    finally:
        # Woken, the paused one finds its lease gone: its fenced commits are refused.
        os.kill(paused_pid, signal.SIGCONT)
    acked += sign_up(api, 30, 10)

    # Killed mid-load: the woken worker, now a standby, takes over.
    os.kill(second_pid, signal.SIGKILL)
    acked += sign_up(api, 40, 10)
    wait_until(
        lambda: stepper(stores, workers)[0] is first, timeout=30, what="the first takes over"
    )
    acked += sign_up(api, 50, 10)

    customers = 60
    assert len(acked) == 2 * customers
    assert_every_customer_done(workers, stores, acked, customers)
