"""The :class:`safar.ports.RunStore` contract, run against every adapter."""

from __future__ import annotations

import pytest

from safar.errors import StoreError
from safar.model.runs import Instance
from safar.ports import JourneyUpdate, Settlement
from safar.testing import FakeClock

from .conftest import Backend, JourneyStores, entry_record, instance, outbox_entry, visit

LEASE_MS = 60_000


def ids(instances: list[Instance]) -> list[str]:
    return [i.id for i in instances]


def test_an_empty_store(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    assert runs.processed_seq() == 0
    assert runs.load(["p1"]) == ([], [])
    assert runs.instances(["i1"]) == []
    assert runs.claim_timers(clock.now_ms(), 10, "w1", LEASE_MS) == []
    assert runs.next_wake() is None
    assert runs.history("p1", 10) == ([], [])


# -- commit: the cursor and atomicity ----------------------------------------------------------


def test_commit_moves_the_cursor_from_where_it_was(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=5))
    assert runs.processed_seq() == 5
    runs.commit(JourneyUpdate(after_seq=5, processed_seq=9, instances=[instance("i1")]))
    assert runs.processed_seq() == 9


def test_a_batch_without_after_seq_leaves_the_cursor(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=5))
    runs.commit(JourneyUpdate(instances=[instance("i1")]))
    assert runs.processed_seq() == 5
    assert ids(runs.instances(["i1"])) == ["i1"]


def everything(n: int) -> JourneyUpdate:
    """A batch touching every table, for checks that nothing of it was stored."""
    return JourneyUpdate(
        instances=[instance(f"i{n}", wake_at=0)],
        entries=[entry_record("p1", entries=n)],
        outbox=[outbox_entry(f"k{n}")],
        visits=[visit(f"i{n}", at=n)],
    )


def assert_only_first_batch(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    assert runs.processed_seq() == 3
    active, records = runs.load(["p1"])
    assert ids(active) == ["i1"]
    assert records == [entry_record("p1", entries=1)]
    assert runs.instances(["i2"]) == []
    assert runs.history("p1", 10)[1] == [visit("i1", at=1)]
    assert stores.outbox.pending() == 1
    assert [e.key for e in stores.outbox.claim(clock.now_ms(), 10, "d", LEASE_MS)] == ["k1"]


def test_a_stale_cursor_fails_the_commit_and_changes_nothing(
    stores: JourneyStores, clock: FakeClock
) -> None:
    first = everything(1)
    first.after_seq, first.processed_seq = 0, 3
    stores.runs.commit(first)
    stale = everything(2)
    stale.after_seq, stale.processed_seq = 0, 7  # another runtime moved the cursor to 3
    with pytest.raises(StoreError):
        stores.runs.commit(stale)
    assert_only_first_batch(stores, clock)


def test_a_commit_failing_half_way_changes_nothing(
    journey_backend: Backend, clock: FakeClock
) -> None:
    stores = journey_backend.journey_stores()
    first = everything(1)
    first.after_seq, first.processed_seq = 0, 3
    stores.runs.commit(first)
    if not journey_backend.fail_commits_visiting("i2"):
        pytest.skip("this backend cannot inject storage failures")
    failing = everything(2)
    failing.after_seq, failing.processed_seq = 3, 7
    with pytest.raises(StoreError):
        stores.runs.commit(failing)
    assert_only_first_batch(stores, clock)


# -- commit: upserts and appends ----------------------------------------------------------------


def test_instances_are_upserted_by_id(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(instances=[instance("i1", step="start", context={"n": 1})]))
    changed = instance("i1", step="wait", wake_at=50, context={"n": 2, "نام": "سارا"})
    changed.transitions = 3
    runs.commit(JourneyUpdate(instances=[changed]))
    assert runs.instances(["i1"]) == [changed]
    assert runs.load(["p1"])[0] == [changed]


def test_an_instance_can_move_to_another_profile(stores: JourneyStores) -> None:
    # A merge may hand an instance to the profile it was merged into.
    runs = stores.runs
    runs.commit(JourneyUpdate(instances=[instance("i1", "p1")]))
    runs.commit(JourneyUpdate(instances=[instance("i1", "p2")]))
    assert runs.load(["p1"])[0] == []
    assert ids(runs.load(["p2"])[0]) == ["i1"]
    assert runs.history("p1", 10)[0] == []


def test_entry_records_are_upserted_by_journey_and_profile(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(
        JourneyUpdate(
            entries=[
                entry_record("p1", "welcome"),
                entry_record("p1", "cart"),
                entry_record("p2", "welcome"),
            ]
        )
    )
    again = entry_record("p1", "welcome", entries=2)
    again.last_exited_at = 1500
    runs.commit(JourneyUpdate(entries=[again]))
    _, records = runs.load(["p1"])
    by_journey = {r.journey_id: r for r in records}
    assert by_journey == {"welcome": again, "cart": entry_record("p1", "cart")}


def test_an_outbox_key_already_stored_is_skipped(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    first = outbox_entry("k1", due=now)
    stores.runs.commit(JourneyUpdate(outbox=[first, outbox_entry("k2", due=now)]))
    # Re-committing the batch (and a later one naming the same key) adds no command.
    stores.runs.commit(JourneyUpdate(outbox=[outbox_entry("k1", "p9", due=now - 5)]))
    assert stores.outbox.pending() == 2
    claimed = stores.outbox.claim(now, 10, "d", LEASE_MS)
    assert sorted(e.key for e in claimed) == ["k1", "k2"]
    assert next(e for e in claimed if e.key == "k1") == first


def test_an_outbox_key_already_settled_is_skipped(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    stores.runs.commit(JourneyUpdate(outbox=[outbox_entry("done"), outbox_entry("dead")]))
    stores.outbox.claim(now, 10, "d", LEASE_MS)
    stores.outbox.settle(
        [Settlement(key="done", status="done"), Settlement(key="dead", status="dead")]
    )
    stores.runs.commit(JourneyUpdate(outbox=[outbox_entry("done"), outbox_entry("dead")]))
    assert stores.outbox.pending() == 0
    assert stores.outbox.claim(clock.advance(days=1), 10, "d", LEASE_MS) == []
    assert [e.key for e in stores.outbox.dead(10)] == ["dead"]


def test_visits_are_appended(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(instances=[instance("i1")], visits=[visit("i1", 1, "a")]))
    runs.commit(JourneyUpdate(visits=[visit("i1", 2, "b"), visit("i1", 2, "b")]))
    assert runs.history("p1", 10)[1] == [
        visit("i1", 1, "a"),
        visit("i1", 2, "b"),
        visit("i1", 2, "b"),
    ]


# -- reads ----------------------------------------------------------------------------------------


def test_load_returns_active_instances_and_entry_records_of_the_profiles(
    stores: JourneyStores,
) -> None:
    runs = stores.runs
    runs.commit(
        JourneyUpdate(
            instances=[
                instance("a1", "p1"),
                instance("a2", "p1", journey_id="cart"),
                instance("x1", "p1", status="exited"),
                instance("c1", "p2", status="converted"),
                instance("o1", "p3"),
            ],
            entries=[entry_record("p1"), entry_record("p2"), entry_record("p3")],
        )
    )
    active, records = runs.load(["p1", "p2", "unknown"])
    assert sorted(ids(active)) == ["a1", "a2"]
    assert sorted(r.profile_id for r in records) == ["p1", "p2"]
    assert runs.load([]) == ([], [])


def test_load_reads_many_profiles(stores: JourneyStores) -> None:
    profiles = [f"p{n}" for n in range(1_234)]
    stores.runs.commit(
        JourneyUpdate(
            instances=[instance(f"i-{p}", p) for p in profiles],
            entries=[entry_record(p) for p in profiles],
        )
    )
    active, records = stores.runs.load(profiles[1:])
    assert len(active) == len(records) == 1_233
    assert {i.profile_id for i in active} == set(profiles[1:])


def test_instances_finds_any_status_and_leaves_unknown_ids_out(stores: JourneyStores) -> None:
    runs = stores.runs
    ended = instance("i2", status="converted")
    ended.ended_at, ended.exit_reason = 9, "goal"
    runs.commit(JourneyUpdate(instances=[instance("i1"), ended]))
    found = runs.instances(["i2", "i1", "nope"])
    assert sorted(found, key=lambda i: i.id) == [instance("i1"), ended]
    assert runs.instances([]) == []


def test_history_lists_newest_entries_first_with_their_visits(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(
        JourneyUpdate(
            instances=[
                instance("old", entered_at=100, status="exited"),
                instance("new", entered_at=300),
                instance("mid", entered_at=200, journey_id="cart"),
                instance("theirs", "p2", entered_at=400),
            ],
            visits=[
                visit("new", 300, "start"),
                visit("old", 100, "start"),
                visit("theirs", 400),
                visit("mid", 200, "start"),
                visit("old", 150, "exit", "exited:done"),
            ],
        )
    )
    runs.commit(JourneyUpdate(visits=[visit("new", 350, "wait", "waiting")]))
    listed, visits = runs.history("p1", 10)
    assert ids(listed) == ["new", "mid", "old"]
    assert visits == [
        visit("old", 100, "start"),
        visit("old", 150, "exit", "exited:done"),
        visit("mid", 200, "start"),
        visit("new", 300, "start"),
        visit("new", 350, "wait", "waiting"),
    ]
    listed, visits = runs.history("p1", 2)
    assert ids(listed) == ["new", "mid"]
    assert {v.instance_id for v in visits} == {"new", "mid"}
    assert runs.history("p1", 0) == ([], [])


def test_stored_instances_are_copies(stores: JourneyStores) -> None:
    runs = stores.runs
    mine = instance("i1", context={"n": 1})
    runs.commit(JourneyUpdate(instances=[mine]))
    mine.context["n"] = 2
    got = runs.instances(["i1"])[0]
    got.context["n"] = 3
    assert runs.instances(["i1"])[0].context == {"n": 1}


# -- timers ---------------------------------------------------------------------------------------


def test_claim_timers_takes_due_ones_earliest_first_up_to_the_limit(
    stores: JourneyStores, clock: FakeClock
) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(
        JourneyUpdate(
            instances=[
                instance("late", wake_at=now + 1),
                instance("second", wake_at=now - 10),
                instance("first", wake_at=now - 20),
                instance("third", wake_at=now),
                instance("never", wake_at=None),
            ]
        )
    )
    assert runs.next_wake() == now - 20
    assert ids(runs.claim_timers(now, 2, "w1", LEASE_MS)) == ["first", "second"]
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS)) == ["third"]
    assert runs.claim_timers(now, 10, "w1", LEASE_MS) == []
    # Leased timers still count for the earliest wake-up.
    assert runs.next_wake() == now - 20
    assert ids(runs.claim_timers(now + 1, 10, "w1", LEASE_MS)) == ["late"]
    assert runs.claim_timers(now, 0, "w1", LEASE_MS) == []


def test_a_claimed_timer_is_the_stored_instance(stores: JourneyStores, clock: FakeClock) -> None:
    now = clock.now_ms()
    waiting = instance("i1", wake_at=now, step="pause", context={"cart": {"total": 12.5}})
    stores.runs.commit(JourneyUpdate(instances=[waiting]))
    assert stores.runs.claim_timers(now, 1, "w1", LEASE_MS) == [waiting]


def test_a_lease_blocks_other_owners_until_it_expires(
    stores: JourneyStores, clock: FakeClock
) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(instances=[instance("i1", wake_at=now)]))
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS)) == ["i1"]
    assert runs.claim_timers(clock.advance(ms=LEASE_MS - 1), 10, "w2", LEASE_MS) == []
    # w1 died: once its lease is over another worker takes the timer.
    assert ids(runs.claim_timers(clock.advance(ms=1), 10, "w2", LEASE_MS)) == ["i1"]
    assert runs.claim_timers(clock.now_ms(), 10, "w1", LEASE_MS) == []


def test_committing_an_instance_releases_its_lease(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(instances=[instance("i1", wake_at=now), instance("i2", wake_at=now)]))
    claimed = runs.claim_timers(now, 10, "w1", LEASE_MS)
    assert sorted(ids(claimed)) == ["i1", "i2"]
    # The runtime stepped i1 to a later wait: due again at once when that time comes.
    runs.commit(JourneyUpdate(instances=[instance("i1", wake_at=now + 10)]))
    assert ids(runs.claim_timers(now + 10, 10, "w2", LEASE_MS)) == ["i1"]
    assert runs.next_wake() == now


def test_ended_instances_are_never_claimed(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(instances=[instance("i1", wake_at=now)]))
    runs.commit(
        JourneyUpdate(
            instances=[
                instance("i1", wake_at=now, status="exited"),
                instance("i2", wake_at=now, status="converted"),
            ]
        )
    )
    assert runs.claim_timers(clock.advance(days=365), 10, "w1", LEASE_MS) == []
    assert runs.next_wake() is None


def test_timers_and_leases_outlive_the_process(journey_backend: Backend, clock: FakeClock) -> None:
    if not journey_backend.shares_storage:
        pytest.skip("this backend does not outlive its process")
    now = clock.now_ms()
    first = journey_backend.journey_stores()
    first.runs.commit(
        JourneyUpdate(
            after_seq=0,
            processed_seq=4,
            instances=[instance("i1", wake_at=now), instance("i2", wake_at=now + 5)],
        )
    )
    assert ids(first.runs.claim_timers(now, 1, "w1", LEASE_MS)) == ["i1"]
    # Another process on the same storage sees the cursor, the timers and the lease.
    second = journey_backend.journey_stores()
    assert second.runs.processed_seq() == 4
    assert ids(second.runs.claim_timers(now + 5, 10, "w2", LEASE_MS)) == ["i2"]
    journey_backend.shutdown()
    third = journey_backend.journey_stores()
    assert ids(third.runs.claim_timers(now + LEASE_MS, 10, "w3", LEASE_MS)) == ["i1"]


def test_schedule_ticks_are_upserted_per_journey(stores: JourneyStores) -> None:
    runs = stores.runs
    assert runs.schedule_ticks() == {}
    runs.commit(JourneyUpdate(schedule_ticks={"a": 100, "b": 5}))
    runs.commit(JourneyUpdate(schedule_ticks={"a": 200}))
    assert runs.schedule_ticks() == {"a": 200, "b": 5}


# -- work-feed partitions (ADR 12) -------------------------------------------------------------


def test_each_partition_has_a_cursor_of_its_own(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=10, partition=1))
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=4, partition=2))
    assert (runs.processed_seq(1), runs.processed_seq(2), runs.processed_seq(3)) == (10, 4, 0)
    assert runs.processed_seq() == 0
    runs.commit(JourneyUpdate(after_seq=10, processed_seq=12, partition=1))
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=3))
    assert (runs.processed_seq(1), runs.processed_seq(2), runs.processed_seq()) == (12, 4, 3)


def test_a_stale_partition_cursor_fails_the_commit_and_changes_nothing(
    stores: JourneyStores,
) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=10, partition=1))
    stale = JourneyUpdate(after_seq=0, processed_seq=20, partition=1, instances=[instance("i1")])
    with pytest.raises(StoreError):
        runs.commit(stale)
    assert runs.processed_seq(1) == 10
    assert runs.instances(["i1"]) == []


def test_timers_are_claimed_per_partition(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(instances=[instance("zero", wake_at=now - 3)]))
    runs.commit(JourneyUpdate(partition=1, instances=[instance("one", "p2", wake_at=now - 2)]))
    runs.commit(JourneyUpdate(partition=2, instances=[instance("two", "p3", wake_at=now - 1)]))
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=2)) == ["two"]
    assert runs.claim_timers(now, 10, "w1", LEASE_MS, partition=3) == []
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=0)) == ["zero"]
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS)) == ["one"]


def test_an_instance_is_filed_under_the_partition_that_stored_it_last(
    stores: JourneyStores, clock: FakeClock
) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(partition=1, instances=[instance("i1", wake_at=now)]))
    runs.commit(JourneyUpdate(partition=2, instances=[instance("i1", wake_at=now)]))
    assert runs.claim_timers(now, 10, "w1", LEASE_MS, partition=1) == []
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=2)) == ["i1"]


def test_a_handover_moves_the_profiles_instances_filed_under_its_partition(
    stores: JourneyStores, clock: FakeClock
) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(
        JourneyUpdate(
            partition=1,
            instances=[
                instance("a", "gone", wake_at=now),
                instance("b", "gone", wake_at=now, journey_id="other"),
                instance("c", "stays", wake_at=now),
            ],
        )
    )
    runs.commit(JourneyUpdate(partition=3, instances=[instance("d", "gone", wake_at=now)]))
    runs.commit(
        JourneyUpdate(
            after_seq=0,
            processed_seq=8,
            partition=1,
            instances=[instance("e", "gone", wake_at=now, journey_id="third")],
            moves={"gone": 2},
        )
    )
    assert runs.processed_seq(1) == 8
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=1)) == ["c"]
    assert sorted(ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=2))) == ["a", "b", "e"]
    # Only what the handing partition held moves.
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=3)) == ["d"]


def test_partitions_outlive_the_process(journey_backend: Backend, clock: FakeClock) -> None:
    if not journey_backend.shares_storage:
        pytest.skip("this backend does not outlive its process")
    now = clock.now_ms()
    first = journey_backend.journey_stores()
    first.runs.commit(
        JourneyUpdate(
            after_seq=0, processed_seq=6, partition=5, instances=[instance("i1", wake_at=now)]
        )
    )
    journey_backend.shutdown()
    again = journey_backend.journey_stores()
    assert again.runs.processed_seq(5) == 6
    assert ids(again.runs.claim_timers(now, 10, "w1", LEASE_MS, partition=5)) == ["i1"]


def test_load_by_partition_finds_only_the_instances_filed_under_it(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(
        JourneyUpdate(
            partition=1,
            instances=[instance("a", "p1")],
            entries=[entry_record("p1", entries=1)],
        )
    )
    runs.commit(JourneyUpdate(partition=2, instances=[instance("b", "p1", journey_id="other")]))
    active, records = runs.load(["p1"], 1)
    assert ids(active) == ["a"]
    assert records == [entry_record("p1", entries=1)]  # entry records are not partitioned
    assert ids(runs.load(["p1"], 2)[0]) == ["b"]
    assert sorted(ids(runs.load(["p1"])[0])) == ["a", "b"]


def test_partition_zero_has_a_cursor_apart_from_the_one_without_a_partition(
    stores: JourneyStores,
) -> None:
    runs = stores.runs
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=5))
    assert runs.processed_seq(0) == 0
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=2, partition=0))
    assert (runs.processed_seq(), runs.processed_seq(0)) == (5, 2)


def test_a_stale_handover_moves_nothing(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(
        JourneyUpdate(
            after_seq=0,
            processed_seq=4,
            partition=1,
            instances=[instance("a", "gone", wake_at=now)],
        )
    )
    with pytest.raises(StoreError):
        runs.commit(JourneyUpdate(after_seq=0, processed_seq=9, partition=1, moves={"gone": 2}))
    assert runs.claim_timers(now, 10, "w1", LEASE_MS, partition=2) == []
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=1)) == ["a"]


def test_load_filed_is_load_for_each_partition_at_once(stores: JourneyStores) -> None:
    runs = stores.runs
    runs.commit(
        JourneyUpdate(
            partition=1,
            instances=[instance("a", "p1"), instance("c", "p2")],
            entries=[entry_record("p1", entries=1), entry_record("p2", entries=2)],
        )
    )
    runs.commit(JourneyUpdate(partition=2, instances=[instance("b", "p1", journey_id="other")]))
    wanted = {1: ["p1"], 2: ["p1", "p2"], 3: ["p9"], 4: []}
    found = runs.load_filed(wanted)
    assert sorted(found) == [1, 2, 3, 4]
    for partition, profile_ids in wanted.items():
        active, records = found[partition]
        expected_active, expected_records = runs.load(profile_ids, partition)
        assert sorted(ids(active)) == sorted(ids(expected_active))
        key = lambda r: (r.profile_id, r.journey_id)  # noqa: E731
        assert sorted(records, key=key) == sorted(expected_records, key=key)
    assert ids(found[1][0]) == ["a"]  # c is p2's, not asked for in partition 1
    assert ids(found[2][0]) == ["b"]
    assert runs.load_filed({}) == {}


def test_due_partitions_names_those_with_a_claimable_timer(
    stores: JourneyStores, clock: FakeClock
) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(instances=[instance("zero", wake_at=now - 3)]))
    runs.commit(JourneyUpdate(partition=1, instances=[instance("one", "p2", wake_at=now)]))
    runs.commit(JourneyUpdate(partition=2, instances=[instance("two", "p3", wake_at=now + 1)]))
    runs.commit(JourneyUpdate(partition=3, instances=[instance("three", "p4", wake_at=now - 1)]))
    assert runs.due_partitions(now, [0, 1, 2, 3, 4]) == {0, 1, 3}
    assert runs.due_partitions(now, [2, 4]) == set()
    assert runs.due_partitions(now, []) == set()
    # Leased timers are not claimable until the lease is over.
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=3)) == ["three"]
    assert runs.due_partitions(now, [0, 1, 3]) == {0, 1}
    assert runs.due_partitions(now + LEASE_MS, [3]) == {3}
    assert runs.due_partitions(now + 1, [2]) == {2}


def test_commit_all_stores_every_update_in_order(stores: JourneyStores, clock: FakeClock) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=3, partition=2))
    runs.commit_all(
        [
            JourneyUpdate(
                after_seq=0, processed_seq=5, partition=1, instances=[instance("a", wake_at=now)]
            ),
            JourneyUpdate(
                after_seq=3,
                processed_seq=7,
                partition=2,
                instances=[instance("b", "p2", wake_at=now)],
                outbox=[outbox_entry("k1")],
            ),
            # A later update may build on an earlier one's cursor.
            JourneyUpdate(after_seq=5, processed_seq=6, partition=1),
        ]
    )
    assert (runs.processed_seq(1), runs.processed_seq(2)) == (6, 7)
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=1)) == ["a"]
    assert ids(runs.claim_timers(now, 10, "w1", LEASE_MS, partition=2)) == ["b"]
    assert [e.key for e in stores.outbox.claim(now, 10, "d", LEASE_MS)] == ["k1"]


def test_commit_all_stores_nothing_when_one_update_is_stale(
    stores: JourneyStores, clock: FakeClock
) -> None:
    runs = stores.runs
    now = clock.now_ms()
    runs.commit(JourneyUpdate(after_seq=0, processed_seq=3, partition=2))
    with pytest.raises(StoreError):
        runs.commit_all(
            [
                JourneyUpdate(
                    after_seq=0,
                    processed_seq=5,
                    partition=1,
                    instances=[instance("a", wake_at=now)],
                    outbox=[outbox_entry("k1")],
                ),
                JourneyUpdate(after_seq=0, processed_seq=9, partition=2),  # stale: it is at 3
            ]
        )
    assert (runs.processed_seq(1), runs.processed_seq(2)) == (0, 3)
    assert runs.instances(["a"]) == []
    assert stores.outbox.claim(now, 10, "d", LEASE_MS) == []
