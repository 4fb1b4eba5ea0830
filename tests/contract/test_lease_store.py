"""The :class:`safar.ports.LeaseStore` contract, run against every adapter."""

from __future__ import annotations

import itertools
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.ports import LeaseStore
from tests.contract.conftest import Backend

TTL = 10_000
_names = itertools.count()


def test_a_free_lease_is_taken_and_renewed_by_its_holder(lease_backend: Backend) -> None:
    leases = lease_backend.lease_store()
    assert leases.acquire("stepper", "w1", 1_000, TTL) == 1
    assert leases.acquire("stepper", "w1", 5_000, TTL) == 1  # a renewal keeps the epoch
    assert leases.holders(14_999) == {"stepper": "w1"}  # renewed until 15,000
    assert leases.holders(15_000) == {}


def test_a_held_lease_is_refused_to_others_until_it_expires(lease_backend: Backend) -> None:
    leases = lease_backend.lease_store()
    assert leases.acquire("stepper", "w1", 0, TTL) == 1
    assert leases.acquire("stepper", "w2", TTL - 1, TTL) is None
    assert leases.holders(TTL - 1) == {"stepper": "w1"}
    assert leases.acquire("stepper", "w2", TTL, TTL) == 2  # expired: taken over, new epoch
    assert leases.acquire("stepper", "w1", TTL + 1, TTL) is None
    assert leases.holders(TTL + 1) == {"stepper": "w2"}


def test_released_leases_are_free_at_once_and_the_epoch_still_grows(
    lease_backend: Backend,
) -> None:
    leases = lease_backend.lease_store()
    leases.acquire("stepper", "w1", 0, TTL)
    leases.release("stepper", "w2")  # not the holder: nothing changes
    assert leases.holders(1) == {"stepper": "w1"}
    leases.release("stepper", "w1")
    assert leases.holders(1) == {}
    assert leases.acquire("stepper", "w2", 1, TTL) == 2
    assert leases.acquire("stepper", "w1", 2, TTL) is None


def test_leases_are_independent_by_name(lease_backend: Backend) -> None:
    leases = lease_backend.lease_store()
    assert leases.acquire("a", "w1", 0, TTL) == 1
    assert leases.acquire("b", "w2", 0, TTL) == 1
    assert leases.holders(0) == {"a": "w1", "b": "w2"}


def test_leases_survive_a_restart(lease_backend: Backend) -> None:
    if not lease_backend.shares_storage:
        return
    lease_backend.lease_store().acquire("stepper", "w1", 0, TTL)
    lease_backend.shutdown()
    again = lease_backend.lease_store()
    assert again.holders(1) == {"stepper": "w1"}
    assert again.acquire("stepper", "w2", 1, TTL) is None


def test_processes_racing_for_a_free_lease_get_it_once(lease_backend: Backend) -> None:
    stores = [lease_backend.lease_store() for _ in range(4)]
    start = threading.Barrier(len(stores))
    won: list[str] = []

    def race(store: LeaseStore, owner: str) -> None:
        start.wait()
        if store.acquire("stepper", owner, 0, TTL) is not None:
            won.append(owner)

    threads = [
        threading.Thread(target=race, args=(store, f"w{i}")) for i, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert stores[0].holders(0) == {"stepper": won[0]}


# One backend serves every example (a fresh lease name each), as a long-lived store would.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(
    st.lists(
        st.tuples(st.sampled_from(["w1", "w2", "w3"]), st.integers(0, 3 * TTL), st.booleans()),
        max_size=20,
    )
)
def test_never_two_holders_and_epochs_change_only_with_the_holder(
    lease_backend: Backend, moves: list[tuple[str, int, bool]]
) -> None:
    leases = lease_backend.lease_store()
    name = f"lease-{next(_names)}"
    now = 0
    holder: str | None = None
    until = 0
    epoch = 0
    for owner, step, release in sorted(moves, key=lambda m: m[1]):
        now = max(now, step)
        if release:
            leases.release(name, owner)
            if owner == holder:
                until = 0
            continue
        got = leases.acquire(name, owner, now, TTL)
        if holder is not None and holder != owner and until > now:
            assert got is None
            continue
        assert got is not None
        epoch = epoch if owner == holder else epoch + 1
        assert got == epoch
        holder, until = owner, now + TTL
        assert leases.holders(now).get(name) == owner
