"""A batch that fails to commit changes nothing: redone, it counts every event once."""

from __future__ import annotations

from typing import Any

import pytest

from safar.definitions import parse_audience
from safar.errors import StoreError
from safar.testing.journeys import JourneyHarness


def _fail_next_commit(h: JourneyHarness) -> list[int]:
    store = h.stores.audiences
    real = store.commit
    calls: list[int] = []

    def commit(update: Any) -> None:
        if not calls:
            calls.append(1)
            raise StoreError("disk full (test)")
        real(update)

    store.commit = commit  # type: ignore[method-assign]
    return calls


def test_a_failed_commit_is_redone_without_counting_twice() -> None:
    h = JourneyHarness()
    h.publish_audience(parse_audience("{id: orders, compute: {event: Order Completed}}"))
    h.publish_audience(
        parse_audience("{id: buyers, name: B, where: {performed: Order Completed, at_least: 2}}")
    )
    h.track("u1", "Order Completed")
    calls = _fail_next_commit(h)
    with pytest.raises(StoreError):
        h.track("u1", "Order Completed")
    assert calls == [1]
    h.run()
    profile = h.profile("u1")
    assert profile.traits["orders"] == 2
    assert profile.segments == ["buyers"]
    h.track("u1", "Order Completed")
    assert h.profile("u1").traits["orders"] == 3
