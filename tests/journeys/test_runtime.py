"""The journey runtime end to end on the harness: events → profiles → journeys → gate → channels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from safar.definitions import parse_journey
from safar.model.journeys import (
    EXIT,
    Emit,
    Entry,
    EventMatch,
    Journey,
    JourneyPolicy,
    Migration,
    Send,
    UpdateProfile,
    Wait,
    Webhook,
)
from safar.model.messages import Consent
from safar.model.policy import FrequencyCap, Policy, QuietHours, Suppression
from safar.runtime.journeys import ENTRY_REQUEST_EVENT
from safar.testing.journeys import JourneyHarness, RecordingChannel

pytestmark = pytest.mark.usefixtures("journey_modes")

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3_600_000
DAY = 24 * HOUR


def cart() -> Journey:
    text = (ROOT / "examples/journeys/abandoned_cart.yaml").read_text()
    return parse_journey(text, "abandoned_cart.yaml")


def customer(h: JourneyHarness, uid: str, **traits: Any) -> None:
    h.identify(uid, {"email": f"{uid}@shop.example", "phone": "+15550001234", **traits})


def simple(journey_id: str, event: str, *steps: Any, **fields: Any) -> Journey:
    return Journey(id=journey_id, name=journey_id, entry=Entry(event=event), steps=steps, **fields)


def test_abandoned_cart_sends_one_reminder_then_the_vip_coupon() -> None:
    h = JourneyHarness()
    h.publish(cart())
    users = [f"u{i}" for i in range(12)]
    for uid in users:
        customer(h, uid, vip=True)
        h.track(uid, "Product Added", {"price": 40})
    h.advance(hours=1)
    after_hour = {(m.to, m.subject) for m in h.sent}
    h.advance(days=1)
    branches: dict[str, str] = {}
    for uid in users:
        (instance,), _ = h.stores.runs.history(h.profile(uid).id, 10)
        branches[uid] = instance.context["splits"]["split"]
        got = sorted(m.subject or "" for m in h.sent if m.profile_id == h.profile(uid).id)
        expected = {
            "email": ["cart_coupon", "cart_reminder"],
            "sms": ["cart_coupon", "cart_reminder_sms"],
            "control": [],
        }[branches[uid]]
        assert got == expected, uid
        reminder = {"email": "cart_reminder", "sms": "cart_reminder_sms"}.get(branches[uid])
        if reminder:
            address = f"{uid}@shop.example" if reminder == "cart_reminder" else "+15550001234"
            assert (address, reminder) in after_hour
    assert set(branches.values()) == {"email", "sms", "control"}


def test_cheap_items_do_not_enter_and_orders_convert() -> None:
    h = JourneyHarness()
    h.publish(cart())
    customer(h, "cheap")
    customer(h, "buyer")
    h.track("cheap", "Product Added", {"price": 5})
    h.track("buyer", "Product Added", {"price": 50})
    h.advance(ms=10 * 60_000)
    h.track("buyer", "Order Completed", {"total": 50})
    h.advance(days=3)
    assert h.sent == []
    assert h.stores.runs.history(h.profile("cheap").id, 10)[0] == []
    (instance,), _ = h.stores.runs.history(h.profile("buyer").id, 10)
    assert instance.status == "converted"


def test_reentry_after_exit_only() -> None:
    h = JourneyHarness()
    h.publish(cart())
    customer(h, "u")
    h.track("u", "Product Added", {"price": 50})
    h.track("u", "Product Added", {"price": 60})  # already inside: refused
    assert len(h.stores.runs.history(h.profile("u").id, 10)[0]) == 1
    h.track("u", "Order Completed", {})
    h.track("u", "Product Added", {"price": 70})  # after exit: enters again
    statuses = sorted(i.status for i in h.stores.runs.history(h.profile("u").id, 10)[0])
    assert statuses == ["active", "converted"]


def welcome(category: str = "marketing", priority: int = 50, jid: str = "welcome") -> Journey:
    return simple(
        jid,
        "Signed Up",
        Send(id="hello", channel="email", template=f"{jid}_mail"),
        policy=JourneyPolicy(category=category, priority=priority),
    )


def test_frequency_cap_across_journeys_is_recorded_with_its_reason() -> None:
    policy = Policy(
        quiet_hours=None,
        frequency_caps=(FrequencyCap(id="weekly", max=1, window_ms=7 * DAY, category="marketing"),),
    )
    h = JourneyHarness(policy=policy)
    h.publish(welcome(jid="one"))
    h.publish(welcome(jid="two"))
    customer(h, "sara", first_name="Sara")
    h.track("sara", "Signed Up")
    assert len(h.sent) == 1
    (held,) = [d for d in h.decisions("sara") if d.outcome == "suppressed"]
    assert held.rule == "frequency_cap:weekly" and "Sara" in held.detail


def test_transactional_messages_bypass_caps_and_marketing_consent() -> None:
    policy = Policy(
        quiet_hours=None,
        frequency_caps=(FrequencyCap(id="daily", max=0, window_ms=DAY),),
    )
    h = JourneyHarness(policy=policy)
    h.publish(welcome(category="transactional", jid="receipt"))
    h.publish(welcome(jid="promo"))
    customer(h, "u")
    pid = h.profile("u").id
    h.stores.delivery.set_consent(
        Consent(profile_id=pid, channel="email", category="*", subscribed=False, at=1)
    )
    h.track("u", "Signed Up")
    assert [m.subject for m in h.sent] == ["receipt_mail"]
    (promo,) = [d for d in h.decisions("u") if d.journey_id == "promo"]
    assert (promo.outcome, promo.rule) == ("suppressed", "consent")


def test_open_support_ticket_suppresses_promotions_until_resolved() -> None:
    policy = Policy(
        quiet_hours=None,
        suppressions=(
            Suppression(
                id="open_ticket", after_event="Ticket Opened", until_event="Ticket Resolved"
            ),
        ),
    )
    h = JourneyHarness(policy=policy)
    h.publish(welcome(jid="promo"))
    customer(h, "u")
    h.track("u", "Ticket Opened", {"subject": "broken kettle"})
    h.track("u", "Signed Up")
    assert h.sent == []
    (held,) = h.decisions("u")
    assert held.rule == "suppression:open_ticket"
    h.track("u", "Ticket Resolved")
    h.identify("u", {"again": True})
    h.send({"type": "track", "userId": "u", "event": "Signed Up", "messageId": "second"})
    assert h.sent == []  # reentry: never — the first entry was the only one
    assert [d.rule for d in h.decisions("u")] == ["suppression:open_ticket"]


def test_quiet_hours_delay_to_the_morning_in_the_customers_timezone() -> None:
    policy = Policy(quiet_hours=QuietHours(start="21:00", end="08:00"))
    # 2026-11-18 20:00 UTC is 23:30 in Tehran.
    h = JourneyHarness(start=1_795_464_000_000, policy=policy)
    h.publish(welcome())
    customer(h, "u", timezone="Asia/Tehran")
    h.track("u", "Signed Up")
    assert h.sent == []
    (delayed,) = h.decisions("u")
    assert delayed.outcome == "delayed" and delayed.until is not None
    h.advance_to(delayed.until)
    assert len(h.sent) == 1
    # 08:00 in Tehran is 04:30 UTC.
    assert (delayed.until - 1_795_464_000_000) == 8 * HOUR + 30 * 60_000


def test_priority_between_journeys_picks_the_higher_one() -> None:
    h = JourneyHarness(policy=Policy(quiet_hours=None, priority_window_ms=HOUR))
    h.publish(welcome(priority=10, jid="low"))
    h.publish(welcome(priority=90, jid="high"))
    customer(h, "u")
    h.track("u", "Signed Up")
    assert [m.subject for m in h.sent] == ["high_mail"]
    (low,) = [d for d in h.decisions("u") if d.journey_id == "low"]
    assert low.rule == "priority" and "high" in low.detail


def test_channel_failures_are_retried_with_backoff_then_dead_lettered() -> None:
    flaky = RecordingChannel("email", fail_next=2)
    h = JourneyHarness(channels={"email": flaky})
    h.publish(welcome())
    customer(h, "u")
    h.track("u", "Signed Up")
    assert h.sent == [] and flaky.attempts == 1
    h.advance(hours=2)
    assert flaky.attempts == 3 and len(h.sent) == 1
    dead = RecordingChannel("email", fail_next=10_000)
    d = JourneyHarness(channels={"email": dead})
    d.publish(welcome())
    customer(d, "u")
    d.track("u", "Signed Up")
    d.advance(days=30)
    (letter,) = d.stores.outbox.dead(10)
    assert letter.attempts == dead.attempts - 1
    failed = [e for e in d.stores.events.read(0, 1000) if e.name == "Message Failed"]
    assert len(failed) == 1
    assert [x.outcome for x in d.decisions("u")] == ["failed"]


def test_a_template_error_is_a_failed_send_not_a_crash() -> None:
    from safar.errors import ValidationError

    def broken(message: Any, profile: Any) -> Any:
        raise ValidationError("unknown filter 'shout'", "cart_reminder.html")

    h = JourneyHarness(render=broken)
    h.publish(welcome())
    customer(h, "u")
    h.track("u", "Signed Up")
    (failed,) = h.decisions("u")
    assert (failed.outcome, failed.rule) == ("failed", "template")
    assert "shout" in failed.detail


def test_webhook_reply_update_and_emitted_event_chain_journeys() -> None:
    calls: list[tuple[str, Any]] = []

    def crm(url: str, method: str, body: Any, headers: Any, timeout: int, key: str) -> Any:
        calls.append((url, body))
        return 200, {"data": {"tier": "gold"}}

    first = simple(
        "score",
        "Signed Up",
        Webhook(
            id="ask",
            url="https://crm.example/score",
            body={"email": "{{ profile.traits.email }}"},
            save={"tier": "data.tier"},
        ),
        UpdateProfile(id="mark", set={"tier": "gold"}, increment={"scored": 1}),
        Emit(id="tell", event="Lead Scored", properties={"tier": "gold"}),
    )
    second = simple("follow", "Lead Scored", Send(id="hi", channel="email", template="gold"))
    h = JourneyHarness(call_webhook=crm)
    h.publish(first)
    h.publish(second)
    customer(h, "u")
    h.track("u", "Signed Up")
    assert calls == [("https://crm.example/score", {"email": "u@shop.example"})]
    assert h.profile("u").traits["tier"] == "gold" and h.profile("u").traits["scored"] == 1
    assert [m.subject for m in h.sent] == ["gold"]
    (instance,), _ = (
        h.stores.runs.history(h.profile("u").id, 10)
        if False
        else (
            [i for i in h.stores.runs.history(h.profile("u").id, 10)[0] if i.journey_id == "score"],
            None,
        )
    )
    assert instance.context["tier"] == "gold" and instance.status == "exited"


def test_increments_in_one_batch_all_count() -> None:
    # Each Poke enters anew and adds one twice; all three are stepped in one batch, before the
    # profile processor has taken in the first increment, at one `now`.
    journey = Journey(
        id="poke",
        name="poke",
        entry=Entry(event="Poke", reentry="always"),
        steps=(
            UpdateProfile(id="bump", increment={"pokes": 1}),
            UpdateProfile(id="again", increment={"pokes": 1}),
        ),
    )
    h = JourneyHarness()
    h.publish(journey)
    customer(h, "u", pokes=10)
    h.stores.events.append(
        [
            h.event({"type": "track", "userId": "u", "event": "Poke", "messageId": f"p{n}"})
            for n in range(3)
        ]
    )
    h.run()
    assert h.profile("u").traits["pokes"] == 16


def test_wait_for_event_with_timeout() -> None:
    journey = simple(
        "survey",
        "Order Completed",
        Wait(
            id="delivered",
            event=EventMatch(event="Order Delivered", where="event.properties.ok == true"),
            timeout_ms=7 * DAY,
            timeout_next="late",
        ),
        Send(id="invite", channel="email", template="survey_invite", next=EXIT),
        Send(id="late", channel="email", template="late_delivery"),
    )
    h = JourneyHarness()
    h.publish(journey)
    customer(h, "a")
    customer(h, "b")
    h.track("a", "Order Completed")
    h.track("b", "Order Completed")
    h.advance(days=1)
    h.track("a", "Order Delivered", {"ok": True})
    h.track("b", "Order Delivered", {"ok": False})
    h.advance(days=7)
    assert sorted((m.to, m.subject) for m in h.sent) == [
        ("a@shop.example", "survey_invite"),
        ("b@shop.example", "late_delivery"),
    ]


def test_entry_by_api_request_is_deduplicated_by_request_id() -> None:
    journey = Journey(
        id="vip",
        name="VIP",
        entry=Entry(api=True, reentry="always", max_active=5),
        steps=(Send(id="hi", channel="email", template="vip"),),
    )
    h = JourneyHarness()
    h.publish(journey)
    customer(h, "u")
    for _ in range(2):
        h.send(
            {
                "type": "track",
                "userId": "u",
                "event": ENTRY_REQUEST_EVENT,
                "messageId": "entry:vip:r1",
                "properties": {"journey_id": "vip", "context": {"offer": 10}},
            }
        )
    assert len(h.sent) == 1
    (instance,) = h.stores.runs.history(h.profile("u").id, 10)[0]
    assert instance.context["offer"] == 10


def test_pause_stops_entries_and_stop_ends_customers_inside() -> None:
    from safar.runtime.catalog import set_status

    journey = simple(
        "nurture",
        "Signed Up",
        Wait(id="later", duration_ms=DAY),
        Send(id="hi", channel="email", template="n"),
    )
    h = JourneyHarness()
    h.publish(journey)
    customer(h, "in")
    customer(h, "late")
    h.track("in", "Signed Up")
    set_status(h.stores.journeys, "nurture", "pause", h.clock.now_ms())
    h.runtime.refresh()
    h.track("late", "Signed Up")
    assert h.stores.runs.history(h.profile("late").id, 10)[0] == []
    set_status(h.stores.journeys, "nurture", "stop", h.clock.now_ms())
    h.runtime.refresh()
    h.advance(days=2)
    assert h.sent == []
    (instance,) = h.stores.runs.history(h.profile("in").id, 10)[0]
    assert (instance.status, instance.exit_reason) == ("exited", "journey stopped")


@pytest.mark.parametrize(("mode", "template"), [("stay", "old"), ("move", "new")])
def test_a_new_version_keeps_or_moves_customers_inside(mode: str, template: str) -> None:
    def version(name: str) -> Journey:
        return simple(
            "nurture",
            "Signed Up",
            Wait(id="later", duration_ms=DAY),
            Send(id="hi", channel="email", template=name),
        )

    h = JourneyHarness()
    h.publish(version("old"))
    customer(h, "u")
    h.track("u", "Signed Up")
    h.publish(version("new"), Migration(mode=mode))  # type: ignore[arg-type]
    h.advance(days=2)
    assert [m.subject for m in h.sent] == [template]


def test_a_crash_between_send_and_settle_hands_over_the_same_key_again() -> None:
    """The dispatcher delivers at least once: when it dies after the channel accepted a message
    but before its receipt reached the log, the lease expires and the entry goes out again
    under the same idempotency key, which the provider uses to drop the repeat."""
    from safar.errors import StoreError
    from safar.runtime.dispatch import LEASE_MS

    email = RecordingChannel("email")
    h = JourneyHarness(channels={"email": email})
    h.publish(welcome())
    customer(h, "u")
    append = h.stores.events.append
    crashes = [1]

    def crash_once(events: Any) -> Any:
        if crashes and any(e.name == "Message Sent" for e in events):
            crashes.pop()
            raise StoreError("power cut")
        return append(events)

    h.stores.events.append = crash_once  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        h.track("u", "Signed Up")
    assert email.attempts == 1 and h.stores.outbox.pending() == 1
    h.restart_dispatcher()  # the process died: what it had not recorded is gone
    h.advance(ms=LEASE_MS)
    assert email.attempts == 2 and len(email.sent) == 1
    assert h.stores.outbox.pending() == 0
    sent_events = [e for e in h.stores.events.read(0, 1000) if e.name == "Message Sent"]
    assert len(sent_events) == 1  # the receipt appended twice is deduplicated by the log


def test_deliveries_the_store_could_not_record_are_recorded_first_and_not_sent_again() -> None:
    """A database restart while the dispatcher records what the channel accepted is not a
    crash: the dispatcher keeps the record and writes it on its next turn, so the message is not
    left for its claim to lapse and sent a second time."""
    from safar.errors import StoreError

    email = RecordingChannel("email")
    h = JourneyHarness(channels={"email": email})
    h.publish(welcome())
    customer(h, "u")
    settle = h.stores.outbox.settle
    refusals = [1]

    def refuse_once(settlements: Any) -> None:
        if refusals:
            refusals.pop()
            raise StoreError("terminating connection due to administrator command")
        settle(settlements)

    h.stores.outbox.settle = refuse_once  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        h.track("u", "Signed Up")
    assert h.stores.outbox.pending() == 1
    h.advance(days=1)
    assert not refusals and email.attempts == 1 and h.stores.outbox.pending() == 0
    sent_events = [e for e in h.stores.events.read(0, 1000) if e.name == "Message Sent"]
    assert len(sent_events) == 1


def test_a_lost_commit_is_redone_with_the_same_instances_and_keys() -> None:
    from safar.errors import StoreError

    h = JourneyHarness()
    h.publish(welcome())
    customer(h, "u")
    commit_all = h.stores.runs.commit_all
    crashes = [1]

    def crash_once(updates: Any) -> None:
        if crashes and any(update.outbox for update in updates):
            crashes.pop()
            raise StoreError("disk full")
        commit_all(updates)

    h.stores.runs.commit_all = crash_once  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        h.track("u", "Signed Up")
    assert h.sent == [] and h.stores.outbox.pending() == 0
    h.run()
    assert len(h.sent) == 1
    (instance,) = h.stores.runs.history(h.profile("u").id, 10)[0]
    assert h.sent[0].key.endswith(f"{instance.id}.1")


def test_scheduled_entry_enters_matching_profiles_at_each_tick() -> None:
    from datetime import UTC, datetime

    journey = Journey(
        id="monday-digest",
        name="Monday digest",
        entry=Entry(
            schedule="0 9 * * mon", where="profile.traits.plan == 'pro'", reentry="after_exit"
        ),
        steps=(Send(id="digest", channel="email", template="digest"),),
    )
    sunday = int(datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp() * 1000)
    h = JourneyHarness(start=sunday)
    customer(h, "pro1", plan="pro")
    customer(h, "pro2", plan="pro")
    customer(h, "free", plan="free")
    h.publish(journey)
    h.advance(hours=20)
    assert h.sent == []
    h.advance(hours=1)  # Monday 09:00
    assert sorted(m.to for m in h.sent) == ["pro1@shop.example", "pro2@shop.example"]
    h.advance(days=7)
    assert len(h.sent) == 4
    monday = int(datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp() * 1000)
    assert h.stores.runs.schedule_ticks() == {"monday-digest": monday + 7 * DAY}


def test_a_schedule_missed_while_down_runs_once() -> None:
    journey = Journey(
        id="hourly",
        name="Hourly",
        entry=Entry(schedule="0 * * * *", reentry="always", max_active=100),
        steps=(Send(id="ping", channel="console", template="ping"),),
    )
    h = JourneyHarness()
    customer(h, "u")
    h.publish(journey)
    h.clock.advance(hours=10)  # the runtime was not running meanwhile
    h.run()
    assert len(h.sent) == 1


def test_an_opt_out_made_before_a_merge_still_holds_after_it() -> None:
    h = JourneyHarness()
    h.publish(welcome())
    h.send({"type": "identify", "anonymousId": "visitor", "traits": {"email": "v@shop.example"}})
    visitor = h.stores.profiles.find(("anonymous_id", "visitor"))
    assert visitor is not None
    h.stores.delivery.set_consent(
        Consent(profile_id=visitor.id, channel="email", category="*", subscribed=False, at=1)
    )
    customer(h, "sara")
    h.send({"type": "alias", "userId": "sara", "previousId": "visitor"})
    merged = h.profile("sara")
    assert visitor.id in merged.merged_from or visitor.id == merged.id
    h.track("sara", "Signed Up")
    assert h.sent == []
    (decision,) = h.decisions("sara")
    assert decision.rule == "consent"


def _signed_up_together(h: JourneyHarness, customers: int) -> None:
    """``customers`` Signed Up events in one append, so one dispatcher claim holds every
    welcome message."""
    from safar.runtime.internal import internal_event

    now = h.clock.now_ms()
    h.stores.events.append(
        [
            internal_event(
                key=f"s{i}",
                type="track",
                identifier=("user_id", f"u{i}"),
                timestamp=now,
                received_at=now,
                name="Signed Up",
            )
            for i in range(customers)
        ]
    )


def _crash_once(method: Any) -> tuple[Any, list[int]]:
    """``method``, failing on its first call with StoreError; and the list of calls so far."""
    from safar.errors import StoreError

    calls: list[int] = []

    def crashing(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreError("power cut")
        return method(*args)

    return crashing, calls


def test_a_crash_repeats_at_most_the_deliveries_whose_receipts_were_not_logged() -> None:
    from safar.errors import StoreError
    from safar.runtime.dispatch import LEASE_MS, SETTLE_EVERY

    email = RecordingChannel("email")
    h = JourneyHarness(channels={"email": email})
    for i in range(3 * SETTLE_EVERY):
        customer(h, f"u{i}")
    h.runtime.refresh()
    h.publish(welcome())
    append = h.stores.events.append
    receipts: list[int] = []

    def crash_on_second_receipts(events: Any) -> Any:
        if any(e.name == "Message Sent" for e in events):
            receipts.append(1)
            if len(receipts) == 2:
                raise StoreError("power cut")
        return append(events)

    h.stores.events.append = crash_on_second_receipts  # type: ignore[method-assign]
    _signed_up_together(h, 3 * SETTLE_EVERY)
    with pytest.raises(StoreError):
        h.run()
    assert email.attempts == 2 * SETTLE_EVERY
    assert h.stores.outbox.pending() == 3 * SETTLE_EVERY  # nothing settled yet
    h.restart_dispatcher()  # the process died: what it had not recorded is gone
    h.advance(ms=LEASE_MS)
    assert len(email.sent) == 3 * SETTLE_EVERY
    # The first group's receipts were logged: not handed over again. The second's were not.
    assert email.attempts == 4 * SETTLE_EVERY
    assert h.stores.outbox.pending() == 0


def test_a_crash_before_the_settlement_sends_nothing_twice() -> None:
    from safar.errors import StoreError
    from safar.runtime.dispatch import LEASE_MS, SETTLE_EVERY

    email = RecordingChannel("email")
    h = JourneyHarness(channels={"email": email})
    customers = 3 * SETTLE_EVERY + 5
    for i in range(customers):
        customer(h, f"u{i}")
    h.runtime.refresh()
    h.publish(welcome())
    h.stores.outbox.settle, settles = _crash_once(h.stores.outbox.settle)  # type: ignore[method-assign]
    _signed_up_together(h, customers)
    with pytest.raises(StoreError):
        h.run()
    assert email.attempts == customers and settles == [1]  # one settlement, at the batch's end
    h.restart_dispatcher()
    h.advance(ms=LEASE_MS - 1)
    assert h.stores.outbox.pending() == customers  # still leased to the dispatcher that died
    h.advance(ms=1)
    # Every receipt was logged: every message is settled as sent, none handed over again.
    assert email.attempts == customers and h.stores.outbox.pending() == 0
    for i in range(customers):
        (decision,) = h.decisions(f"u{i}")
        assert decision.outcome == "sent" and "before a restart" in decision.detail
    # They count as sent for frequency caps and the like.
    profile_ids = [h.profile(f"u{i}").id for i in range(customers)]
    assert len(h.stores.delivery.sends(profile_ids, 0)) == customers


@pytest.mark.parametrize(("seconds_per_send", "later_claims"), [(1.0, 15), (0.0, 2000)])
def test_a_claim_takes_what_the_dispatcher_delivers_in_a_quarter_of_the_lease(
    monkeypatch: pytest.MonkeyPatch, seconds_per_send: float, later_claims: int
) -> None:
    """A slow channel (SMTP at tens of ms a message) must settle its batch long before the
    lease lapses and another dispatcher claims it again; a fast one claims big batches."""
    from safar.runtime import dispatch

    timer = [0.0]
    monkeypatch.setattr(dispatch, "monotonic", lambda: timer[0])

    class PacedChannel(RecordingChannel):
        def send(self, message: Any) -> Any:
            timer[0] += seconds_per_send
            return super().send(message)

    email = PacedChannel("email")
    h = JourneyHarness(channels={"email": email})
    customers = dispatch.FIRST_CLAIM + 30
    for i in range(customers):
        customer(h, f"u{i}")
    h.runtime.refresh()
    h.publish(welcome())
    claim = h.stores.outbox.claim
    limits: list[int] = []

    def recording_claim(now: int, limit: int, owner: str, lease_ms: int) -> Any:
        limits.append(limit)
        return claim(now, limit, owner, lease_ms)

    h.stores.outbox.claim = recording_claim  # type: ignore[method-assign]
    _signed_up_together(h, customers)
    h.run()
    assert len(email.sent) == customers
    # 60 s lease / 4 at 1 s a message: 15 a claim after the first.
    assert limits[0] == dispatch.FIRST_CLAIM
    assert set(limits[1:]) == {later_claims}
