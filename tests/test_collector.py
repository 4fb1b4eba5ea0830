"""The cyclic garbage collector is held off while a batch is worked on, and only then."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from safar.runtime.collector import batch_work
from safar.runtime.internal import internal_event
from safar.runtime.worker import Worker
from safar.stores.bundle import Stores, memory_stores
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


class Watched:
    """A store noting whether the collector was on at each call of one of its methods."""

    def __init__(self, inner: object, method: str) -> None:
        self._inner = inner
        self._method = method
        self.collector_on: list[bool] = []

    def __getattr__(self, name: str) -> object:
        found = getattr(self._inner, name)
        if name != self._method:
            return found

        def watched(*args: object, **kwargs: object) -> object:
            self.collector_on.append(gc.isenabled())
            return found(*args, **kwargs)

        return watched


def watched_worker(tmp_path: Path) -> tuple[Worker, Stores, Watched, Watched]:
    """A worker over memory stores whose log holds five page views; the log watched at each
    ``read``, the profile store at each ``processed_seq`` (which every processor asks)."""
    clock = FakeClock()
    stores = memory_stores(clock)
    log = Watched(stores.events, "read")
    profiles = Watched(stores.profiles, "processed_seq")
    stores.events = log  # type: ignore[assignment]
    stores.profiles = profiles  # type: ignore[assignment]
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
    return Worker(stores, settings_in(tmp_path), clock), stores, log, profiles


def test_a_worker_turn_reads_its_batches_with_the_collector_off(tmp_path: Path) -> None:
    worker, stores, log, _ = watched_worker(tmp_path)
    while worker.step_once():
        pass
    assert log.collector_on, "the worker read nothing"
    assert not any(log.collector_on)
    assert gc.isenabled()
    assert stores.profiles.processed_seq() == 5


def test_each_processor_called_alone_works_with_the_collector_off(tmp_path: Path) -> None:
    """As the benchmarks and tests call them, outside a worker turn."""
    worker, _, _, profiles = watched_worker(tmp_path)
    for name, call in [
        ("profiles", worker.profiler.run_once),
        ("audiences", worker.audiences.run_events),
        ("journeys", worker.runtime.run_events),
    ]:
        profiles.collector_on.clear()
        assert call() == 5, name
        assert profiles.collector_on, f"{name} asked nothing"
        assert not any(profiles.collector_on), name
        assert gc.isenabled(), name
