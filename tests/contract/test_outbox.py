"""The :class:`safar.ports.Outbox` contract, run against every adapter."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.errors import StoreError
from safar.model.messages import Decision, SentRecord
from safar.model.runs import OutboxEntry
from safar.ports import JourneyUpdate, Settlement
from safar.testing import FakeClock

from .conftest import Backend, BackendFactory, JourneyStores, outbox_entry

LEASE_MS = 30_000


def keys(entries: list[OutboxEntry]) -> list[str]:
    return [e.key for e in entries]


def put(stores: JourneyStores, *entries: OutboxEntry) -> None:
    stores.runs.commit(JourneyUpdate(outbox=list(entries)))


def decision(key: str, at: int, profile_id: str = "p1") -> Decision:
    return Decision(
        message_key=key,
        profile_id=profile_id,
        journey_id="welcome",
        step_id="send_1",
        channel="email",
        category="marketing",
        at=at,
        outcome="sent",
    )


def sent(key: str, at: int, profile_id: str = "p1") -> SentRecord:
    return SentRecord(
        message_key=key,
        profile_id=profile_id,
        journey_id="welcome",
        channel="email",
        category="marketing",
        priority=50,
        at=at,
    )


def test_an_empty_outbox(stores: JourneyStores, clock: FakeClock) -> None:
    assert stores.outbox.claim(clock.now_ms(), 10, "d1", LEASE_MS) == []
    assert stores.outbox.pending() == 0
    assert stores.outbox.next_due() is None
    assert stores.outbox.dead(10) == []
    stores.outbox.settle([])
    stores.outbox.settle([Settlement(key="unknown", status="done")])
    assert stores.outbox.pending() == 0


def test_claim_takes_due_entries_earliest_first_up_to_the_limit(
    stores: JourneyStores, clock: FakeClock
) -> None:
    now = clock.now_ms()
    put(
        stores,
        outbox_entry("later", due=now + 1),
        outbox_entry("second", due=now - 10),
        outbox_entry("first", due=now - 20),
        outbox_entry("third", due=now),
    )
    assert stores.outbox.pending() == 4
    assert stores.outbox.next_due() == now - 20
    assert keys(stores.outbox.claim(now, 2, "d1", LEASE_MS)) == ["first", "second"]
    assert keys(stores.outbox.claim(now, 10, "d1", LEASE_MS)) == ["third"]
    assert stores.outbox.claim(now, 10, "d1", LEASE_MS) == []
    assert stores.outbox.claim(now + 1, 0, "d1", LEASE_MS) == []
    # Claimed entries are still pending (not yet delivered), and count for the next due time.
    assert stores.outbox.pending() == 4
    assert stores.outbox.next_due() == now - 20


def test_a_claimed_entry_is_the_committed_one(stores: JourneyStores, clock: FakeClock) -> None:
    entry = outbox_entry("k1", due=clock.now_ms())
    put(stores, entry)
    assert stores.outbox.claim(clock.now_ms(), 1, "d1", LEASE_MS) == [entry]


def test_a_lease_blocks_other_owners_until_it_expires(
    stores: JourneyStores, clock: FakeClock
) -> None:
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now))
    (first,) = stores.outbox.claim(now, 10, "d1", LEASE_MS)
    assert first.key == "k1" and not first.reclaimed
    assert stores.outbox.claim(clock.advance(ms=LEASE_MS - 1), 10, "d2", LEASE_MS) == []
    # d1 crashed before settling: the entry is delivered again (at least once), marked as
    # possibly handed over already.
    again = stores.outbox.claim(clock.advance(ms=1), 10, "d2", LEASE_MS)
    assert keys(again) == ["k1"]
    assert again[0].attempts == 0  # a lapsed lease is not a retry
    assert again[0].reclaimed


def test_retry_counts_an_attempt_and_waits_for_its_due_time(
    stores: JourneyStores, clock: FakeClock
) -> None:
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now))
    stores.outbox.claim(now, 10, "d1", LEASE_MS)
    stores.outbox.settle([Settlement(key="k1", status="retry", due=now + 1000, error="timeout")])
    assert stores.outbox.pending() == 1
    assert stores.outbox.next_due() == now + 1000
    # The retry released the lease; the entry waits for its new due time, not for the lease.
    assert stores.outbox.claim(now + 999, 10, "d1", LEASE_MS) == []
    (entry,) = stores.outbox.claim(now + 1000, 10, "d2", LEASE_MS)
    assert (entry.key, entry.due, entry.attempts, entry.last_error, entry.reclaimed) == (
        "k1",
        now + 1000,
        1,
        "timeout",
        False,  # settled in between: a retry is not a reclaim
    )
    stores.outbox.settle([Settlement(key="k1", status="retry", due=now + 5000, error="503")])
    (entry,) = stores.outbox.claim(now + 5000, 10, "d2", LEASE_MS)
    assert (entry.attempts, entry.last_error) == (2, "503")


def test_an_error_holding_nul_is_stored_with_a_replacement_character(
    stores: JourneyStores, clock: FakeClock
) -> None:
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now), outbox_entry("k2", due=now))
    stores.outbox.claim(now, 10, "d1", LEASE_MS)
    stores.outbox.settle(
        [
            Settlement(key="k1", status="retry", due=now, error="HTTP 500: \x00\x01garbage"),
            Settlement(key="k2", status="dead", error="\x00"),
        ]
    )
    (entry,) = stores.outbox.claim(now, 10, "d1", LEASE_MS)
    assert entry.last_error == "HTTP 500: \ufffd\x01garbage"
    assert [e.last_error for e in stores.outbox.dead(10)] == ["\ufffd"]


def test_done_entries_are_never_claimed_again(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now), outbox_entry("k2", due=now))
    stores.outbox.claim(now, 10, "d1", LEASE_MS)
    stores.outbox.settle([Settlement(key="k1", status="done")])
    assert stores.outbox.pending() == 1
    assert keys(stores.outbox.claim(clock.advance(days=30), 10, "d2", LEASE_MS)) == ["k2"]
    assert stores.outbox.dead(10) == []


def test_dead_letters_are_kept_newest_first(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    put(stores, *(outbox_entry(f"k{n}", due=now + n) for n in range(4)))
    stores.outbox.claim(now + 10, 10, "d1", LEASE_MS)
    stores.outbox.settle([Settlement(key="k2", status="dead", error="bounced")])
    stores.outbox.settle(
        [
            Settlement(key="k0", status="retry", due=now + 20, error="timeout"),
            Settlement(key="k3", status="dead", error="invalid address"),
        ]
    )
    stores.outbox.claim(now + 20, 10, "d1", LEASE_MS)
    stores.outbox.settle([Settlement(key="k0", status="dead")])
    dead = stores.outbox.dead(10)
    assert keys(dead) == ["k0", "k3", "k2"]
    assert [(e.attempts, e.last_error) for e in dead] == [
        (1, "timeout"),
        (0, "invalid address"),
        (0, "bounced"),
    ]
    expected = outbox_entry("k3", due=now + 3)
    expected.last_error = "invalid address"
    assert dead[1] == expected
    assert keys(stores.outbox.dead(2)) == ["k0", "k3"]
    assert stores.outbox.dead(0) == []
    assert keys(stores.outbox.claim(clock.advance(days=30), 10, "d1", LEASE_MS)) == ["k1"]
    assert stores.outbox.pending() == 1


def test_settling_twice_is_harmless(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now), outbox_entry("k2", due=now))
    stores.outbox.claim(now, 10, "d1", LEASE_MS)
    done = Settlement(key="k1", status="done", decision=decision("k1", now), sent=sent("k1", now))
    stores.outbox.settle([done])
    stores.outbox.settle([Settlement(key="k2", status="dead", error="first")])
    # A dispatcher whose lease lapsed settles again, differently: nothing changes.
    stores.outbox.settle(
        [
            done,
            Settlement(key="k1", status="retry", due=now, decision=decision("k1", now + 1)),
            Settlement(key="k2", status="retry", due=now, error="second"),
            Settlement(key="k2", status="done", sent=sent("k2", now)),
        ]
    )
    assert stores.outbox.pending() == 0
    assert stores.outbox.claim(clock.advance(days=1), 10, "d1", LEASE_MS) == []
    assert [(e.key, e.last_error) for e in stores.outbox.dead(10)] == [("k2", "first")]
    assert stores.delivery.decisions("p1", 10) == [decision("k1", now)]
    assert stores.delivery.sends(["p1"], 0) == [sent("k1", now)]


def test_settle_records_decisions_and_sends(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now), outbox_entry("k2", "p2", due=now))
    stores.outbox.claim(now, 10, "d1", LEASE_MS)
    delayed = Decision(
        message_key="k2",
        profile_id="p2",
        journey_id="welcome",
        step_id="send_1",
        channel="sms",
        category="marketing",
        at=now,
        outcome="delayed",
        rule="quiet_hours",
        detail="22:00-08:00 Asia/Tehran",
        until=now + 3_600_000,
    )
    stores.outbox.settle(
        [
            Settlement(key="k1", status="done", decision=decision("k1", now), sent=sent("k1", now)),
            Settlement(key="k2", status="retry", due=now + 3_600_000, decision=delayed),
        ]
    )
    assert stores.delivery.decisions("p1", 10) == [decision("k1", now)]
    assert stores.delivery.decisions("p2", 10) == [delayed]
    assert stores.delivery.sends(["p1", "p2"], now) == [sent("k1", now)]


def test_a_settle_failing_half_way_changes_nothing(
    journey_backend: Backend, clock: FakeClock
) -> None:
    stores = journey_backend.journey_stores()
    now = clock.now_ms()
    put(stores, outbox_entry("k1", due=now), outbox_entry("k2", due=now))
    stores.outbox.claim(now, 10, "d1", LEASE_MS)
    if not journey_backend.fail_settles_sending("k2"):
        pytest.skip("this backend cannot inject storage failures")
    with pytest.raises(StoreError):
        stores.outbox.settle(
            [
                Settlement(key="k1", status="done", decision=decision("k1", now)),
                Settlement(key="k2", status="done", sent=sent("k2", now)),
            ]
        )
    assert stores.outbox.pending() == 2
    assert stores.delivery.decisions("p1", 10) == []
    assert stores.delivery.sends(["p1"], 0) == []
    assert sorted(keys(stores.outbox.claim(now + LEASE_MS, 10, "d2", LEASE_MS))) == ["k1", "k2"]


def test_the_outbox_outlives_the_process(journey_backend: Backend, clock: FakeClock) -> None:
    if not journey_backend.shares_storage:
        pytest.skip("this backend does not outlive its process")
    now = clock.now_ms()
    first = journey_backend.journey_stores()
    put(first, outbox_entry("k1", due=now - 1), outbox_entry("k2", due=now))
    assert keys(first.outbox.claim(now, 1, "d1", LEASE_MS)) == ["k1"]
    journey_backend.shutdown()
    second = journey_backend.journey_stores()
    assert second.outbox.pending() == 2
    assert keys(second.outbox.claim(now + 1, 10, "d2", LEASE_MS)) == ["k2"]
    assert keys(second.outbox.claim(now + LEASE_MS, 10, "d2", LEASE_MS)) == ["k1"]


# -- a property: no settled key is delivered again, no pending key is lost ---------------------

_KEYS = [f"k{n}" for n in range(6)]
Outcome = Literal["done", "retry", "dead"]
_step = st.one_of(
    st.tuples(st.just("commit"), st.lists(st.sampled_from(_KEYS), max_size=4)),
    st.tuples(st.just("claim"), st.tuples(st.sampled_from(["d1", "d2"]), st.integers(1, 4))),
    st.tuples(st.just("settle"), st.lists(st.sampled_from(["done", "retry", "dead"]), max_size=4)),
    st.tuples(st.just("wait"), st.integers(0, 2 * LEASE_MS)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, max_size=16))
def test_claims_and_settlements_never_redeliver_or_lose_an_entry(
    make_journey_backend: BackendFactory, clock: FakeClock, steps: list[tuple[str, object]]
) -> None:
    stores = make_journey_backend().journey_stores()
    status: dict[str, str] = {}  # key -> pending / done / dead, as the model says
    attempts: dict[str, int] = {}
    leased: dict[str, int] = {}  # key -> lease end, for pending keys claimed
    due: dict[str, int] = {}
    claimed: list[str] = []  # claimed and not yet settled by this test
    for kind, arg in steps:
        now = clock.now_ms()
        if kind == "commit":
            assert isinstance(arg, list)
            stores.runs.commit(JourneyUpdate(outbox=[outbox_entry(k, due=now) for k in arg]))
            for key in arg:
                if key not in status:
                    status[key], attempts[key], due[key] = "pending", 0, now
        elif kind == "claim":
            assert isinstance(arg, tuple)
            owner, limit = arg
            got = stores.outbox.claim(now, limit, owner, LEASE_MS)
            free = {
                k
                for k, s in status.items()
                if s == "pending" and due[k] <= now and leased.get(k, now) <= now
            }
            assert {e.key for e in got} <= free, "claimed a settled, leased or future entry"
            assert len(got) == min(limit, len(free)), "left a free due entry behind"
            for entry in got:
                assert entry.attempts == attempts[entry.key]
                assert entry.reclaimed == (entry.key in leased), "reclaimed is wrong"
                leased[entry.key] = now + LEASE_MS
                claimed.append(entry.key)
        elif kind == "settle":
            assert isinstance(arg, list)
            outcomes: list[Outcome] = arg
            settlements = []
            for outcome, key in zip(outcomes, claimed, strict=False):
                settlements.append(Settlement(key=key, status=outcome, due=now + 1))
                if status[key] != "pending":
                    continue
                leased.pop(key, None)
                if outcome == "retry":
                    attempts[key] += 1
                    due[key] = now + 1
                else:
                    status[key] = outcome
            del claimed[: len(settlements)]
            stores.outbox.settle(settlements)
        else:
            assert isinstance(arg, int)
            clock.advance(ms=arg)
        assert stores.outbox.pending() == sum(s == "pending" for s in status.values())
    # Once every lease and due time has passed, every pending entry, and only those, comes back.
    later = clock.advance(ms=LEASE_MS + 1)
    back = stores.outbox.claim(later, len(_KEYS) + 1, "final", LEASE_MS)
    assert sorted(keys(back)) == sorted(k for k, s in status.items() if s == "pending")
    assert {e.key: e.attempts for e in back} == {e.key: attempts[e.key] for e in back}
    assert sorted(keys(stores.outbox.dead(10))) == sorted(
        k for k, s in status.items() if s == "dead"
    )
