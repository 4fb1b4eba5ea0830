"""The pure journey core: entering, stepping, waiting, goals, splits, re-entry, determinism."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.core import journey as core
from safar.core.plan import Plan, Predicate, compile_plan
from safar.model.journeys import (
    EXIT,
    Branch,
    Case,
    Emit,
    Entry,
    EventMatch,
    Goal,
    Journey,
    JourneyPolicy,
    Send,
    Split,
    SplitBranch,
    UpdateProfile,
    Wait,
    Webhook,
)
from safar.model.profiles import Profile
from safar.model.runs import (
    EntryRecord,
    EventCommand,
    EventInput,
    Instance,
    SendCommand,
    TimerFired,
    WebhookCommand,
    WebhookReply,
)

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_795_000_000_000  # 2026-11-18

#: The conditions these tests use, as Python: the core takes any compile function.
CONDITIONS: dict[str, Predicate] = {
    "event.properties.price >= 10": lambda a: (
        a["event"].get("properties", {}).get("price", 0) >= 10
    ),
    "profile.traits.vip == true": lambda a: a["profile"]["traits"].get("vip") is True,
    "event.properties.total > 100": lambda a: a["event"]["properties"]["total"] > 100,
    "journey.score >= 5": lambda a: a["journey"].get("score", 0) >= 5,
    "counted": lambda a: (
        a["profile"]["traits"].get("visits") == 6 and a["profile"]["traits"]["churn_risk"] is None
    ),
}


def compile_python(source: str) -> Predicate:
    return CONDITIONS[source]


def cart_journey() -> Journey:
    return Journey(
        id="abandoned-cart",
        name="Abandoned cart recovery",
        stage="purchase",
        entry=Entry(
            event="Product Added", where="event.properties.price >= 10", reentry="after_exit"
        ),
        goal=Goal(event="Order Completed", within_ms=3 * DAY),
        policy=JourneyPolicy(category="marketing", priority=60),
        steps=(
            Wait(id="wait_for_order", duration_ms=HOUR),
            Split(
                id="split",
                seed="cart-2026-11",
                branches=(
                    SplitBranch(name="email", weight=45, next="send_email"),
                    SplitBranch(name="sms", weight=45, next="send_sms"),
                    SplitBranch(name="control", weight=10, next=EXIT),
                ),
            ),
            Send(id="send_email", channel="email", template="cart_reminder", next="wait_day"),
            Send(id="send_sms", channel="sms", template="cart_reminder_sms", next="wait_day"),
            Wait(id="wait_day", duration_ms=DAY),
            Branch(
                id="vip_check",
                cases=(Case(condition="profile.traits.vip == true", next="send_coupon"),),
                otherwise=EXIT,
            ),
            Send(id="send_coupon", channel="email", template="cart_coupon"),
        ),
    )


def plan_of(journey: Journey) -> Plan:
    return compile_plan(journey, 1, compile_python)


def profile(pid: str = "p1", **traits: Any) -> Profile:
    return Profile(
        id=pid,
        identifiers={"user_id": [f"u-{pid}"]},
        traits=traits,
        first_seen=T0,
        last_seen=T0,
    )


def event(name: str, at: int = T0, message_id: str = "m1", **properties: Any) -> EventInput:
    return EventInput(
        seq=1,
        message_id=message_id,
        type="track",
        name=name,
        timestamp=at,
        payload={"type": "track", "event": name, "properties": properties},
    )


def enter(plan: Plan, who: Profile, at: int = T0, **props: Any) -> core.Transition:
    transition, _ = core.enter(
        plan, who, ("user_id", "u"), event(plan.journey.entry.event or "", at, **props), None, at
    )
    return transition


def steps_of(transition: core.Transition) -> list[tuple[str, str]]:
    return [(v.step, v.outcome) for v in transition.visits]


def sends(transition: core.Transition) -> list[SendCommand]:
    return [c for c in transition.commands if isinstance(c, SendCommand)]


def test_entering_runs_until_the_first_wait() -> None:
    plan = plan_of(cart_journey())
    t = enter(plan, profile(), price=25)
    inst = t.instance
    assert inst.status == "active" and inst.step == "wait_for_order"
    assert inst.wake_at == T0 + HOUR
    assert inst.goal_until == T0 + 3 * DAY
    assert inst.context["event"]["properties"] == {"price": 25}
    assert steps_of(t) == [("wait_for_order", "entered"), ("wait_for_order", "waiting")]
    assert t.commands == []


def branch_of(pid: str) -> str:
    plan = plan_of(cart_journey())
    t = enter(plan, profile(pid), price=25)
    t = core.advance(plan, t.instance, profile(pid), TimerFired(due=T0 + HOUR), T0 + HOUR)
    return str(t.instance.context["splits"]["split"])


def test_timer_runs_split_then_send_then_waits_a_day() -> None:
    plan = plan_of(cart_journey())
    who = next(profile(f"p{i}") for i in range(100) if branch_of(f"p{i}") == "email")
    t = enter(plan, who, price=25)
    t = core.advance(plan, t.instance, who, TimerFired(due=T0 + HOUR), T0 + HOUR)
    assert steps_of(t) == [
        ("wait_for_order", "done"),
        ("split", "split:email"),
        ("send_email", "queued"),
        ("wait_day", "waiting"),
    ]
    (send,) = sends(t)
    message = send.message
    assert (message.channel, message.template, message.category, message.priority) == (
        "email",
        "cart_reminder",
        "marketing",
        60,
    )
    assert message.key.startswith(f"abandoned-cart.v1.send_email.{t.instance.id}.")
    assert message.context["event"]["properties"] == {"price": 25}
    assert t.instance.wake_at == T0 + HOUR + DAY


def test_a_timer_not_yet_due_changes_nothing() -> None:
    plan = plan_of(cart_journey())
    t = enter(plan, profile(), price=25)
    early = core.advance(plan, t.instance, profile(), TimerFired(due=T0), T0 + HOUR - 1)
    assert not early.changed and early.instance.step == "wait_for_order"


def test_split_is_weighted_stable_and_has_a_control_group() -> None:
    counts = Counter(branch_of(f"p{i}") for i in range(3000))
    assert abs(counts["email"] / 3000 - 0.45) < 0.04
    assert abs(counts["sms"] / 3000 - 0.45) < 0.04
    assert abs(counts["control"] / 3000 - 0.10) < 0.03
    assert [branch_of(f"p{i}") for i in range(20)] == [branch_of(f"p{i}") for i in range(20)]


def test_control_group_exits_without_a_message() -> None:
    plan = plan_of(cart_journey())
    who = next(profile(f"p{i}") for i in range(200) if branch_of(f"p{i}") == "control")
    t = enter(plan, who, price=25)
    t = core.advance(plan, t.instance, who, TimerFired(due=T0 + HOUR), T0 + HOUR)
    assert t.instance.status == "exited" and t.instance.exit_reason == "completed"
    assert sends(t) == []


@pytest.mark.parametrize(("vip", "expected"), [(True, ["send_coupon"]), (False, [])])
def test_vip_branch(vip: bool, expected: list[str]) -> None:
    plan = plan_of(cart_journey())
    who = next(profile(f"p{i}", vip=vip) for i in range(100) if branch_of(f"p{i}") == "sms")
    t = enter(plan, who, price=25)
    t = core.advance(plan, t.instance, who, TimerFired(due=T0 + HOUR), T0 + HOUR)
    t = core.advance(plan, t.instance, who, TimerFired(due=T0 + HOUR + DAY), T0 + HOUR + DAY)
    assert [s.message.step_id for s in sends(t)] == expected
    assert t.instance.status == "exited"
    assert ("vip_check", "branch:0" if vip else "branch:else") in steps_of(t)


def test_goal_converts_from_any_step_within_the_window_only() -> None:
    plan = plan_of(cart_journey())
    t = enter(plan, profile(), price=25)
    done = core.advance(plan, t.instance, profile(), event("Order Completed", T0 + DAY), T0 + DAY)
    assert done.instance.status == "converted" and done.instance.ended_at == T0 + DAY
    assert done.instance.wake_at is None
    assert steps_of(done) == [("wait_for_order", "converted")]
    late_at = T0 + 3 * DAY + 1
    late = core.advance(plan, t.instance, profile(), event("Order Completed", late_at), late_at)
    assert late.instance.status == "active" and not late.changed


def test_an_ended_instance_ignores_inputs() -> None:
    plan = plan_of(cart_journey())
    t = enter(plan, profile(), price=25)
    done = core.advance(plan, t.instance, profile(), event("Order Completed"), T0 + 1)
    again = core.advance(plan, done.instance, profile(), TimerFired(due=T0 + HOUR), T0 + HOUR)
    assert not again.changed and again.commands == []


def test_advance_does_not_change_the_instance_it_was_given() -> None:
    plan = plan_of(cart_journey())
    t = enter(plan, profile(), price=25)
    before = msgspec.json.encode(t.instance)
    core.advance(plan, t.instance, profile(), TimerFired(due=T0 + HOUR), T0 + HOUR)
    assert msgspec.json.encode(t.instance) == before


def waiting_journey() -> Journey:
    return Journey(
        id="survey",
        name="Survey",
        entry=Entry(event="Order Completed", reentry="always", max_active=2, cooldown_ms=HOUR),
        steps=(
            Wait(
                id="await",
                event=EventMatch(event="Order Delivered", where="event.properties.total > 100"),
                timeout_ms=7 * DAY,
                timeout_next="nudge",
            ),
            Send(id="invite", channel="email", template="survey_invite", next=EXIT),
            Send(id="nudge", channel="sms", template="nudge"),
        ),
    )


def test_wait_for_event_continues_on_a_matching_event() -> None:
    plan = plan_of(waiting_journey())
    t = enter(plan, profile())
    assert t.instance.waiting_for == "Order Delivered" and t.instance.wake_at == T0 + 7 * DAY
    small = core.advance(plan, t.instance, profile(), event("Order Delivered", total=50), T0 + 1)
    assert not small.changed
    big = core.advance(plan, t.instance, profile(), event("Order Delivered", total=150), T0 + 2)
    assert [s.message.template for s in sends(big)] == ["survey_invite"]
    assert big.instance.status == "exited"
    assert big.instance.context["last_event"]["properties"] == {"total": 150}


def test_wait_for_event_times_out_to_its_timeout_path() -> None:
    plan = plan_of(waiting_journey())
    t = enter(plan, profile())
    at = T0 + 7 * DAY
    out = core.advance(plan, t.instance, profile(), TimerFired(due=at), at)
    assert [s.message.template for s in sends(out)] == ["nudge"]
    assert ("await", "timeout") in steps_of(out)


def test_reentry_rules() -> None:
    never = plan_of(
        msgspec.structs.replace(cart_journey(), entry=Entry(event="x", reentry="never"))
    )
    once = EntryRecord(journey_id="j", profile_id="p1", entries=1, last_entered_at=T0)
    assert core.refusal(never, None, 0, T0) is None
    assert core.refusal(never, once, 0, T0 + DAY) is not None
    after_exit = plan_of(cart_journey())
    assert core.refusal(after_exit, once, 1, T0 + DAY) == "already in this journey"
    assert core.refusal(after_exit, once, 0, T0 + DAY) is None
    always = plan_of(waiting_journey())
    assert core.refusal(always, once, 1, T0 + 2 * HOUR) is None
    assert core.refusal(always, once, 2, T0 + 2 * HOUR) == "already in this journey"
    assert core.refusal(always, once, 1, T0 + HOUR - 1) == "re-entry cooldown has not passed"


def test_enter_counts_entries_and_names_instances_by_what_entered_them() -> None:
    plan = plan_of(cart_journey())
    record = EntryRecord(journey_id="abandoned-cart", profile_id="p1", entries=2)
    t1, r1 = core.enter(
        plan, profile(), ("user_id", "u"), event("Product Added", price=20), record, T0
    )
    t2, _ = core.enter(
        plan, profile(), ("user_id", "u"), event("Product Added", price=20), record, T0 + 5
    )
    other, _ = core.enter(
        plan, profile(), ("user_id", "u"), event("Product Added", message_id="m2"), None, T0
    )
    assert r1.entries == 3 and r1.last_entered_at == T0
    assert t1.instance.id == t2.instance.id != other.instance.id


def tooling_journey() -> Journey:
    return Journey(
        id="tools",
        name="Tools",
        entry=Entry(api=True),
        steps=(
            UpdateProfile(id="count", increment={"visits": 1}, set={"tier": "gold"}),
            Webhook(id="score", url="https://crm.example/score", save={"score": "data.score"}),
            Branch(id="hot", cases=(Case(condition="journey.score >= 5", next="tell"),)),
            Emit(id="tell", event="Lead Hot", properties={"source": "journey"}),
        ),
    )


def test_update_webhook_reply_and_emit() -> None:
    from safar.model.runs import ApiEntry

    plan = plan_of(tooling_journey())
    who = profile(visits=4)
    t, _ = core.enter(
        plan, who, ("user_id", "u"), ApiEntry(request_id="r1", context={"a": 1}), None, T0
    )
    update, call = t.commands
    assert isinstance(update, EventCommand) and update.type == "identify"
    assert update.traits == {"tier": "gold", "visits": 5}
    assert isinstance(call, WebhookCommand) and call.reply and call.url.endswith("/score")
    assert t.instance.waiting_for == "webhook:score" and t.instance.context["a"] == 1
    wrong = core.advance(plan, t.instance, who, WebhookReply(step_id="other", ok=True), T0 + 1)
    assert not wrong.changed
    reply = WebhookReply(step_id="score", ok=True, response={"data": {"score": 7}})
    done = core.advance(plan, t.instance, who, reply, T0 + 2)
    (emit,) = done.commands
    assert isinstance(emit, EventCommand) and emit.name == "Lead Hot"
    assert emit.properties == {"source": "journey", "journey_id": "tools"}
    assert done.instance.context["score"] == 7 and done.instance.status == "exited"
    failed = core.advance(
        plan, t.instance, who, WebhookReply(step_id="score", ok=False, error="503"), T0 + 2
    )
    assert failed.instance.context["score_error"] == "503"
    assert failed.commands == []  # no score, so not hot


def test_steps_after_an_update_read_what_it_wrote() -> None:
    journey = Journey(
        id="count",
        name="Count",
        entry=Entry(api=True),
        steps=(
            UpdateProfile(id="bump", increment={"visits": 1}, unset=("churn_risk",)),
            UpdateProfile(id="again", increment={"visits": 1}),
            Branch(
                id="check",
                cases=(Case(condition="counted", next="tell"),),
            ),
            Emit(id="tell", event="Counted"),
        ),
    )
    from safar.model.runs import ApiEntry

    t, _ = core.enter(
        plan_of(journey),
        profile(visits=4, churn_risk="high"),
        ("user_id", "u"),
        ApiEntry(request_id="r1"),
        None,
        T0,
    )
    first, second, tell = t.commands
    assert isinstance(first, EventCommand) and first.traits == {"visits": 5, "churn_risk": None}
    assert isinstance(second, EventCommand) and second.traits == {"visits": 6}
    assert isinstance(tell, EventCommand) and tell.name == "Counted"


def test_wait_until_a_local_time_uses_the_profile_timezone() -> None:
    journey = Journey(
        id="morning",
        name="Morning",
        entry=Entry(event="Signed Up"),
        steps=(Wait(id="nine", until="09:00"), Send(id="hello", channel="email", template="w")),
    )
    plan = plan_of(journey)
    # 2026-11-18 10:00 UTC is 13:30 in Tehran: the next 09:00 there is tomorrow 05:30 UTC.
    at = int(datetime(2026, 11, 18, 10, 0, tzinfo=UTC).timestamp() * 1000)
    t = enter(plan, profile(timezone="Asia/Tehran"), at)
    assert t.instance.wake_at == int(datetime(2026, 11, 19, 5, 30, tzinfo=UTC).timestamp() * 1000)
    utc = enter(plan, profile(), at)
    assert utc.instance.wake_at == int(datetime(2026, 11, 19, 9, 0, tzinfo=UTC).timestamp() * 1000)


Inputs = list[tuple[str, int]]


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.sampled_from(["timer", "order", "noise"]), st.integers(0, 5 * DAY)),
        max_size=8,
    ),
    st.booleans(),
)
def test_replaying_the_same_inputs_gives_the_same_result(inputs: Inputs, vip: bool) -> None:
    plan = plan_of(cart_journey())
    who = profile("p7", vip=vip)

    def run() -> tuple[bytes, list[bytes]]:
        t = enter(plan, who, price=30)
        instance: Instance = t.instance
        out = [msgspec.json.encode(c) for c in t.commands]
        for kind, offset in sorted(inputs, key=lambda i: i[1]):
            now = T0 + offset
            item: Any = (
                TimerFired(due=now)
                if kind == "timer"
                else event("Order Completed" if kind == "order" else "Page Viewed", now)
            )
            step = core.advance(plan, instance, who, item, now)
            instance = step.instance
            out += [msgspec.json.encode(c) for c in step.commands]
        return msgspec.json.encode(instance), out

    first = run()
    assert run() == first
    keys = [msgspec.json.decode(c)["message"]["key"] for c in first[1]]
    assert len(keys) == len(set(keys))  # no command key repeats within a run


def _activation_sees(a: Mapping[str, Any]) -> bool:
    return bool(a["now"].tzinfo)


def test_conditions_see_event_profile_journey_and_an_aware_now() -> None:
    seen: list[Mapping[str, Any]] = []

    def spy(source: str) -> Predicate:
        def check(a: Mapping[str, Any]) -> bool:
            seen.append(a)
            return True

        return check

    journey = msgspec.structs.replace(cart_journey(), context={"campaign": "bf"})
    plan = compile_plan(journey, 3, spy)
    who = profile(vip=True)
    core.entry_activation(plan, who, event("Product Added", price=11), T0)
    assert plan.entry_where(core.entry_activation(plan, who, event("Product Added", price=11), T0))
    a = seen[-1]
    assert a["event"]["properties"] == {"price": 11}
    assert a["profile"]["traits"] == {"vip": True} and a["profile"]["id"] == "p1"
    assert a["journey"] == {"campaign": "bf"} and _activation_sees(a)
