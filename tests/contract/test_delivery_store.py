"""The :class:`safar.ports.DeliveryStore` contract, run against every adapter."""

from __future__ import annotations

import pytest

from safar.errors import ValidationError
from safar.model.messages import Consent, Decision, InboxItem, Outcome, SentRecord
from safar.ports import JourneyUpdate, Settlement
from safar.testing import FakeClock

from .conftest import Backend, JourneyStores, outbox_entry


def decision(key: str, at: int, profile_id: str = "p1", outcome: Outcome = "sent") -> Decision:
    return Decision(
        message_key=key,
        profile_id=profile_id,
        journey_id="welcome",
        step_id="send_1",
        channel="email",
        category="marketing",
        at=at,
        outcome=outcome,
        rule="" if outcome == "sent" else "consent",
    )


def sent(key: str, at: int, profile_id: str = "p1", channel: str = "email") -> SentRecord:
    return SentRecord(
        message_key=key,
        profile_id=profile_id,
        journey_id="welcome",
        channel=channel,
        category="marketing",
        priority=50,
        at=at,
    )


def settle(stores: JourneyStores, *settlements: Settlement) -> None:
    """Commit an outbox entry per settlement, claim them all and settle them."""
    stores.runs.commit(JourneyUpdate(outbox=[outbox_entry(s.key, due=0) for s in settlements]))
    assert len(stores.outbox.claim(0, len(settlements), "d1", 1000)) == len(settlements)
    stores.outbox.settle(settlements)


def consent(profile_id: str, subscribed: bool, at: int, category: str = "marketing") -> Consent:
    return Consent(
        profile_id=profile_id, channel="email", category=category, subscribed=subscribed, at=at
    )


def item(id_: str, created_at: int, profile_id: str = "p1") -> InboxItem:
    return InboxItem(
        id=id_,
        profile_id=profile_id,
        created_at=created_at,
        subject="خوش آمدید",
        text="欢迎 / مرحبا",
        data={"cta": "/start"},
    )


def test_an_empty_store(stores: JourneyStores) -> None:
    delivery = stores.delivery
    assert delivery.sends(["p1"], 0) == []
    assert delivery.decisions("p1", 10) == []
    assert delivery.consents(["p1"]) == []
    assert delivery.inbox("p1") == []
    assert delivery.mark_inbox("p1", "m1", "read", 5) is False


# -- sends and decisions --------------------------------------------------------------------------


def test_sends_of_the_profiles_since_a_time_newest_first(stores: JourneyStores) -> None:
    settle(
        stores,
        Settlement(key="a", status="done", sent=sent("a", 100)),
        Settlement(key="b", status="done", sent=sent("b", 300, "p2", "sms")),
        Settlement(key="c", status="done", sent=sent("c", 200)),
        Settlement(key="d", status="done", sent=sent("d", 400, "p3")),
        Settlement(key="e", status="done", decision=decision("e", 500, outcome="suppressed")),
    )
    delivery = stores.delivery
    assert delivery.sends(["p1", "p2"], 0) == [
        sent("b", 300, "p2", "sms"),
        sent("c", 200),
        sent("a", 100),
    ]
    assert delivery.sends(["p1"], 200) == [sent("c", 200)]  # at or after ``since``
    assert delivery.sends(["p1"], 201) == []
    assert delivery.sends(["p9"], 0) == []
    assert delivery.sends([], 0) == []


def test_sends_of_many_profiles(stores: JourneyStores) -> None:
    profiles = [f"p{n}" for n in range(1_100)]
    settle(
        stores,
        *(
            Settlement(key=f"k{n}", status="done", sent=sent(f"k{n}", 1000 + n, p))
            for n, p in enumerate(profiles)
        ),
    )
    found = stores.delivery.sends(profiles, 0)
    assert [s.at for s in found] == [1000 + n for n in reversed(range(1_100))]


def test_decisions_newest_first_up_to_the_limit(stores: JourneyStores) -> None:
    settle(
        stores,
        Settlement(key="a", status="done", decision=decision("a", 100)),
        Settlement(key="b", status="done", decision=decision("b", 300, outcome="suppressed")),
        Settlement(key="c", status="dead", decision=decision("c", 200, outcome="failed")),
        Settlement(key="d", status="done", decision=decision("d", 250, "p2")),
    )
    delivery = stores.delivery
    assert delivery.decisions("p1", 10) == [
        decision("b", 300, outcome="suppressed"),
        decision("c", 200, outcome="failed"),
        decision("a", 100),
    ]
    assert delivery.decisions("p1", 1) == [decision("b", 300, outcome="suppressed")]
    assert delivery.decisions("p1", 0) == []
    assert delivery.decisions("p2", 10) == [decision("d", 250, "p2")]


# -- consent --------------------------------------------------------------------------------------


def test_consent_keeps_the_latest_choice_by_time(stores: JourneyStores) -> None:
    delivery = stores.delivery
    delivery.set_consent(consent("p1", False, at=200))
    delivery.set_consent(consent("p1", True, at=100))  # older: ignored
    assert delivery.consents(["p1"]) == [consent("p1", False, at=200)]
    later = Consent(
        profile_id="p1",
        channel="email",
        category="marketing",
        subscribed=True,
        at=300,
        source="unsubscribe_link",
    )
    delivery.set_consent(later)
    assert delivery.consents(["p1"]) == [later]
    # A choice made at the same time as the stored one is not older: it is kept.
    delivery.set_consent(consent("p1", False, at=300))
    assert delivery.consents(["p1"]) == [consent("p1", False, at=300)]


def test_consent_is_kept_per_profile_channel_and_category(stores: JourneyStores) -> None:
    delivery = stores.delivery
    choices = [
        consent("p1", False, 10),
        consent("p1", True, 20, category="*"),
        Consent(profile_id="p1", channel="sms", category="marketing", subscribed=False, at=30),
        consent("p2", False, 40),
        consent("p3", True, 50),
    ]
    for choice in choices:
        delivery.set_consent(choice)
    found = delivery.consents(["p1", "p2", "nobody"])
    key = lambda c: (c.profile_id, c.channel, c.category)  # noqa: E731
    assert sorted(found, key=key) == sorted(choices[:4], key=key)
    assert delivery.consents([]) == []


# -- inbox ----------------------------------------------------------------------------------------


def test_inbox_items_are_added_once_and_listed_newest_first(stores: JourneyStores) -> None:
    delivery = stores.delivery
    delivery.add_inbox(item("m1", 100))
    delivery.add_inbox(item("m3", 300))
    delivery.add_inbox(item("m2", 200))
    delivery.add_inbox(item("other", 250, "p2"))
    changed = item("m1", 999)
    changed.subject = "again"
    delivery.add_inbox(changed)  # an id already stored: skipped
    assert delivery.inbox("p1") == [item("m3", 300), item("m2", 200), item("m1", 100)]
    assert delivery.inbox("p2") == [item("other", 250, "p2")]


def test_marking_inbox_items(stores: JourneyStores) -> None:
    delivery = stores.delivery
    for n in (1, 2, 3):
        delivery.add_inbox(item(f"m{n}", n * 100))
    assert delivery.mark_inbox("p1", "m1", "read", 500) is True
    assert delivery.mark_inbox("p1", "m2", "dismiss", 600) is True
    assert delivery.mark_inbox("p1", "m2", "dismiss", 700) is True  # again: harmless
    read = item("m1", 100)
    read.read_at = 500
    dismissed = item("m2", 200)
    dismissed.dismissed_at = delivery.inbox("p1", include_dismissed=True)[1].dismissed_at
    assert dismissed.dismissed_at is not None
    assert delivery.inbox("p1") == [item("m3", 300), read]
    assert delivery.inbox("p1", include_dismissed=True) == [item("m3", 300), dismissed, read]


def test_marking_an_item_the_profile_does_not_have(stores: JourneyStores) -> None:
    delivery = stores.delivery
    delivery.add_inbox(item("m1", 100, "p1"))
    assert delivery.mark_inbox("p2", "m1", "read", 500) is False
    assert delivery.mark_inbox("p1", "nope", "dismiss", 500) is False
    assert delivery.inbox("p1") == [item("m1", 100)]
    with pytest.raises(ValidationError):
        delivery.mark_inbox("p1", "m1", "delete", 500)


def test_stored_inbox_items_are_copies(stores: JourneyStores) -> None:
    mine = item("m1", 100)
    stores.delivery.add_inbox(mine)
    mine.data["cta"] = "/changed"
    stores.delivery.inbox("p1")[0].data["cta"] = "/changed too"
    assert stores.delivery.inbox("p1") == [item("m1", 100)]


def test_delivery_records_outlive_the_process(journey_backend: Backend, clock: FakeClock) -> None:
    now = clock.now_ms()
    first = journey_backend.journey_stores()
    settle(
        first, Settlement(key="a", status="done", decision=decision("a", now), sent=sent("a", now))
    )
    first.delivery.set_consent(consent("p1", False, now))
    first.delivery.add_inbox(item("m1", now))
    first.delivery.mark_inbox("p1", "m1", "read", now + 1)
    journey_backend.shutdown()
    again = journey_backend.journey_stores().delivery
    assert again.sends(["p1"], now) == [sent("a", now)]
    assert again.decisions("p1", 10) == [decision("a", now)]
    assert again.consents(["p1"]) == [consent("p1", False, now)]
    assert [(i.id, i.read_at) for i in again.inbox("p1")] == [("m1", now + 1)]
