"""Repairs: state damaged behind the audience processor's back (as a bug would) is rebuilt from
the stored events by the processor itself, with an entry or exit for each membership that was
wrong and none for those that were right; the repair is durable across restarts."""

from __future__ import annotations

from typing import Any

import pytest

from safar.api.audiences import Live
from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.core.recompute import Result
from safar.core.segments import AudiencePlan
from safar.definitions import parse_audience
from safar.errors import Conflict, NotFound
from safar.model.audiences import (
    SEGMENT_ENTERED,
    SEGMENT_EXITED,
    ComputedTrait,
    Fold,
    Membership,
    Segment,
)
from safar.ports import AudienceUpdate
from safar.runtime import audience_catalog
from safar.runtime import audiences as processor_module
from safar.runtime.audience_jobs import Generation, repair_scope
from safar.runtime.audiences import AudienceProcessor, audience_compile
from safar.runtime.batch import recompute
from safar.testing.journeys import JourneyHarness

TRAITS = [
    "{id: orders, compute: {event: Order Completed}}",
    "{id: revenue, compute: {event: Order Completed, kind: sum, value: properties.revenue}}",
    "{id: orders_7d, compute: {event: Order Completed, within: 7d}}",
]
SEGMENTS = [
    "{id: repeat, name: Repeat, where: {performed: Order Completed, at_least: 2}}",
    "{id: big, name: Big, where: {trait: revenue, gte: 200}}",
    "{id: vips, name: VIPs, where: {trait: vip, eq: true}}",
    "{id: fan, name: Fan, where: {all: [{member: repeat}, {member: big}]}}",
]
USER = "user_id"


def definitions() -> tuple[list[Segment], list[ComputedTrait]]:
    traits = [t for t in map(parse_audience, TRAITS) if isinstance(t, ComputedTrait)]
    segments = [s for s in map(parse_audience, SEGMENTS) if isinstance(s, Segment)]
    assert (len(traits), len(segments)) == (len(TRAITS), len(SEGMENTS))
    return segments, traits


def shop() -> JourneyHarness:
    """u1: VIP, orders of 150 and 200; u2: VIP, no orders; u3: one order of 50; u4: VIP, no
    orders; u5: orders of 120 and 130. Everything published and evaluated."""
    h = JourneyHarness()
    for user, vip in (("u1", True), ("u2", True), ("u3", False), ("u4", True), ("u5", False)):
        h.identify(user, {"vip": vip})
    for user, revenue in (("u1", 150), ("u1", 200), ("u3", 50), ("u5", 120), ("u5", 130)):
        h.track(user, "Order Completed", {"revenue": revenue})
    segments, traits = definitions()
    for trait in traits:
        h.publish_audience(trait)
    for segment in segments:
        h.publish_audience(segment)
    return h


def pid(h: JourneyHarness, user: str) -> str:
    return h.profile(user).id


def repair(h: JourneyHarness, *ids: str) -> None:
    """Request repairs, as the API and CLI do, a little after the damage (a change's message id
    names its instant: an entry at the very instant of the lost one would be taken for it), and
    let the processor pick them up."""
    h.clock.advance(seconds=1)
    audience_catalog.repair(h.stores.audience_catalog, ids)
    h.audiences.refresh()


def last_seq(h: JourneyHarness) -> int:
    return h.stores.events.last_seq()


def changes(h: JourneyHarness, after: int) -> list[tuple[str, str, str]]:
    """(Entered or Exited, segment, user) for each membership change in the log after
    ``after``."""
    found = []
    for event in h.stores.events.read(after, 10_000):
        if event.name in (SEGMENT_ENTERED, SEGMENT_EXITED):
            properties = event.payload()["properties"]
            direction = "entered" if event.name == SEGMENT_ENTERED else "exited"
            found.append((direction, properties["segment_id"], event.user_id or ""))
    return sorted(found)


def stored_members(h: JourneyHarness) -> dict[str, set[str]]:
    segments, _ = definitions()
    store = h.stores.audiences
    return {s.id: {m.profile_id for m in store.members(s.id, "", 10_000)} for s in segments}


def computed_traits(h: JourneyHarness) -> dict[str, dict[str, Any]]:
    """Profile id -> the computed traits profiles show (through the audience reader)."""
    _, traits = definitions()
    names = {t.id for t in traits}
    h.reader.invalidate()
    return {
        p.id: {k: v for k, v in p.traits.items() if k in names} for p in h.reader.scan("", 1000)
    }


def expected_results(h: JourneyHarness) -> dict[str, Result]:
    segments, traits = definitions()
    s = h.stores
    return recompute(segments, traits, s.profiles, s.events, s.delivery, h.clock.now_ms())


def expected_members(h: JourneyHarness) -> dict[str, set[str]]:
    segments, _ = definitions()
    expected = expected_results(h)
    return {s.id: {p for p, r in expected.items() if s.id in r.segments} for s in segments}


def assert_equals_a_recompute(h: JourneyHarness) -> None:
    assert stored_members(h) == expected_members(h)
    expected = expected_results(h)
    assert computed_traits(h) == {p: result.traits for p, result in expected.items()}


def commit_damage(h: JourneyHarness, **update: Any) -> None:
    """Write to the audience store directly, as a buggy processor would."""
    h.stores.audiences.commit(AudienceUpdate(**update))


def membership(h: JourneyHarness, user: str) -> Membership:
    found = h.stores.audiences.memberships([pid(h, user)])
    return found[pid(h, user)]


def state(h: JourneyHarness, audience_id: str) -> str | None:
    catalog = h.stores.audience_catalog
    live = Live.read(catalog.all(), h.stores.audiences)
    found: str | None = live.status(catalog.versions(audience_id), h.stores.audiences)["state"]
    return found


def restart(h: JourneyHarness) -> None:
    """A new processor over the same stores, as after a crash: what the old one held in
    memory is gone."""
    s = h.stores
    h.audiences = AudienceProcessor(
        s.events,
        s.profiles,
        s.delivery,
        s.audience_catalog,
        s.audiences,
        IdentityRules(IdentitySettings()),
        h.clock,
    )


def damage(h: JourneyHarness) -> None:
    """u1's folds gone (their memberships stay right); u3's order count altered and u3 put in
    ``repeat``; u2 taken out of ``vips``; a member of ``big`` who is nobody."""
    store = h.stores.audiences
    u3 = (USER, "u3")
    orders = parse_audience(TRAITS[0])
    assert isinstance(orders, ComputedTrait)
    altered = store.folds([u3])[u3]
    [orders_storage] = [k for k in altered if k.startswith(orders.aggregate.key + "@")]
    altered[orders_storage] = Fold(n=7)
    u2, u3_membership = membership(h, "u2"), membership(h, "u3")
    del u2.segments["vips"]
    u3_membership.segments["repeat"] = h.clock.now_ms()
    ghost = Membership(profile_id="p_ghost", identifier=(USER, "ghost"), segments={"big": 1})
    commit_damage(
        h,
        # Both parts (live and history) of u1's folds lost; u3's replaced by ``altered``.
        folds={(USER, "u1"): {}, u3: altered},
        history={(USER, "u1"): {}, u3: {}},
        memberships=[u2, u3_membership, ghost],
    )


def test_a_repair_rebuilds_damaged_folds_and_memberships() -> None:
    h = shop()
    assert_equals_a_recompute(h)
    damage(h)
    h.run()
    # The store holds the damage (the processor still remembers what it committed, but
    # profiles and members are read from the store): the checks below can fail.
    with pytest.raises(AssertionError):
        assert_equals_a_recompute(h)
    before = last_seq(h)
    repair(h, *audience_catalog.published_ids(h.stores.audience_catalog))
    h.run()
    assert_equals_a_recompute(h)
    assert changes(h, before) == [("entered", "vips", "u2"), ("exited", "repeat", "u3")]
    assert h.stores.audiences.memberships(["p_ghost"]) == {}
    assert computed_traits(h)[pid(h, "u1")] == {"orders": 2, "revenue": 350, "orders_7d": 2}


def test_a_repair_of_a_correct_audience_emits_nothing_and_changes_no_membership() -> None:
    h = shop()
    everyone = [p.id for p in h.stores.profiles.scan("", 100)]
    memberships = h.stores.audiences.memberships(everyone)
    traits = computed_traits(h)
    before = last_seq(h)
    repair(h, "fan", "orders", "vips")
    h.run()
    assert changes(h, before) == []
    assert h.stores.audiences.memberships(everyone) == memberships
    assert computed_traits(h) == traits


def test_repairing_a_segment_repairs_the_folds_it_reads_through_member_segments() -> None:
    h = shop()
    u5 = (USER, "u5")
    commit_damage(h, folds={u5: {}}, history={u5: {}})
    restart(h)  # so that the processor reads the damaged store
    # A new order on top of the lost folds: the processor counts one order and 10 of revenue,
    # and u5 leaves repeat, big and fan, wrongly.
    h.track("u5", "Order Completed", {"revenue": 10})
    bug = last_seq(h)
    assert ("exited", "repeat", "u5") in changes(h, 0)
    repair(h, "fan")
    h.run()
    assert stored_members(h) == expected_members(h)
    # What fan reads is repaired; orders_7d, which it does not read, is not.
    traits = computed_traits(h)[pid(h, "u5")]
    assert traits == {"orders": 3, "revenue": 260, "orders_7d": 1}
    assert changes(h, bug) == [
        ("entered", "big", "u5"),
        ("entered", "fan", "u5"),
        ("entered", "repeat", "u5"),
    ]


def test_what_a_repair_covers() -> None:
    segments, traits = definitions()
    plan = AudiencePlan(segments, traits, audience_compile)
    keys = {t.id: t.aggregate.key for t in traits}
    performed = plan.reads["repeat"].aggregates
    # A computed trait: its aggregate, and the segments reading it and their dependents.
    assert repair_scope(plan, ["revenue"]) == ({keys["revenue"]}, {"big", "fan"})
    # A segment reading no aggregate, which no segment names: itself only.
    assert repair_scope(plan, ["vips"]) == (set(), {"vips"})
    # A segment naming others: they are repaired with it.
    assert repair_scope(plan, ["fan"]) == (performed | {keys["revenue"]}, {"repeat", "big", "fan"})
    # A trait no segment reads; and ids no longer live are left out.
    assert repair_scope(plan, ["orders_7d", "gone"]) == ({keys["orders_7d"]}, set())


def test_state_is_computing_then_ready_and_members_are_kept_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = shop()
    members = stored_members(h)
    assert state(h, "fan") == state(h, "revenue") == "ready"
    monkeypatch.setattr(processor_module, "HISTORY_PAGE", 4)
    repair(h, "revenue")
    # Until the processor's next batch the repair is only in its memory; then it is committed.
    assert h.audiences.busy
    h.audiences.run_jobs()
    assert state(h, "revenue") == state(h, "big") == state(h, "fan") == "computing"
    assert state(h, "vips") == state(h, "repeat") == "ready"
    assert stored_members(h) == members
    while h.audiences.busy:
        h.audiences.run_jobs()
    assert state(h, "revenue") == state(h, "big") == state(h, "fan") == "ready"
    assert stored_members(h) == members


def folds_progress(h: JourneyHarness) -> dict[str, Generation]:
    found = {}
    for name, text in h.stores.audiences.progress().items():
        held = Generation.decode(text) if name.startswith("fold:") else None
        if held is not None:
            found[name] = held
    return found


def scans_progress(h: JourneyHarness) -> dict[str, str]:
    progress = h.stores.audiences.progress()
    return {n: t.partition(":")[2] for n, t in progress.items() if n.startswith("scan:")}


def run_jobs_until(h: JourneyHarness, condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        assert h.audiences.run_jobs()
    raise AssertionError("never got there")


def test_a_repair_survives_processor_restarts_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    h = shop()
    damage(h)
    h.run()
    before = last_seq(h)
    # Small pages, so the repair takes many batches and restarts land in the middle.
    monkeypatch.setattr(processor_module, "HISTORY_PAGE", 4)
    monkeypatch.setattr(processor_module, "SCAN_PAGE", 2)
    repair(h, *audience_catalog.published_ids(h.stores.audience_catalog))
    run_jobs_until(h, lambda: any(0 < g.upto < g.generation for g in folds_progress(h).values()))
    started = folds_progress(h)
    assert {g.refold for g in started.values()} == {1}
    assert h.stores.audiences.progress()["repair:vips"] == "1"
    restart(h)
    run_jobs_until(h, lambda: any(p not in ("", "done") for p in scans_progress(h).values()))
    restart(h)
    h.run()
    assert_equals_a_recompute(h)
    assert changes(h, before) == [("entered", "vips", "u2"), ("exited", "repeat", "u3")]
    # Carried on where it was, not started again: still the generations it started.
    assert {n: (g.generation, g.refold) for n, g in folds_progress(h).items()} == {
        n: (g.generation, g.refold) for n, g in started.items()
    }


def test_a_repair_not_committed_before_a_crash_starts_again() -> None:
    h = shop()
    damage(h)
    h.run()
    before = last_seq(h)
    repair(h, *audience_catalog.published_ids(h.stores.audience_catalog))
    restart(h)  # nothing of the repair was committed
    assert h.audiences.busy
    h.run()
    assert changes(h, before) == [("entered", "vips", "u2"), ("exited", "repeat", "u3")]


def test_a_repair_of_an_audience_archived_since_is_dropped() -> None:
    h = shop()
    audience_catalog.repair(h.stores.audience_catalog, ["orders_7d"])
    audience_catalog.archive(h.stores.audience_catalog, "orders_7d")
    before = last_seq(h)
    h.audiences.refresh()
    assert not h.audiences.busy
    # Marked done with the processor's next batch.
    h.track("u1", "Order Completed", {"revenue": 1})
    assert h.stores.audiences.progress()["repair:orders_7d"] == "1"
    assert changes(h, before) == []


def test_only_published_audiences_can_be_repaired() -> None:
    h = shop()
    catalog = h.stores.audience_catalog
    with pytest.raises(NotFound):
        audience_catalog.repair(catalog, ["vips", "nobody"])
    audience_catalog.archive(catalog, "orders_7d")
    with pytest.raises(Conflict, match="'orders_7d' is not published"):
        audience_catalog.repair(catalog, ["orders_7d"])
    # Every id is checked before anything is requested.
    assert catalog.repairs() == {}
    assert audience_catalog.repair(catalog, ["vips", "vips"])[0][1] == 1


def test_a_repair_at_the_cursor_its_generation_started_at_counts_each_event_once() -> None:
    h = JourneyHarness()
    h.track("u1", "Order Completed", {"revenue": 5})
    h.track("u1", "Order Completed", {"revenue": 7})
    _, traits = definitions()
    h.publish_audience(traits[0])
    # No event since: the repair's generation starts at the same cursor as the one it replaces.
    repair(h, "orders")
    h.run()
    repair(h, "orders")
    h.run()
    h.reader.invalidate()
    assert h.reader.find((USER, "u1")).traits["orders"] == 2  # type: ignore[union-attr]


def test_an_aggregate_published_again_at_the_same_cursor_counts_each_event_once() -> None:
    h = JourneyHarness()
    h.identify("u1", {"vip": True})
    for revenue in (100, 50):
        h.track("u1", "Order Completed", {"revenue": revenue})
    h.track("u2", "Signed Up")
    orders = parse_audience(TRAITS[0])
    assert isinstance(orders, ComputedTrait)
    h.publish_audience(orders)
    assert computed_traits(h)[pid(h, "u1")] == {"orders": 2}
    audience_catalog.archive(h.stores.audience_catalog, "orders")
    signups = parse_audience("{id: signups, compute: {event: Signed Up}}")
    h.publish_audience(signups)  # its history job commits (u2 only) and forgets orders
    assert "fold:" + orders.aggregate.key not in h.stores.audiences.progress()
    # Published again with no event in between: the processor's cursor has not moved, so the
    # new generation starts where the old one did; its folds must not be the old ones.
    h.publish_audience(orders)
    assert computed_traits(h)[pid(h, "u1")]["orders"] == 2
    h.track("u1", "Order Completed", {"revenue": 10})
    assert computed_traits(h)[pid(h, "u1")]["orders"] == 3


def test_aggregates_published_together_fold_their_history_in_one_pass(monkeypatch: Any) -> None:
    h = JourneyHarness()
    for n in range(6):
        h.identify(f"u{n}", {"vip": n % 2 == 0})
        h.track(f"u{n}", "Order Completed", {"revenue": 10 * n})
        h.track(f"u{n}", "Order Completed", {"revenue": 5})
    monkeypatch.setattr(processor_module, "HISTORY_PAGE", 4)
    reads: list[int] = []
    events = h.audiences._events
    read = events.read
    monkeypatch.setattr(
        events, "read", lambda after, limit: reads.append(after) or read(after, limit)
    )
    _, traits = definitions()
    for trait in traits:
        audience_catalog.publish(h.stores.audience_catalog, trait, h.clock.now_ms())
    h.audiences.refresh()
    while h.audiences.run_jobs():
        pass
    history = h.stores.events.last_seq()
    assert len(reads) <= history // 4 + 2  # one pass for the three of them
    expected = recompute([], traits, h.stores.profiles, h.stores.events, None, h.clock.now_ms())
    h.reader.invalidate()
    names = {t.id for t in traits}
    shown = {p.id: {k: v for k, v in p.traits.items() if k in names} for p in h.reader.scan("", 99)}
    assert shown == {p: r.traits for p, r in expected.items()}
