"""The audience processor, kept current per event and by timers, agrees with a recompute from
the stored events at every point in time, whatever the customers do: buy (with backdated
timestamps), identify themselves, merge anonymous and known profiles, change consent, and let
time pass."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.definitions import parse_audience
from safar.model.audiences import ComputedTrait, Segment
from safar.model.events import iso
from safar.model.messages import Consent
from safar.runtime.batch import recompute
from safar.runtime.segment_sql import SqlAudiences
from safar.runtime.warehouse import Warehouse
from safar.testing.journeys import JourneyHarness

HOUR = 3_600_000

TRAITS = [
    "{id: orders_7d, compute: {event: Order Completed, within: 7d}}",
    "{id: revenue_all, compute: {event: Order Completed, kind: sum, value: properties.revenue}}",
    "{id: avg_3d, compute: {event: Order Completed, kind: avg, value: properties.revenue,"
    " within: 3d}}",
    "{id: last_cat, compute: {event: Order Completed, kind: last, value: properties.category}}",
    "{id: first_cat, compute: {event: Order Completed, kind: first, value: properties.category,"
    " within: 4d}}",
    "{id: fav_cat, compute: {event: Order Completed, kind: most_frequent,"
    " value: properties.category, within: 5d}}",
    "{id: days_since_order, compute: {event: Order Completed, kind: days_since}}",
    "{id: max_rev, compute: {event: Order Completed, kind: max, value: properties.revenue,"
    " within: 2d}}",
]
SEGMENTS = [
    "{id: repeat, name: R, where: {performed: Order Completed, at_least: 2, within: 3d,"
    " where: event.properties.revenue > 50}}",
    "{id: lapsed, name: L, where: {all: [{trait: vip, eq: true},"
    " {not: {performed: Order Completed, within: 2d}}]}}",
    "{id: emailable, name: E, where: {all: [{identifier: email},"
    " {not: {consent: {channel: email, subscribed: false}}}]}}",
    "{id: big, name: B, where: {trait: revenue_all, gte: 200}}",
    "{id: fan, name: F, where: {any: [{member: repeat}, {member: big}]}}",
    "{id: recent, name: Re, where: {trait: days_since_order, lte: 1}}",
    "{id: pro, name: P, where: {profile: \"profile.traits.plan == 'pro'\"}}",
    "{id: never, name: N, where: {performed: Order Completed, at_most: 0}}",
    "{id: exactly-one-3d, name: X, where: {performed: Order Completed, exactly: 1, within: 3d}}",
]

_who = st.sampled_from(["u1", "u2", "u3", "a1", "a2", "a3"])
_ops = st.one_of(
    st.tuples(
        st.just("order"),
        _who,
        st.sampled_from([10, 60, 120, 70.5]),
        st.sampled_from(["shoes", "bags", "hats"]),
        st.integers(0, 72),
    ),
    st.tuples(
        st.just("identify"),
        st.sampled_from(["u1", "u2", "u3"]),
        st.booleans(),
        st.sampled_from(["pro", "free"]),
        st.booleans(),
    ),
    st.tuples(st.just("link"), st.sampled_from(["a1", "a2", "a3"]), st.sampled_from(["u1", "u2"])),
    st.tuples(st.just("consent"), st.sampled_from(["u1", "u2", "u3"]), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 80)),
)


def _send(h: JourneyHarness, who: str, body: dict[str, Any]) -> None:
    key = "userId" if who.startswith("u") else "anonymousId"
    h.send({key: who, **body})


def _apply(h: JourneyHarness, op: tuple[Any, ...]) -> None:
    kind = op[0]
    now = h.clock.now_ms()
    if kind == "order":
        _, who, revenue, category, hours_ago = op
        properties = {"revenue": revenue, "category": category}
        body = {"type": "track", "event": "Order Completed", "properties": properties}
        _send(h, who, {**body, "timestamp": iso(now - hours_ago * HOUR)})
    elif kind == "identify":
        _, who, vip, plan, with_email = op
        traits: dict[str, Any] = {"vip": vip, "plan": plan}
        if with_email:
            traits["email"] = f"{who}@example.com"
        _send(h, who, {"type": "identify", "traits": traits})
    elif kind == "link":
        _, anonymous, user = op
        h.send({"type": "identify", "anonymousId": anonymous, "userId": user, "traits": {}})
    elif kind == "consent":
        _, who, subscribed = op
        profile = h.stores.profiles.find(("user_id", who))
        if profile is None:
            return
        choice = Consent(
            profile_id=profile.id,
            channel="email",
            category="marketing",
            subscribed=subscribed,
            at=now,
        )
        h.stores.delivery.set_consent(choice)
        _send(h, who, {"type": "track", "event": "Consent Changed", "properties": {}})
    else:
        h.advance(hours=op[1])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b)
    return bool(a == b) and type(a) is type(b)


def _check(
    h: JourneyHarness,
    segments: list[Segment],
    traits: list[ComputedTrait],
    warehouse: Warehouse | None = None,
) -> None:
    """The processor's view of every customer equals the recompute's; with a ``warehouse``,
    so does the SQL recompute over it (synced from the stores first)."""
    now = h.clock.now_ms()
    expected = recompute(
        segments, traits, h.stores.profiles, h.stores.events, h.stores.delivery, now
    )
    if warehouse is not None:
        warehouse.sync_events(h.stores.events, IdentityRules(IdentitySettings()))
        warehouse.load_profiles(h.stores.profiles, h.stores.delivery)
        sql = SqlAudiences(warehouse, segments, traits)
        members = sql.run(now)
        computed = sql.computed(now)
        assert set(computed) == set(expected)
        for segment in segments:
            want = {pid for pid, result in expected.items() if segment.id in result.segments}
            assert members[segment.id] == want, segment.id
        for pid, result in expected.items():
            for name, value in result.traits.items():
                assert _same(computed[pid][name], value), (pid, name, computed[pid][name], value)
    after = ""
    seen = 0
    while found := h.reader.scan(after, 100):
        for profile in found:
            want = expected[profile.id]
            assert set(profile.segments) == set(want.segments), (profile.id, profile.identifiers)
            for name, value in want.traits.items():
                assert _same(profile.traits[name], value), (profile.id, name)
            seen += 1
        after = found[-1].id
    assert seen == len(expected)
    # The store's members too (what counts and exports read): no membership of a profile
    # merged away is left behind.
    for segment in segments:
        want = {pid for pid, result in expected.items() if segment.id in result.segments}
        stored = h.stores.audiences.members(segment.id, "", len(expected) + 100)
        assert {m.profile_id for m in stored} == want, segment.id


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(_ops, min_size=1, max_size=30), publish_at=st.integers(0, 30))
def test_incremental_audiences_equal_a_recompute_at_every_step(
    ops: list[tuple[Any, ...]], publish_at: int
) -> None:
    """Definitions are published part-way (``publish_at``), so history before them is folded
    in by the background jobs, and events after by the processor."""
    _agree(JourneyHarness(partitions=0), ops, publish_at, sql=True)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(_ops, min_size=1, max_size=30), publish_at=st.integers(0, 30))
def test_partitioned_audiences_equal_a_recompute_at_every_step(
    ops: list[tuple[Any, ...]], publish_at: int
) -> None:
    """The same with a work feed of 3 partitions (ADR 12): a coordinator folds the history,
    each partition's processor its customers' events, timers and scans, and customers merged
    across partitions are handed over."""
    _agree(JourneyHarness(partitions=3), ops, publish_at, sql=False)


def _agree(h: JourneyHarness, ops: list[tuple[Any, ...]], publish_at: int, *, sql: bool) -> None:
    traits = [parse_audience(text) for text in TRAITS]
    segments = [parse_audience(text) for text in SEGMENTS]
    assert all(isinstance(t, ComputedTrait) for t in traits)
    assert all(isinstance(s, Segment) for s in segments)

    def publish() -> None:
        for definition in [*traits, *segments]:
            h.publish_audience(definition)

    with Warehouse() as warehouse:
        for index, op in enumerate(ops):
            if index == publish_at:
                publish()
            _apply(h, op)
            if index >= publish_at:
                # The SQL recompute is checked at a few steps (its sync is incremental).
                checked = sql and (index % 10 == 9 or index == len(ops) - 1)
                _check(h, segments, traits, warehouse if checked else None)  # type: ignore[arg-type]
        if publish_at >= len(ops):
            publish()
            _check(h, segments, traits, warehouse if sql else None)  # type: ignore[arg-type]
