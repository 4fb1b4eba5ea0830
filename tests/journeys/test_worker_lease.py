"""Workers sharing an installation: one steps under the stepper lease, the others stand by and
take over when it stops or its lease runs out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.journeys.test_sqlite_runtime import settings_in

from safar.errors import StoreError
from safar.ports import LeaseStore
from safar.runtime.internal import internal_event
from safar.runtime.leases import STEPPER, held_lease
from safar.runtime.worker import Worker
from safar.stores.bundle import Stores, open_stores
from safar.testing import FakeClock, wait_until


class Running:
    """A worker running in a thread, counting the batches it stepped."""

    def __init__(self, stores: Stores, tmp_path: Path, clock: FakeClock, owner: str) -> None:
        settings = settings_in(tmp_path)
        settings.workers.lease_seconds = 1.0
        self.worker = Worker(stores, settings, clock, owner=owner)
        self.steps = 0
        stepped = self.worker.step_once

        def counting() -> int:
            self.steps += 1
            return stepped()

        self.worker.step_once = counting  # type: ignore[method-assign]
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self.worker.run, args=(self.stop,), kwargs={"dispatch": False}, daemon=True
        )
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class CountingLeases:
    """The lease store, counting refusals (a standby's tries)."""

    def __init__(self, leases: LeaseStore) -> None:
        self._leases = leases
        self.refused = 0

    def acquire(self, name: str, owner: str, now: int, ttl_ms: int) -> int | None:
        epoch = self._leases.acquire(name, owner, now, ttl_ms)
        self.refused += epoch is None
        return epoch

    def release(self, name: str, owner: str) -> None:
        self._leases.release(name, owner)

    def holders(self, now: int) -> dict[str, str]:
        return self._leases.holders(now)


@pytest.fixture
def stores(tmp_path: Path, clock: FakeClock) -> Iterator[Stores]:
    with open_stores(settings_in(tmp_path), clock) as opened:
        opened.leases = CountingLeases(opened.leases)
        yield opened


def append(stores: Stores, clock: FakeClock, key: str) -> None:
    now = clock.now_ms()
    stores.events.append(
        [
            internal_event(
                key=key,
                type="track",
                identifier=("user_id", key),
                timestamp=now,
                received_at=now,
                name="Order Completed",
            )
        ]
    )


def processed(stores: Stores) -> bool:
    return stores.profiles.processed_seq() == stores.events.last_seq()


def test_one_worker_steps_and_a_standby_takes_over_when_it_stops(
    stores: Stores, tmp_path: Path, clock: FakeClock
) -> None:
    first = Running(stores, tmp_path, clock, "w1")
    wait_until(lambda: stores.leases.holders(clock.now_ms()) == {STEPPER: "w1"})
    second = Running(stores, tmp_path, clock, "w2")
    try:
        append(stores, clock, "a")
        wait_until(lambda: processed(stores), what="w1 handles the event")
        assert second.steps == 0
        first.halt()  # a clean stop releases the lease: w2 takes over at once
        append(stores, clock, "b")
        wait_until(lambda: processed(stores), what="w2 handles the event")
        assert second.steps > 0
        assert stores.leases.holders(clock.now_ms()) == {STEPPER: "w2"}
    finally:
        first.halt()
        second.halt()


def test_a_standby_takes_over_when_the_holder_stops_renewing(
    stores: Stores, tmp_path: Path, clock: FakeClock
) -> None:
    # A holder that died without releasing: its lease runs out after lease_seconds.
    assert stores.leases.acquire(STEPPER, "dead", clock.now_ms(), 1_000) == 1
    standby = Running(stores, tmp_path, clock, "w2")
    try:
        append(stores, clock, "a")
        leases = stores.leases
        assert isinstance(leases, CountingLeases)
        wait_until(lambda: leases.refused >= 2, what="the standby tries twice")
        assert not processed(stores) and standby.steps == 0
        clock.advance(seconds=1)
        wait_until(lambda: processed(stores), what="the standby takes over")
        assert stores.leases.holders(clock.now_ms()) == {STEPPER: "w2"}
    finally:
        standby.halt()


def test_a_worker_that_lost_its_lease_commits_nothing(
    stores: Stores, tmp_path: Path, clock: FakeClock
) -> None:
    # What a worker paused past its lease does when it wakes up: its batch carries the fence
    # of the lease it held, and the store refuses it, because another worker took over.
    settings = settings_in(tmp_path)
    paused = Worker(stores, settings, clock, owner="w1")
    fence = held_lease(stores.leases, STEPPER, "w1", clock, settings).fence()
    assert fence is not None
    paused.profiler.fence = paused.audiences.fence = paused.runtime.fence = fence
    append(stores, clock, "a")
    clock.advance(seconds=settings.workers.lease_seconds)
    assert stores.leases.acquire(STEPPER, "w2", clock.now_ms(), 15_000) == fence.epoch + 1
    with pytest.raises(StoreError, match="lease"):
        # Pipelined (ADR 16), the profile batch's apply fails in the background, and the
        # turn after raises it.
        while paused.step_once():
            pass
    assert stores.profiles.processed_seq() == 0
