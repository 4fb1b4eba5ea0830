"""The :class:`safar.ports.AudienceStore` contract, run against every adapter."""

from __future__ import annotations

import threading

import msgspec
import pytest

from safar.errors import StaleBatch, StoreError
from safar.model.audiences import SEGMENT_ENTERED, Fold, Membership
from safar.model.events import Event
from safar.ports import AudienceStore, AudienceUpdate
from safar.testing import FakeClock

from .conftest import AudienceStores, Backend

LEASE_MS = 60_000


def membership(
    profile_id: str, *segments: str, wake_at: int | None = None, evaluated_at: int = 0
) -> Membership:
    return Membership(
        profile_id=profile_id,
        identifier=("user_id", f"u-{profile_id}"),
        segments={s: 1000 + n for n, s in enumerate(segments)},
        wake_at=wake_at,
        evaluated_at=evaluated_at,
    )


def emitted(message_id: str, profile_id: str = "p1", segment: str = "buyers") -> Event:
    body = {"event": SEGMENT_ENTERED, "properties": {"segment": segment, "نام": "سارا"}}
    return Event(
        source_id="safar",
        message_id=message_id,
        type="track",
        name=SEGMENT_ENTERED,
        user_id=f"u-{profile_id}",
        timestamp=1_000,
        received_at=1_001,
        body=msgspec.json.encode(body),
    )


def windowed() -> Fold:
    """A fold of every shape of value a customer's events can bring."""
    return Fold(
        entries=[(1_000, 7, 12.5), (2_000, 9, "pro"), (3_000, 11, None), (4_000, 12, 2**70)],
        n=4,
        total=12.5,
        low=0.1,
        high="z",
        first=(1_000, 7, {"sku": "A-1", "tags": ["x"]}),
        last=(4_000, 12, [1, 2.5, "سه"]),
        counts={'"pro"': 2, "12.5": 1, "null": 1},
    )


def profile_ids(found: list[Membership]) -> list[str]:
    return [m.profile_id for m in found]


def test_an_empty_store(audiences: AudienceStores, clock: FakeClock) -> None:
    store = audiences.store
    assert store.processed_seq() == 0
    assert (store.processed_seq(0), store.processed_seq(7)) == (0, 0)
    assert store.folds([("user_id", "u1")]) == {}
    assert store.memberships(["p1"]) == {}
    assert store.claim_due(clock.now_ms(), 10, "w1", LEASE_MS) == []
    assert store.claim_due(clock.now_ms(), 10, "w1", LEASE_MS, partition=1) == []
    assert store.due_partitions(clock.now_ms(), [0, 1]) == set()
    assert store.next_wake() is None
    assert store.pending_emits(10) == []
    assert store.members("buyers", "", 10) == []
    assert store.count("buyers") == 0
    assert store.progress() == {}


# -- commit: the cursor and atomicity -------------------------------------------------------------


def test_commit_moves_the_cursor_from_where_it_was(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(after_seq=0, processed_seq=5))
    assert store.processed_seq() == 5
    store.commit(AudienceUpdate(after_seq=5, processed_seq=9, memberships=[membership("p1")]))
    assert store.processed_seq() == 9


def test_a_batch_without_a_new_cursor_leaves_it(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(after_seq=0, processed_seq=5))
    store.commit(AudienceUpdate(memberships=[membership("p1")]))
    store.commit(AudienceUpdate(after_seq=5, memberships=[membership("p2")]))
    assert store.processed_seq() == 5
    assert sorted(store.memberships(["p1", "p2"])) == ["p1", "p2"]


def everything(n: int) -> AudienceUpdate:
    """A batch touching every table, for checks that nothing of it was stored."""
    return AudienceUpdate(
        folds={("user_id", "u1"): {"ag_a": Fold(n=n)}, ("email", f"e{n}"): {"ag_b": Fold(n=n)}},
        history={("user_id", "u1"): {"ag_a/h": Fold(n=n)}, ("phone", f"t{n}"): {"ag_c": Fold()}},
        memberships=[membership("p1", f"s{n}", wake_at=0, evaluated_at=n)],
        emits=[emitted(f"m{n}")],
        progress={"backfill": f"at {n}"},
    )


def assert_only_first_batch(store: AudienceStore, partition: int | None = None) -> None:
    assert store.processed_seq(partition) == 3
    assert store.folds(
        [("user_id", "u1"), ("email", "e1"), ("email", "e2"), ("phone", "t1"), ("phone", "t2")]
    ) == {
        ("user_id", "u1"): {"ag_a": Fold(n=1), "ag_a/h": Fold(n=1)},
        ("email", "e1"): {"ag_b": Fold(n=1)},
        ("phone", "t1"): {"ag_c": Fold()},
    }
    assert store.memberships(["p1"]) == {"p1": membership("p1", "s1", wake_at=0, evaluated_at=1)}
    assert (store.count("s1"), store.count("s2")) == (1, 0)
    assert [e.message_id for e in store.pending_emits(10)] == ["m1"]
    assert store.progress() == {"backfill": "at 1"}


def test_a_stale_cursor_fails_the_commit_and_changes_nothing(audiences: AudienceStores) -> None:
    first = everything(1)
    first.after_seq, first.processed_seq = 0, 3
    audiences.store.commit(first)
    stale = everything(2)
    stale.after_seq, stale.processed_seq = 0, 7  # another processor moved the cursor to 3
    stale.deleted = ["p1"]
    with pytest.raises(StoreError):
        audiences.store.commit(stale)
    assert_only_first_batch(audiences.store)


def test_a_commit_failing_half_way_changes_nothing(audience_backend: Backend) -> None:
    store = audience_backend.audience_stores().store
    first = everything(1)
    first.after_seq, first.processed_seq = 0, 3
    store.commit(first)
    if not audience_backend.fail_commits_emitting("m2"):
        pytest.skip("this backend cannot inject storage failures")
    failing = everything(2)
    failing.after_seq, failing.processed_seq = 3, 7
    with pytest.raises(StoreError):
        store.commit(failing)
    assert_only_first_batch(store)


# -- folds ----------------------------------------------------------------------------------------


def test_folds_come_back_equal_and_are_replaced_whole(audiences: AudienceStores) -> None:
    store = audiences.store
    email = ("email", "sara@example.com")
    store.commit(AudienceUpdate(folds={email: {"ag_a": windowed(), "ag_b": Fold(n=1)}}))
    assert store.folds([email]) == {email: {"ag_a": windowed(), "ag_b": Fold(n=1)}}
    store.commit(AudienceUpdate(folds={email: {"ag_c": Fold(n=2, total=3.25)}}))
    assert store.folds([email, email]) == {email: {"ag_c": Fold(n=2, total=3.25)}}


def test_an_empty_mapping_deletes_the_folds(audiences: AudienceStores) -> None:
    store = audiences.store
    one, two = ("user_id", "u1"), ("user_id", "u2")
    store.commit(AudienceUpdate(folds={one: {"ag_a": Fold(n=1)}, two: {"ag_a": Fold(n=2)}}))
    store.commit(AudienceUpdate(folds={one: {}, ("user_id", "never"): {}}))
    assert store.folds([one, two]) == {two: {"ag_a": Fold(n=2)}}


def test_folds_are_found_by_identifier_type_and_value(audiences: AudienceStores) -> None:
    store = audiences.store
    stored = {
        (kind, f"v{n}"): {"ag_a": Fold(n=n)} for kind in ("email", "user_id") for n in range(700)
    }
    store.commit(AudienceUpdate(folds=stored))
    wanted = [("email", f"v{n}") for n in range(0, 700, 2)] + [("user_id", "v3"), ("phone", "v3")]
    found = store.folds(wanted)
    assert found == {key: stored[key] for key in wanted if key in stored}
    assert store.folds([]) == {}


def test_stored_folds_are_copies(audiences: AudienceStores) -> None:
    store = audiences.store
    key = ("user_id", "u1")
    mine = {"ag_a": windowed()}
    store.commit(AudienceUpdate(folds={key: mine}))
    mine["ag_a"].entries.clear()
    got = store.folds([key])[key]
    got["ag_a"].counts["x"] = 1
    del got["ag_a"]
    assert store.folds([key]) == {key: {"ag_a": windowed()}}


# -- memberships ----------------------------------------------------------------------------------


def test_memberships_are_upserted_by_profile(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(memberships=[membership("p1", "a", "b"), membership("p2", "a")]))
    changed = membership("p1", "b", "c", wake_at=50, evaluated_at=9)
    changed.identifier = ("email", "sara@example.com")
    store.commit(AudienceUpdate(memberships=[changed]))
    assert store.memberships(["p1", "p2", "unknown"]) == {
        "p1": changed,
        "p2": membership("p2", "a"),
    }
    assert store.memberships([]) == {}
    # Segments left are left in the listings too; segments kept and entered are there.
    assert profile_ids(store.members("a", "", 10)) == ["p2"]
    assert profile_ids(store.members("b", "", 10)) == ["p1"]
    assert store.members("c", "", 10) == [changed]
    assert [store.count(s) for s in ("a", "b", "c", "d")] == [1, 1, 1, 0]


def test_a_membership_can_leave_every_segment(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(memberships=[membership("p1", "a")]))
    store.commit(AudienceUpdate(memberships=[membership("p1")]))
    assert store.memberships(["p1"]) == {"p1": membership("p1")}
    assert store.count("a") == 0
    assert store.members("a", "", 10) == []


def test_deleted_profiles_are_gone(audiences: AudienceStores, clock: FakeClock) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(
        AudienceUpdate(memberships=[membership("p1", "a", wake_at=now), membership("p2", "a", "b")])
    )
    # p1 was merged into p2.
    store.commit(AudienceUpdate(memberships=[membership("p2", "a", "b", "c")], deleted=["p1"]))
    assert store.memberships(["p1", "p2"]) == {"p2": membership("p2", "a", "b", "c")}
    assert profile_ids(store.members("a", "", 10)) == ["p2"]
    assert [store.count(s) for s in ("a", "b", "c")] == [1, 1, 1]
    assert store.claim_due(now, 10, "w1", LEASE_MS) == []
    assert store.next_wake() is None
    store.commit(AudienceUpdate(deleted=["p2", "never"]))
    assert store.memberships(["p2"]) == {}
    assert [store.count(s) for s in ("a", "b", "c")] == [0, 0, 0]


def test_memberships_of_many_profiles(audiences: AudienceStores) -> None:
    profiles = [f"p{n:04}" for n in range(1_234)]
    audiences.store.commit(
        AudienceUpdate(memberships=[membership(p, "all", wake_at=1) for p in profiles])
    )
    found = audiences.store.memberships(profiles[1:])
    assert sorted(found) == profiles[1:]
    assert found["p0042"] == membership("p0042", "all", wake_at=1)
    assert audiences.store.count("all") == 1_234


def test_stored_memberships_are_copies(audiences: AudienceStores) -> None:
    store = audiences.store
    mine = membership("p1", "a")
    store.commit(AudienceUpdate(memberships=[mine]))
    mine.segments["b"] = 1
    got = store.memberships(["p1"])["p1"]
    got.segments.clear()
    store.members("a", "", 1)[0].segments["c"] = 2
    assert store.memberships(["p1"]) == {"p1": membership("p1", "a")}


# -- members and count ----------------------------------------------------------------------------


def test_members_pages_by_profile_id(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(
        AudienceUpdate(
            memberships=[
                membership("p3", "a"),
                membership("p1", "a", "b"),
                membership("p5", "b"),
                membership("p2", "a"),
                membership("p4", "a"),
            ]
        )
    )
    assert store.members("a", "", 2) == [membership("p1", "a", "b"), membership("p2", "a")]
    assert profile_ids(store.members("a", "p2", 2)) == ["p3", "p4"]
    assert store.members("a", "p4", 2) == []
    assert profile_ids(store.members("a", "p1x", 10)) == ["p2", "p3", "p4"]
    assert store.members("a", "", 0) == []
    assert (store.count("a"), store.count("b")) == (4, 2)


# -- timers ---------------------------------------------------------------------------------------


def test_claim_due_takes_due_ones_earliest_first_up_to_the_limit(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(
        AudienceUpdate(
            memberships=[
                membership("late", wake_at=now + 1),
                membership("second", wake_at=now - 10),
                membership("first", wake_at=now - 20),
                membership("third", wake_at=now),
                membership("never", wake_at=None),
            ]
        )
    )
    assert store.next_wake() == now - 20
    assert profile_ids(store.claim_due(now, 2, "w1", LEASE_MS)) == ["first", "second"]
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS)) == ["third"]
    assert store.claim_due(now, 10, "w1", LEASE_MS) == []
    # Leased timers still count for the earliest wake-up.
    assert store.next_wake() == now - 20
    assert profile_ids(store.claim_due(now + 1, 10, "w1", LEASE_MS)) == ["late"]
    assert store.claim_due(now, 0, "w1", LEASE_MS) == []
    assert profile_ids(store.claim_due(now + LEASE_MS + 1, 10, "w2", LEASE_MS)) == [
        "first",
        "second",
        "third",
        "late",
    ]


def test_a_claimed_timer_is_the_stored_membership(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    now = clock.now_ms()
    waiting = membership("p1", "a", "b", wake_at=now, evaluated_at=now - 5)
    audiences.store.commit(AudienceUpdate(memberships=[waiting]))
    assert audiences.store.claim_due(now, 1, "w1", LEASE_MS) == [waiting]


def test_a_lease_blocks_other_owners_until_it_expires(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(AudienceUpdate(memberships=[membership("p1", wake_at=now)]))
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS)) == ["p1"]
    assert store.claim_due(clock.advance(ms=LEASE_MS - 1), 10, "w2", LEASE_MS) == []
    # w1 died: once its lease is over another worker takes the timer.
    assert profile_ids(store.claim_due(clock.advance(ms=1), 10, "w2", LEASE_MS)) == ["p1"]
    assert store.claim_due(clock.now_ms(), 10, "w1", LEASE_MS) == []


def test_committing_a_membership_releases_its_lease(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(
        AudienceUpdate(memberships=[membership("p1", wake_at=now), membership("p2", wake_at=now)])
    )
    assert sorted(profile_ids(store.claim_due(now, 10, "w1", LEASE_MS))) == ["p1", "p2"]
    # p1 was evaluated again, with a window closing later: due at once when that time comes.
    store.commit(AudienceUpdate(memberships=[membership("p1", wake_at=now + 10)]))
    assert profile_ids(store.claim_due(now + 10, 10, "w2", LEASE_MS)) == ["p1"]
    assert store.next_wake() == now


def test_a_membership_without_wake_at_is_never_claimed(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(AudienceUpdate(memberships=[membership("p1", "a", wake_at=now)]))
    store.commit(AudienceUpdate(memberships=[membership("p1", "a"), membership("p2")]))
    assert store.claim_due(clock.advance(days=365), 10, "w1", LEASE_MS) == []
    assert store.next_wake() is None


# -- pending events and job progress --------------------------------------------------------------


def test_pending_emits_come_in_commit_order_until_forwarded(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(emits=[emitted("m3"), emitted("m1")]))
    store.commit(AudienceUpdate(emits=[emitted("m2", "p2", "vip")]))
    assert store.pending_emits(10) == [emitted("m3"), emitted("m1"), emitted("m2", "p2", "vip")]
    assert [e.message_id for e in store.pending_emits(2)] == ["m3", "m1"]
    assert store.pending_emits(0) == []
    store.forwarded(["m1", "unknown"])
    store.forwarded([])
    assert [e.message_id for e in store.pending_emits(10)] == ["m3", "m2"]


def test_many_emits_keep_the_order_they_were_committed_in(audiences: AudienceStores) -> None:
    store = audiences.store
    ids = [f"m{n:04d}" for n in reversed(range(300))]  # against the ids' own order
    store.commit(AudienceUpdate(emits=[emitted(i) for i in ids]))
    assert [e.message_id for e in store.pending_emits(1000)] == ids


def test_an_event_already_pending_is_skipped(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(emits=[emitted("m1"), emitted("m2"), emitted("m1", "p9")]))
    store.commit(AudienceUpdate(emits=[emitted("m2", "p9"), emitted("m3")]))
    assert store.pending_emits(10) == [emitted("m1"), emitted("m2"), emitted("m3")]
    # Once forwarded it is no longer pending: emitted again, it is kept again, last.
    store.forwarded(["m1"])
    store.commit(AudienceUpdate(emits=[emitted("m1", "p9")]))
    assert store.pending_emits(10) == [emitted("m2"), emitted("m3"), emitted("m1", "p9")]


def test_job_progress_is_upserted_and_forgotten(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(progress={"backfill:ag_a": "seq 10", "evaluate:vip": "p0100"}))
    store.commit(AudienceUpdate(progress={"backfill:ag_a": "seq 20"}))
    assert store.progress() == {"backfill:ag_a": "seq 20", "evaluate:vip": "p0100"}
    store.commit(AudienceUpdate(progress={"evaluate:vip": None, "never": None}))
    assert store.progress() == {"backfill:ag_a": "seq 20"}


# -- jobs expected by a batch ---------------------------------------------------------------------


def test_a_batch_commits_when_every_job_it_expects_is_as_expected(
    audiences: AudienceStores,
) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(progress={"fold:ag_a": "10:4", "scan:vip": "f:p0100"}))
    store.commit(
        AudienceUpdate(
            expect={"fold:ag_a": "10:4", "scan:vip": "f:p0100", "never": None},
            progress={"fold:ag_a": "10:8"},
            memberships=[membership("p1", "vip")],
        )
    )
    assert store.progress() == {"fold:ag_a": "10:8", "scan:vip": "f:p0100"}
    assert store.count("vip") == 1
    # A job forgotten has no progress, as one never started.
    store.commit(AudienceUpdate(progress={"scan:vip": None}))
    store.commit(AudienceUpdate(expect={"scan:vip": None, "never": None}, progress={"never": "1"}))
    assert store.progress() == {"fold:ag_a": "10:8", "never": "1"}


@pytest.mark.parametrize(
    ("expect", "named"),
    [
        ({"backfill": "at 0"}, ["backfill", "at 0", "at 1"]),
        ({"backfill": None}, ["backfill", "None", "at 1"]),
        ({"scan:vip": "f:done"}, ["scan:vip", "f:done", "None"]),
        ({"never": None, "backfill": "at 1", "late": "x"}, ["late", "x", "None"]),
    ],
)
def test_a_job_not_as_expected_fails_the_commit_and_changes_nothing(
    audiences: AudienceStores, expect: dict[str, str | None], named: list[str]
) -> None:
    first = everything(1)
    first.after_seq, first.processed_seq = 0, 3
    audiences.store.commit(first)
    stale = everything(2)
    stale.after_seq, stale.processed_seq = 3, 7
    stale.expect = expect
    stale.moves = {"p1": 4}
    stale.deleted = ["p2"]
    with pytest.raises(StaleBatch) as failed:
        audiences.store.commit(stale)
    # The message names the job, the progress expected and the progress stored.
    assert all(word in str(failed.value) for word in named), str(failed.value)
    assert_only_first_batch(audiences.store)
    assert audiences.store.claim_due(0, 10, "w1", LEASE_MS, partition=4) == []


def commit_at_once(commits: list[tuple[AudienceStore, AudienceUpdate]]) -> list[str | None]:
    """Commit each update on its store, each in a thread, all let go at once; per commit, the
    message of the StoreError it raised, or None."""
    barrier = threading.Barrier(len(commits))
    outcomes: list[str | None] = [None] * len(commits)

    def commit(n: int, store: AudienceStore, update: AudienceUpdate) -> None:
        barrier.wait(timeout=30)
        try:
            store.commit(update)
        except StoreError as exc:
            outcomes[n] = str(exc)

    threads = [
        threading.Thread(target=commit, args=(n, store, update))
        for n, (store, update) in enumerate(commits)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_compare_and_sets_of_a_job_let_one_through(audience_backend: Backend) -> None:
    # Two "processes" (their own adapters) moving one job on from the same progress at once.
    stores = [audience_backend.audience_stores().store for _ in range(2)]
    stores[0].commit(AudienceUpdate(progress={"fold:ag_a": "0"}))
    for turn in range(20):
        outcomes = commit_at_once(
            [
                (
                    store,
                    AudienceUpdate(
                        expect={"fold:ag_a": str(turn)},
                        progress={"fold:ag_a": str(turn + 1)},
                        memberships=[membership(f"p{turn}-{n}")],
                    ),
                )
                for n, store in enumerate(stores)
            ]
        )
        assert outcomes.count(None) == 1, outcomes
        won = outcomes.index(None)
        # Refused for the job (not, say, by a deadlock).
        assert "fold:ag_a" in str(outcomes[1 - won]), outcomes
        assert stores[0].progress() == {"fold:ag_a": str(turn + 1)}
        assert list(stores[1].memberships([f"p{turn}-0", f"p{turn}-1"])) == [f"p{turn}-{won}"]


def test_batches_of_many_partitions_expecting_one_job_all_commit(
    audience_backend: Backend,
) -> None:
    # Partition owners (two "processes", threads each) committing at once, all expecting one
    # job's progress and another job's absence; none changes them, so none is refused.
    stores = [audience_backend.audience_stores().store for _ in range(2)]
    stores[0].commit(AudienceUpdate(progress={"fold:ag_a": "5:5"}))
    outcomes = commit_at_once(
        [
            (
                stores[partition % 2],
                AudienceUpdate(
                    after_seq=0,
                    processed_seq=partition + 1,
                    partition=partition,
                    expect={"fold:ag_a": "5:5", "scan:new": None},
                    memberships=[membership(f"p{partition}", "a")],
                ),
            )
            for partition in range(8)
        ]
    )
    assert outcomes == [None] * 8
    assert [stores[1].processed_seq(p) for p in range(8)] == list(range(1, 9))
    assert stores[1].count("a") == 8
    assert stores[1].progress() == {"fold:ag_a": "5:5"}


# -- history folds --------------------------------------------------------------------------------


def test_history_folds_are_kept_apart_from_live_folds(audiences: AudienceStores) -> None:
    store = audiences.store
    email, user, phone = ("email", "sara@example.com"), ("user_id", "u1"), ("phone", "+98")
    store.commit(
        AudienceUpdate(
            folds={email: {"ag_a@5": windowed()}},
            history={email: {"ag_a@5/h": Fold(n=3)}, user: {"ag_a@5/h": windowed()}},
        )
    )
    assert store.folds([email, user, phone]) == {
        email: {"ag_a@5": windowed(), "ag_a@5/h": Fold(n=3)},
        user: {"ag_a@5/h": windowed()},
    }
    # A commit of live folds leaves history alone, and the other way round.
    store.commit(AudienceUpdate(folds={email: {"ag_b@5": Fold(n=2)}, user: {"ag_b@5": Fold(n=4)}}))
    store.commit(AudienceUpdate(history={email: {"ag_a@5/h": Fold(n=7)}}))
    assert store.folds([email, user]) == {
        email: {"ag_b@5": Fold(n=2), "ag_a@5/h": Fold(n=7)},
        user: {"ag_b@5": Fold(n=4), "ag_a@5/h": windowed()},
    }
    # An empty mapping deletes its part only.
    store.commit(AudienceUpdate(history={email: {}, phone: {}}))
    store.commit(AudienceUpdate(folds={user: {}, phone: {}}))
    assert store.folds([email, user, phone]) == {
        email: {"ag_b@5": Fold(n=2)},
        user: {"ag_a@5/h": windowed()},
    }
    store.commit(AudienceUpdate(history={user: {}}))
    assert store.folds([email, user]) == {email: {"ag_b@5": Fold(n=2)}}


def test_history_folds_of_many_identifiers(audiences: AudienceStores) -> None:
    store = audiences.store
    history = {
        (kind, f"v{n}"): {"ag_a/h": Fold(n=n)} for kind in ("email", "user_id") for n in range(600)
    }
    live = {key: {"ag_a": Fold(total=1.5)} for key in list(history)[::3]}
    store.commit(AudienceUpdate(history=history, folds=live))
    wanted = [("email", f"v{n}") for n in range(0, 600, 2)] + [("user_id", "v3"), ("phone", "v3")]
    assert store.folds(wanted) == {
        key: {**live.get(key, {}), **history[key]} for key in wanted if key in history
    }


# -- work-feed partitions (ADR 12) ----------------------------------------------------------------


def test_each_partition_has_a_cursor_of_its_own(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(after_seq=0, processed_seq=10, partition=1))
    store.commit(AudienceUpdate(after_seq=0, processed_seq=4, partition=2))
    assert (store.processed_seq(1), store.processed_seq(2), store.processed_seq(3)) == (10, 4, 0)
    assert (store.processed_seq(), store.processed_seq(0)) == (0, 0)
    store.commit(AudienceUpdate(after_seq=10, processed_seq=12, partition=1))
    store.commit(AudienceUpdate(after_seq=0, processed_seq=3))
    store.commit(AudienceUpdate(after_seq=0, processed_seq=2, partition=0))
    # A batch of timers only moves no cursor.
    store.commit(AudienceUpdate(partition=2, processed_seq=99, memberships=[membership("p1")]))
    assert [store.processed_seq(p) for p in (None, 0, 1, 2, 3)] == [3, 2, 12, 4, 0]


def test_a_stale_partition_cursor_fails_the_commit_and_changes_nothing(
    audiences: AudienceStores,
) -> None:
    store = audiences.store
    first = everything(1)
    first.after_seq, first.processed_seq, first.partition = 0, 3, 4
    store.commit(first)
    store.commit(AudienceUpdate(after_seq=0, processed_seq=8))  # the cursor without a partition
    stale = everything(2)
    stale.after_seq, stale.processed_seq, stale.partition = 0, 7, 4
    stale.moves, stale.deleted = {"p1": 5}, ["p1"]
    with pytest.raises(StoreError, match="partition 4"):
        store.commit(stale)
    assert_only_first_batch(store, partition=4)
    assert store.processed_seq() == 8
    assert profile_ids(store.claim_due(0, 10, "w1", LEASE_MS, partition=4)) == ["p1"]


def test_memberships_are_claimed_per_partition(audiences: AudienceStores, clock: FakeClock) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(AudienceUpdate(memberships=[membership("zero", wake_at=now - 3)]))
    store.commit(AudienceUpdate(partition=1, memberships=[membership("one", wake_at=now - 2)]))
    store.commit(AudienceUpdate(partition=2, memberships=[membership("two", wake_at=now - 1)]))
    store.commit(AudienceUpdate(partition=2, memberships=[membership("later", wake_at=now + 1)]))
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=2)) == ["two"]
    assert store.claim_due(now, 10, "w1", LEASE_MS, partition=3) == []
    # Without a partition, a commit files its memberships under partition 0.
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=0)) == ["zero"]
    assert profile_ids(store.claim_due(now + 1, 10, "w1", LEASE_MS)) == ["one", "later"]


def test_a_membership_is_filed_under_the_partition_that_stored_it_last(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(AudienceUpdate(partition=1, memberships=[membership("p1", wake_at=now)]))
    store.commit(AudienceUpdate(partition=2, memberships=[membership("p1", "a", wake_at=now)]))
    assert store.claim_due(now, 10, "w1", LEASE_MS, partition=1) == []
    assert store.claim_due(now, 10, "w1", LEASE_MS, partition=2) == [
        membership("p1", "a", wake_at=now)
    ]
    store.commit(AudienceUpdate(memberships=[membership("p1", wake_at=now)]))
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=0)) == ["p1"]


def test_a_handover_moves_the_memberships_filed_under_its_partition(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    gone = membership("gone", "a", wake_at=now)
    store.commit(AudienceUpdate(partition=1, memberships=[gone, membership("stays", wake_at=now)]))
    store.commit(AudienceUpdate(partition=3, memberships=[membership("elsewhere", wake_at=now)]))
    store.commit(
        AudienceUpdate(
            after_seq=0,
            processed_seq=8,
            partition=1,
            memberships=[membership("new", wake_at=now)],
            moves={"gone": 2, "new": 2, "elsewhere": 2, "unknown": 2},
        )
    )
    assert store.processed_seq(1) == 8
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=1)) == ["stays"]
    assert sorted(profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=2))) == [
        "gone",
        "new",
    ]
    # Only what the handing partition held moves.
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=3)) == ["elsewhere"]
    # A move changes where a membership is filed, nothing else.
    assert store.memberships(["gone", "unknown"]) == {"gone": gone}
    assert store.members("a", "", 10) == [gone]
    # Without a partition, a handover moves what partition 0 holds.
    store.commit(AudienceUpdate(memberships=[membership("zero", wake_at=now)]))
    store.commit(AudienceUpdate(moves={"zero": 4, "stays": 4}))
    claimed = store.claim_due(now + LEASE_MS, 10, "w2", LEASE_MS, partition=4)
    assert profile_ids(claimed) == ["zero"]


def test_due_partitions_names_those_with_a_claimable_membership(
    audiences: AudienceStores, clock: FakeClock
) -> None:
    store = audiences.store
    now = clock.now_ms()
    store.commit(AudienceUpdate(memberships=[membership("zero", wake_at=now - 3)]))
    store.commit(AudienceUpdate(partition=1, memberships=[membership("one", wake_at=now)]))
    store.commit(AudienceUpdate(partition=2, memberships=[membership("two", wake_at=now + 1)]))
    store.commit(AudienceUpdate(partition=3, memberships=[membership("three", wake_at=now - 1)]))
    store.commit(AudienceUpdate(partition=4, memberships=[membership("four")]))
    assert store.due_partitions(now, [0, 1, 2, 3, 4, 5]) == {0, 1, 3}
    assert store.due_partitions(now, [2, 4]) == set()
    assert store.due_partitions(now, []) == set()
    # Leased timers are not claimable until the lease is over; asking claims nothing.
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=3)) == ["three"]
    assert store.due_partitions(now, [0, 1, 3]) == {0, 1}
    assert store.due_partitions(now + LEASE_MS, [3]) == {3}
    assert store.due_partitions(now + 1, [2]) == {2}
    assert profile_ids(store.claim_due(now, 10, "w1", LEASE_MS, partition=0)) == ["zero"]


# -- another process ------------------------------------------------------------------------------


def test_everything_committed_outlives_the_process(
    audience_backend: Backend, clock: FakeClock
) -> None:
    if not audience_backend.shares_storage:
        pytest.skip("this backend does not outlive its process")
    now = clock.now_ms()
    first = audience_backend.audience_stores().store
    first.commit(
        AudienceUpdate(
            after_seq=0,
            processed_seq=4,
            folds={("user_id", "u1"): {"ag_a": windowed()}},
            memberships=[membership("p1", "a", wake_at=now), membership("p2", "a", wake_at=now)],
            emits=[emitted("m1")],
            progress={"backfill": "seq 4"},
        )
    )
    assert profile_ids(first.claim_due(now, 1, "w1", LEASE_MS)) == ["p1"]
    # Another process on the same storage sees the state, the timers and the lease.
    second = audience_backend.audience_stores().store
    assert second.processed_seq() == 4
    assert second.folds([("user_id", "u1")]) == {("user_id", "u1"): {"ag_a": windowed()}}
    assert second.members("a", "", 10) == [
        membership("p1", "a", wake_at=now),
        membership("p2", "a", wake_at=now),
    ]
    assert second.count("a") == 2
    assert second.pending_emits(10) == [emitted("m1")]
    assert second.progress() == {"backfill": "seq 4"}
    assert profile_ids(second.claim_due(now, 10, "w2", LEASE_MS)) == ["p2"]
    audience_backend.shutdown()
    third = audience_backend.audience_stores().store
    assert sorted(profile_ids(third.claim_due(now + LEASE_MS, 10, "w3", LEASE_MS))) == ["p1", "p2"]


def test_partitions_jobs_and_history_folds_outlive_the_process(
    audience_backend: Backend, clock: FakeClock
) -> None:
    if not audience_backend.shares_storage:
        pytest.skip("this backend does not outlive its process")
    now = clock.now_ms()
    user = ("user_id", "u1")
    first = audience_backend.audience_stores().store
    first.commit(
        AudienceUpdate(
            after_seq=0,
            processed_seq=6,
            partition=5,
            folds={user: {"ag_a@1": Fold(n=1)}},
            history={user: {"ag_a@1/h": windowed()}},
            memberships=[membership("p1", wake_at=now), membership("p2", wake_at=now)],
            moves={"p2": 6},
            progress={"scan:vip": "f:p1", "fold:ag_a": "1:0"},
        )
    )
    first.commit(AudienceUpdate(expect={"scan:vip": "f:p1"}, progress={"scan:vip": None}))
    audience_backend.shutdown()
    again = audience_backend.audience_stores().store
    assert (again.processed_seq(5), again.processed_seq()) == (6, 0)
    assert again.folds([user]) == {user: {"ag_a@1": Fold(n=1), "ag_a@1/h": windowed()}}
    assert again.progress() == {"fold:ag_a": "1:0"}
    assert again.due_partitions(now, [0, 5, 6]) == {5, 6}
    assert profile_ids(again.claim_due(now, 10, "w1", LEASE_MS, partition=5)) == ["p1"]
    assert profile_ids(again.claim_due(now, 10, "w1", LEASE_MS, partition=6)) == ["p2"]
    again.commit(AudienceUpdate(expect={"scan:vip": None, "fold:ag_a": "1:0"}))
    with pytest.raises(StoreError):
        again.commit(AudienceUpdate(after_seq=0, processed_seq=9, partition=5))


def test_commit_all_stores_every_update_in_order(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(after_seq=0, processed_seq=3, partition=2))
    store.commit_all(
        [
            AudienceUpdate(
                after_seq=0, processed_seq=5, partition=1, memberships=[membership("p1", "vip")]
            ),
            AudienceUpdate(
                after_seq=3,
                processed_seq=7,
                partition=2,
                folds={("user_id", "u-p2"): {"orders@0": Fold(n=2)}},
                emits=[emitted("m1", "p2")],
            ),
            # A later update may build on an earlier one's cursor.
            AudienceUpdate(after_seq=5, processed_seq=6, partition=1, expect={"jobs": None}),
        ]
    )
    assert (store.processed_seq(1), store.processed_seq(2)) == (6, 7)
    assert profile_ids(store.members("vip", "", 10)) == ["p1"]
    assert store.folds([("user_id", "u-p2")]) == {("user_id", "u-p2"): {"orders@0": Fold(n=2)}}
    assert [e.message_id for e in store.pending_emits(10)] == ["m1"]


def test_commit_all_stores_nothing_when_one_update_is_refused(audiences: AudienceStores) -> None:
    store = audiences.store
    store.commit(AudienceUpdate(after_seq=0, processed_seq=3, partition=2))
    with pytest.raises(StoreError):
        store.commit_all(
            [
                AudienceUpdate(
                    after_seq=0,
                    processed_seq=5,
                    partition=1,
                    memberships=[membership("p1", "vip")],
                    history={("user_id", "u-p1"): {"orders@0/h": Fold(n=1)}},
                    emits=[emitted("m1")],
                    progress={"scan:vip#1": "x:done"},
                ),
                # Stale: partition 2 is at 3.
                AudienceUpdate(after_seq=0, processed_seq=9, partition=2),
            ]
        )
    assert (store.processed_seq(1), store.processed_seq(2)) == (0, 3)
    assert store.memberships(["p1"]) == {}
    assert store.folds([("user_id", "u-p1")]) == {}
    assert store.pending_emits(10) == []
    assert "scan:vip#1" not in store.progress()
