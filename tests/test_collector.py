"""The cyclic garbage collector is held off while a batch is worked on, and only then."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from safar.model.events import Event
from safar.runtime.collector import batch_work
from safar.runtime.internal import internal_event
from safar.runtime.worker import Worker
from safar.stores.bundle import memory_stores
from safar.testing import FakeClock
from tests.journeys.test_sqlite_runtime import settings_in


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if not was:
            gc.disable()


@batch_work
def observe(seen: list[bool], fail: bool = False) -> str:
    seen.append(gc.isenabled())
    if fail:
        raise ValueError("the batch failed")
    return "done"


def test_the_collector_is_off_during_a_batch_and_on_after() -> None:
    seen: list[bool] = []
    assert observe(seen) == "done"
    assert seen == [False]
    assert gc.isenabled()


def test_the_collector_is_on_again_after_a_batch_that_raised() -> None:
    seen: list[bool] = []
    with pytest.raises(ValueError, match="the batch failed"):
        observe(seen, fail=True)
    assert seen == [False]
    assert gc.isenabled()


def test_a_nested_batch_leaves_the_outermost_in_charge() -> None:
    seen: list[bool] = []

    @batch_work
    def outer() -> None:
        observe(seen)
        seen.append(gc.isenabled())

    outer()
    assert seen == [False, False]  # still off after the inner batch, until the outer ends
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_application_stays_off() -> None:
    seen: list[bool] = []
    gc.disable()
    observe(seen)
    assert seen == [False]
    assert not gc.isenabled()


class WatchedLog:
    """An event log noting whether the collector was on at each read."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.collector_on_at_read: list[bool] = []

    def read(self, after: int, limit: int) -> Sequence[Event]:
        self.collector_on_at_read.append(gc.isenabled())
        return self._inner.read(after, limit)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_a_worker_turn_reads_its_batches_with_the_collector_off(tmp_path: Path) -> None:
    clock = FakeClock()
    stores = memory_stores(clock)
    watched = WatchedLog(stores.events)
    stores.events = watched  # type: ignore[assignment]
    now = clock.now_ms()
    stores.events.append(
        [
            internal_event(
                key=f"page-{n}",
                type="track",
                identifier=("user_id", f"u{n}"),
                timestamp=now,
                received_at=now,
                name="Page Viewed",
            )
            for n in range(5)
        ]
    )
    worker = Worker(stores, settings_in(tmp_path), clock)
    while worker.step_once():
        pass
    assert watched.collector_on_at_read, "the worker read nothing"
    assert not any(watched.collector_on_at_read)
    assert gc.isenabled()
    assert stores.profiles.processed_seq() == 5
