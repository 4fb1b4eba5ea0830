"""Fences (see :class:`safar.ports.LeaseStore`): the stores the stepper writes commit a batch
computed under a lease only while that lease still has the same owner and epoch."""

from __future__ import annotations

from typing import Protocol

import pytest

from safar.errors import StoreError
from safar.model.leases import Fence
from safar.model.profiles import Placement, ProfileUpdate
from safar.ports import AudienceUpdate, JourneyUpdate

from .conftest import Backend, instance

TTL = 10_000


class Writer(Protocol):
    """Batch ``n`` of one store, committed under a fence, and whether the store shows it."""

    def commit(self, backend: Backend, fence: Fence, n: int) -> None: ...

    def shows(self, backend: Backend, n: int) -> bool: ...


class Runs:
    def commit(self, backend: Backend, fence: Fence, n: int) -> None:
        backend.journey_stores().runs.commit(
            JourneyUpdate(instances=[instance(f"i{n}")], fence=fence)
        )

    def shows(self, backend: Backend, n: int) -> bool:
        return bool(backend.journey_stores().runs.instances([f"i{n}"]))


class Audiences:
    def commit(self, backend: Backend, fence: Fence, n: int) -> None:
        update = AudienceUpdate(progress={f"job{n}": "done"}, fence=fence)
        backend.audience_stores().store.commit(update)

    def shows(self, backend: Backend, n: int) -> bool:
        return f"job{n}" in backend.audience_stores().store.progress()


class Profiles:
    def commit(self, backend: Backend, fence: Fence, n: int) -> None:
        store = backend.profile_store()
        after = store.processed_seq()
        placements = {("user_id", f"u{n}"): Placement(f"p{n}", f"c{n}")}
        update = ProfileUpdate(
            after_seq=after, processed_seq=after + 1, placements=placements, fence=fence
        )
        store.apply(update)

    def shows(self, backend: Backend, n: int) -> bool:
        return backend.profile_store().find(("user_id", f"u{n}")) is not None


WRITERS = [
    pytest.param(Runs(), id="runs"),
    pytest.param(Audiences(), id="audiences"),
    pytest.param(Profiles(), id="profiles"),
]


@pytest.fixture
def backend(journey_backend: Backend) -> Backend:
    if not journey_backend.shares_storage:
        pytest.skip("in-memory stores live in one process: no other can take their lease")
    return journey_backend


@pytest.mark.parametrize("writer", WRITERS)
def test_a_batch_under_a_lease_taken_over_is_refused_and_changes_nothing(
    backend: Backend, writer: Writer
) -> None:
    leases = backend.lease_store()
    epoch = leases.acquire("stepper", "w1", 0, TTL)
    assert epoch is not None
    held = Fence(name="stepper", owner="w1", epoch=epoch)
    writer.commit(backend, held, 1)
    assert writer.shows(backend, 1)
    # w1 paused past its lease and w2 took over: w1's next batch must not land.
    assert leases.acquire("stepper", "w2", TTL, TTL) == epoch + 1
    with pytest.raises(StoreError, match="lease"):
        writer.commit(backend, held, 2)
    assert not writer.shows(backend, 2)
    writer.commit(backend, Fence(name="stepper", owner="w2", epoch=epoch + 1), 3)
    assert writer.shows(backend, 3)


@pytest.mark.parametrize("writer", WRITERS)
def test_an_expired_lease_nobody_took_still_fences_for_its_holder(
    backend: Backend, writer: Writer
) -> None:
    epoch = backend.lease_store().acquire("stepper", "w1", 0, TTL)
    assert epoch is not None
    # Past its end, but no one else held it since: w1's work is still the only work.
    writer.commit(backend, Fence(name="stepper", owner="w1", epoch=epoch), 1)
    assert writer.shows(backend, 1)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_fence_naming_a_lease_never_taken_is_refused(backend: Backend, writer: Writer) -> None:
    backend.lease_store()  # the table exists; the lease does not
    with pytest.raises(StoreError, match="lease"):
        writer.commit(backend, Fence(name="stepper", owner="w1", epoch=1), 1)
    assert not writer.shows(backend, 1)
