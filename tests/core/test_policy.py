"""The policy gate: each rule alone, their order, the transactional bypass, and batches."""

from __future__ import annotations

from datetime import datetime
from itertools import combinations
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.core.policy import Facts, Recipient, Verdict, decide, decide_batch
from safar.model.messages import Consent, Message, SentRecord
from safar.model.policy import FrequencyCap, Policy, QuietHours, Suppression

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def ms(text: str) -> int:
    """An ISO instant with an explicit offset, as epoch milliseconds."""
    stamp = datetime.fromisoformat(text)
    assert stamp.tzinfo is not None
    return int(stamp.timestamp()) * 1000


NOW = ms("2026-11-20T12:00:00+00:00")  # midday in UTC: outside the default quiet hours
SARA = Recipient(
    profile_id="p1", traits={"first_name": "Sara", "timezone": "UTC"}, address="sara@example.com"
)
NO_FACTS = Facts()
POLICY = Policy()


def message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "key": "k1",
        "journey_id": "welcome",
        "version": 1,
        "step_id": "s1",
        "instance_id": "i1",
        "profile_id": "p1",
        "identifier": ("user_id", "u1"),
        "channel": "email",
        "template": "t",
        "category": "marketing",
        "priority": 50,
        "created_at": NOW,
    }
    values.update(fields)
    return Message(**values)


def sent(at: int, **fields: Any) -> SentRecord:
    values: dict[str, Any] = {
        "message_key": f"sent-{at}",
        "profile_id": "p1",
        "journey_id": "welcome",
        "channel": "email",
        "category": "marketing",
        "priority": 50,
        "at": at,
    }
    values.update(fields)
    return SentRecord(**values)


def choice(category: str, subscribed: bool, at: int, channel: str = "email") -> Consent:
    return Consent(
        profile_id="p1", channel=channel, category=category, subscribed=subscribed, at=at
    )


def in_zone(name: str) -> Recipient:
    return msgspec.structs.replace(SARA, traits={"first_name": "Sara", "timezone": name})


def rule_of(verdict: Verdict) -> str:
    return verdict.rule if verdict.kind != "go" else "go"


# -- 1. address ------------------------------------------------------------------------------


@pytest.mark.parametrize("address", [None, ""])
def test_no_address_is_suppressed(address: str | None) -> None:
    recipient = msgspec.structs.replace(SARA, address=address)
    verdict = decide(message(channel="sms"), recipient, NO_FACTS, POLICY, NOW)
    assert verdict == Verdict(kind="suppress", rule="no_address", detail="Sara has no sms address")


def test_a_plain_message_goes() -> None:
    assert decide(message(), SARA, NO_FACTS, POLICY, NOW) == Verdict(kind="go")


def test_without_a_name_the_detail_names_the_profile() -> None:
    nameless = Recipient(profile_id="p9", address=None)
    assert (
        decide(message(), nameless, NO_FACTS, POLICY, NOW).detail
        == "profile p9 has no email address"
    )


# -- 2. consent ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consents", "category", "expected"),
    [
        ([choice("*", False, 1)], "marketing", "consent"),
        ([choice("marketing", False, 1)], "marketing", "consent"),
        ([choice("marketing", False, 1)], "news", "go"),
        ([choice("*", False, 1, channel="sms")], "marketing", "go"),
        # The exact category beats "*", whichever is newer.
        ([choice("*", False, 5), choice("marketing", True, 1)], "marketing", "go"),
        ([choice("*", True, 5), choice("marketing", False, 1)], "marketing", "consent"),
        # Among equally specific choices the latest wins, whatever the list order.
        ([choice("marketing", False, 1), choice("marketing", True, 2)], "marketing", "go"),
        ([choice("marketing", True, 2), choice("marketing", False, 3)], "marketing", "consent"),
        ([choice("*", True, 9), choice("*", False, 3)], "marketing", "go"),
        # A tie is read as unsubscribed.
        ([choice("marketing", True, 4), choice("marketing", False, 4)], "marketing", "consent"),
        # Transactional ignores "*" but not an unsubscribe from itself.
        ([choice("*", False, 1)], "transactional", "go"),
        ([choice("transactional", False, 1)], "transactional", "consent"),
        (
            [choice("transactional", False, 1), choice("transactional", True, 2)],
            "transactional",
            "go",
        ),
    ],
)
def test_consent(consents: list[Consent], category: str, expected: str) -> None:
    facts = Facts(consents=consents)
    assert rule_of(decide(message(category=category), SARA, facts, POLICY, NOW)) == expected


def test_consent_detail_names_the_choice() -> None:
    facts = Facts(consents=[choice("*", False, ms("2026-11-02T08:30:00+00:00"))])
    verdict = decide(message(), SARA, facts, POLICY, NOW)
    assert (
        verdict.detail
        == "Sara unsubscribed from all email messages (2026-11-02 08:30 UTC, via api)"
    )


# -- 3. suppression --------------------------------------------------------------------------

RETURNS = Suppression(id="recent_return", event="Order Returned", within_ms=7 * DAY)
TICKET = Suppression(id="open_ticket", after_event="Ticket Opened", until_event="Ticket Resolved")
UNHAPPY = Suppression(id="unhappy", where="profile.nps < 7")


def suppressed_by(rules: tuple[Suppression, ...], facts: Facts, **fields: Any) -> str:
    policy = Policy(suppressions=rules)
    return rule_of(decide(message(**fields), SARA, facts, policy, NOW))


@pytest.mark.parametrize(
    ("held", "expected"),
    [({"unhappy": True}, "suppression:unhappy"), ({"unhappy": False}, "go"), ({}, "go")],
)
def test_a_where_rule_uses_the_runtimes_answer(held: dict[str, bool], expected: str) -> None:
    assert suppressed_by((UNHAPPY,), Facts(suppressed_by_condition=held)) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (NOW - 7 * DAY, "go"),  # exactly one window old: outside
        (NOW - 7 * DAY + 1, "suppression:recent_return"),
        (NOW, "suppression:recent_return"),
        (NOW + 1, "go"),  # not yet happened
    ],
)
def test_an_event_rule_looks_back_over_a_rolling_window(at: int, expected: str) -> None:
    facts = Facts(events=[("Order Returned", at), ("Order Completed", NOW)])
    assert suppressed_by((RETURNS,), facts) == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([("Ticket Opened", NOW - DAY)], "suppression:open_ticket"),
        ([("Ticket Opened", NOW - DAY), ("Ticket Resolved", NOW - HOUR)], "go"),
        ([("Ticket Opened", NOW - DAY), ("Ticket Resolved", NOW - DAY)], "go"),  # at: closes
        ([("Ticket Resolved", NOW - HOUR), ("Ticket Opened", NOW - DAY)], "go"),  # any order
        (
            [
                ("Ticket Opened", NOW - DAY),
                ("Ticket Resolved", NOW - HOUR),
                ("Ticket Opened", NOW - 1),
            ],
            "suppression:open_ticket",
        ),
        ([("Ticket Resolved", NOW - HOUR)], "go"),
        ([], "go"),
    ],
)
def test_an_open_until_closed_rule(events: list[tuple[str, int]], expected: str) -> None:
    assert suppressed_by((TICKET,), Facts(events=events)) == expected


def test_suppression_detail_names_rule_fact_and_time() -> None:
    facts = Facts(events=[("Ticket Opened", ms("2026-11-20T10:00:00+00:00"))])
    verdict = decide(message(), SARA, facts, Policy(suppressions=(TICKET,)), NOW)
    assert verdict.detail == (
        "Sara is held by open_ticket "
        "(Ticket Opened at 2026-11-20 10:00 UTC, no Ticket Resolved since)"
    )
    facts = Facts(events=[("Order Returned", ms("2026-11-18T09:15:00+00:00"))])
    verdict = decide(message(), SARA, facts, Policy(suppressions=(RETURNS,)), NOW)
    assert verdict.detail == (
        "Sara is held by recent_return (Order Returned at 2026-11-18 09:15 UTC, within 7 days)"
    )


def test_suppression_respects_categories_and_channels() -> None:
    facts = Facts(events=[("Ticket Opened", NOW - HOUR)])
    email_only = msgspec.structs.replace(TICKET, channels=("email",))
    assert suppressed_by((TICKET,), facts, category="news") == "go"
    assert suppressed_by((email_only,), facts, channel="sms") == "go"
    assert suppressed_by((email_only,), facts) == "suppression:open_ticket"
    news_too = msgspec.structs.replace(TICKET, categories=("marketing", "news"))
    assert suppressed_by((news_too,), facts, category="news") == "suppression:open_ticket"


def test_the_first_matching_suppression_in_policy_order_is_reported() -> None:
    facts = Facts(
        events=[("Ticket Opened", NOW - HOUR), ("Order Returned", NOW - HOUR)],
        suppressed_by_condition={"unhappy": True},
    )
    assert suppressed_by((RETURNS, TICKET, UNHAPPY), facts) == "suppression:recent_return"
    assert suppressed_by((UNHAPPY, TICKET, RETURNS), facts) == "suppression:unhappy"
    assert suppressed_by((TICKET, UNHAPPY), facts) == "suppression:open_ticket"


# -- 4. priority -----------------------------------------------------------------------------

WINDOW = Policy(priority_window_ms=DAY)


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        (sent(NOW - HOUR, journey_id="winback", priority=80), "priority"),
        (sent(NOW - HOUR, journey_id="winback", priority=50), "priority"),  # a tie yields
        (sent(NOW - HOUR, journey_id="winback", priority=49), "go"),
        (sent(NOW - HOUR, journey_id="welcome", priority=90), "go"),  # same journey
        (sent(NOW - HOUR, journey_id="winback", priority=90, category="news"), "go"),
        (sent(NOW - HOUR, journey_id="winback", priority=90, channel="sms"), "priority"),
        (sent(NOW - DAY, journey_id="winback", priority=90), "go"),  # one window old
        (sent(NOW - DAY + 1, journey_id="winback", priority=90), "priority"),
    ],
)
def test_priority(other: SentRecord, expected: str) -> None:
    assert rule_of(decide(message(), SARA, Facts(sends=[other]), WINDOW, NOW)) == expected


def test_priority_needs_a_window() -> None:
    facts = Facts(sends=[sent(NOW - HOUR, journey_id="winback", priority=90)])
    assert decide(message(), SARA, facts, POLICY, NOW).kind == "go"


def test_priority_detail_names_the_strongest_other_journey() -> None:
    facts = Facts(
        sends=[
            sent(NOW - 2 * HOUR, journey_id="cart", priority=70),
            sent(ms("2026-11-20T09:00:00+00:00"), journey_id="winback", priority=90),
            sent(NOW - HOUR, journey_id="browse", priority=60),
        ]
    )
    assert decide(message(), SARA, facts, WINDOW, NOW).detail == (
        "Sara got a marketing message from journey winback (priority 90, this one 50) "
        "at 2026-11-20 09:00 UTC, within the 1 day priority window"
    )


# -- 5. frequency caps -----------------------------------------------------------------------

WEEKLY = FrequencyCap(
    id="weekly_email", max=2, window_ms=7 * DAY, category="marketing", channel="email"
)


@pytest.mark.parametrize(
    ("sends", "expected"),
    [
        ([sent(NOW - DAY)], "go"),
        ([sent(NOW - DAY), sent(NOW - 2 * DAY)], "frequency_cap:weekly_email"),
        ([sent(NOW - DAY), sent(NOW - 7 * DAY)], "go"),  # exactly one window old: outside
        ([sent(NOW - DAY), sent(NOW - 7 * DAY + 1)], "frequency_cap:weekly_email"),
        ([sent(NOW - DAY), sent(NOW - DAY, channel="sms")], "go"),
        ([sent(NOW - DAY), sent(NOW - DAY, category="news")], "go"),
        ([sent(NOW - DAY), sent(NOW - DAY, journey_id="winback")], "frequency_cap:weekly_email"),
    ],
)
def test_frequency_cap_counts_a_rolling_window(sends: list[SentRecord], expected: str) -> None:
    policy = Policy(frequency_caps=(WEEKLY,))
    assert rule_of(decide(message(), SARA, Facts(sends=sends), policy, NOW)) == expected


def test_a_cap_without_category_or_channel_counts_everything() -> None:
    daily = FrequencyCap(id="daily", max=2, window_ms=DAY)
    facts = Facts(
        sends=[sent(NOW - HOUR, channel="sms"), sent(NOW - HOUR, category="transactional")]
    )
    policy = Policy(frequency_caps=(daily,))
    verdict = decide(message(category="news", channel="in_app"), SARA, facts, policy, NOW)
    assert verdict.rule == "frequency_cap:daily"
    assert verdict.detail == "Sara already got 2 messages in the last 1 day (daily allows 2)"


def test_a_cap_for_another_category_or_channel_does_not_apply() -> None:
    facts = Facts(sends=[sent(NOW - DAY), sent(NOW - DAY)])
    policy = Policy(frequency_caps=(WEEKLY,))
    assert decide(message(category="news"), SARA, facts, policy, NOW).kind == "go"
    assert decide(message(channel="sms"), SARA, facts, policy, NOW).kind == "go"


def test_the_first_full_cap_in_policy_order_is_reported() -> None:
    daily = FrequencyCap(id="daily", max=1, window_ms=DAY, channel="email")
    facts = Facts(sends=[sent(NOW - HOUR), sent(NOW - 2 * HOUR)])
    verdict = decide(message(), SARA, facts, Policy(frequency_caps=(WEEKLY, daily)), NOW)
    assert verdict.rule == "frequency_cap:weekly_email"
    assert verdict.detail == (
        "Sara already got 2 marketing email messages in the last 7 days (weekly_email allows 2)"
    )
    verdict = decide(message(), SARA, facts, Policy(frequency_caps=(daily, WEEKLY)), NOW)
    assert verdict.rule == "frequency_cap:daily"


# -- 6. quiet hours --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("20:59:59", False),
        ("21:00:00", True),
        ("23:59:59", True),
        ("00:00:00", True),
        ("07:59:59", True),
        ("08:00:00", False),
        ("12:00:00", False),
    ],
)
def test_quiet_hours_span_midnight(local: str, inside: bool) -> None:
    now = ms(f"2026-11-20T{local}+00:00")
    verdict = decide(message(created_at=now), SARA, NO_FACTS, POLICY, now)
    assert verdict.kind == ("delay" if inside else "go")


def test_quiet_hours_within_one_day() -> None:
    lunch = Policy(quiet_hours=QuietHours(start="12:00", end="14:00"))
    assert decide(message(), SARA, NO_FACTS, lunch, NOW - 1).kind == "go"
    verdict = decide(message(), SARA, NO_FACTS, lunch, NOW)
    assert (verdict.kind, verdict.until) == ("delay", NOW + 2 * HOUR)
    assert decide(message(), SARA, NO_FACTS, lunch, NOW + 2 * HOUR).kind == "go"
    never = Policy(quiet_hours=QuietHours(start="12:00", end="12:00"))
    assert decide(message(), SARA, NO_FACTS, never, NOW).kind == "go"


def test_quiet_hours_delay_to_their_end_in_tehran() -> None:
    now = ms("2026-11-20T21:30:00+03:30")
    verdict = decide(message(created_at=now), in_zone("Asia/Tehran"), NO_FACTS, POLICY, now)
    assert verdict == Verdict(
        kind="delay",
        rule="quiet_hours",
        detail="It is 21:30 in Asia/Tehran for Sara, inside quiet hours 21:00-08:00; "
        "delayed to 2026-11-21 04:30 UTC",
        until=ms("2026-11-21T08:00:00+03:30"),
    )


@pytest.mark.parametrize(
    ("now", "until"),
    [
        # Quiet hours (21:00-08:00) last 10 hours the night New York springs forward, 12 the
        # night it falls back.
        ("2026-03-07T22:00:00-05:00", "2026-03-08T08:00:00-04:00"),
        ("2026-03-08T01:59:00-05:00", "2026-03-08T08:00:00-04:00"),
        ("2026-03-08T03:00:00-04:00", "2026-03-08T08:00:00-04:00"),
        ("2026-10-31T22:00:00-04:00", "2026-11-01T08:00:00-05:00"),
        ("2026-11-01T01:30:00-04:00", "2026-11-01T08:00:00-05:00"),
        ("2026-11-01T01:30:00-05:00", "2026-11-01T08:00:00-05:00"),
    ],
)
def test_quiet_hours_across_new_york_dst(now: str, until: str) -> None:
    at = ms(now)
    verdict = decide(message(created_at=at), in_zone("America/New_York"), NO_FACTS, POLICY, at)
    assert (verdict.kind, verdict.until) == ("delay", ms(until))


def test_a_dst_night_is_shorter_or_longer() -> None:
    new_york = in_zone("America/New_York")
    for evening, hours in [("2026-03-07T22:00:00-05:00", 9), ("2026-10-31T22:00:00-04:00", 11)]:
        now = ms(evening)
        verdict = decide(message(created_at=now), new_york, NO_FACTS, POLICY, now)
        assert verdict.until == now + hours * HOUR


def test_a_missing_or_invalid_timezone_means_the_policys_default() -> None:
    now = ms("2026-11-20T18:00:00+00:00")  # 21:30 in Tehran, 18:00 in UTC
    tehran = Policy(default_timezone="Asia/Tehran")
    for recipient in [in_zone("Mars/Olympus"), Recipient(profile_id="p1", address="a@b.c")]:
        assert decide(message(), recipient, NO_FACTS, tehran, now).kind == "delay"
        assert decide(message(), recipient, NO_FACTS, POLICY, now).kind == "go"


MAX = QuietHours().max_delay_ms
LATE = ms("2026-11-20T22:00:00+00:00")  # ten hours before quiet hours end


@pytest.mark.parametrize(
    ("fields", "policy", "expected"),
    [
        ({}, POLICY, "delay"),
        ({"quiet_hours": "skip"}, POLICY, "suppress"),
        ({"quiet_hours": "ignore"}, POLICY, "go"),
        ({"category": "transactional"}, POLICY, "go"),
        ({}, Policy(quiet_hours=None), "go"),
        # The end must be within the maximum delay ...
        ({}, Policy(quiet_hours=QuietHours(max_delay_ms=10 * HOUR)), "delay"),
        ({}, Policy(quiet_hours=QuietHours(max_delay_ms=10 * HOUR - 1)), "suppress"),
        # ... and a message already that old is skipped rather than delayed again.
        ({"created_at": LATE - MAX}, POLICY, "delay"),
        ({"created_at": LATE - MAX - 1}, POLICY, "suppress"),
    ],
)
def test_delay_skip_and_max_delay(fields: dict[str, Any], policy: Policy, expected: str) -> None:
    verdict = decide(message(**{"created_at": LATE, **fields}), SARA, NO_FACTS, policy, LATE)
    assert verdict.kind == expected
    if expected != "go":
        assert verdict.rule == "quiet_hours"
    assert verdict.until == (ms("2026-11-21T08:00:00+00:00") if expected == "delay" else None)


def test_skip_details_say_why() -> None:
    skip = decide(message(quiet_hours="skip"), SARA, NO_FACTS, POLICY, LATE)
    assert skip.detail == (
        "It is 22:00 in UTC for Sara, inside quiet hours 21:00-08:00; "
        "skipped: its journey skips messages caught by quiet hours"
    )
    old = decide(message(created_at=LATE - 13 * HOUR), SARA, NO_FACTS, POLICY, LATE)
    assert old.detail.endswith(
        "the message dates from 2026-11-20 09:00 UTC, more than 12 hours ago"
    )
    far = Policy(quiet_hours=QuietHours(max_delay_ms=2 * HOUR))
    late = decide(message(created_at=LATE), SARA, NO_FACTS, far, LATE)
    assert late.detail.endswith(
        "they end at 2026-11-21 08:00 UTC, more than the 2 hours maximum delay away"
    )


# -- the order -------------------------------------------------------------------------------

ORDER = (
    "no_address",
    "consent",
    "suppression:recent_return",
    "priority",
    "frequency_cap:daily",
    "quiet_hours",
)
CHECKS = dict.fromkeys(ORDER[2:], True)  # the rules transactional messages skip


def breaking(
    broken: frozenset[str], category: str = "marketing"
) -> tuple[Message, Recipient, Facts, Policy]:
    """A message that breaks exactly the rules in ``broken``, each through its own fact."""
    sends = (
        [sent(NOW - HOUR, journey_id="winback", priority=90, category=category)]
        if "priority" in broken
        else []
    )
    if "frequency_cap:daily" in broken:
        sends += [sent(NOW - HOUR, category=category) for _ in range(3)]  # its own journey
    facts = Facts(
        consents=[choice(category, False, 1)] if "consent" in broken else [],
        sends=sends,
        events=[("Order Returned", NOW - HOUR)] if "suppression:recent_return" in broken else [],
    )
    recipient = in_zone("Asia/Tokyo" if "quiet_hours" in broken else "UTC")  # 21:00 in Tokyo
    if "no_address" in broken:
        recipient = msgspec.structs.replace(recipient, address=None)
    policy = Policy(
        suppressions=(msgspec.structs.replace(RETURNS, categories=(category,)),),
        priority_window_ms=DAY,
        frequency_caps=(FrequencyCap(id="daily", max=3, window_ms=DAY),),
    )
    return message(category=category), recipient, facts, policy


SUBSETS = [frozenset(c) for n in range(len(ORDER) + 1) for c in combinations(ORDER, n)]


@pytest.mark.parametrize("broken", SUBSETS, ids=lambda s: "+".join(sorted(s)) or "none")
def test_the_first_broken_rule_in_the_order_decides(broken: frozenset[str]) -> None:
    verdict = decide(*breaking(broken), now=NOW)
    expected = next((rule for rule in ORDER if rule in broken), "go")
    assert rule_of(verdict) == expected
    assert verdict.kind == {"go": "go", "quiet_hours": "delay"}.get(expected, "suppress")


@pytest.mark.parametrize("broken", SUBSETS, ids=lambda s: "+".join(sorted(s)) or "none")
def test_transactional_messages_heed_only_address_and_their_own_consent(
    broken: frozenset[str],
) -> None:
    verdict = decide(*breaking(broken, category="transactional"), now=NOW)
    expected = next((rule for rule in ORDER if rule in broken and rule not in CHECKS), "go")
    assert rule_of(verdict) == expected


# -- decisions -------------------------------------------------------------------------------


def test_a_verdict_becomes_a_decision() -> None:
    m = message(key="k7", step_id="offer", channel="sms")
    decision = Verdict(kind="delay", rule="quiet_hours", detail="d", until=NOW + HOUR).decision(
        m, NOW
    )
    assert (decision.message_key, decision.step_id, decision.channel, decision.at) == (
        "k7",
        "offer",
        "sms",
        NOW,
    )
    assert (decision.outcome, decision.rule, decision.detail, decision.until) == (
        "delayed",
        "quiet_hours",
        "d",
        NOW + HOUR,
    )
    assert Verdict(kind="go").decision(m, NOW).outcome == "sent"
    assert Verdict(kind="suppress", rule="consent").decision(m, NOW).outcome == "suppressed"


# -- batches ---------------------------------------------------------------------------------


def verdicts_by_key(
    messages: list[Message], policy: Policy, facts: dict[str, Facts] | None = None
) -> dict[str, str]:
    recipients = [msgspec.structs.replace(SARA, profile_id=m.profile_id) for m in messages]
    verdicts = decide_batch(messages, recipients, facts or {}, policy, NOW)
    return {m.key: rule_of(v) for m, v in zip(messages, verdicts, strict=True)}


def test_in_a_batch_the_highest_priority_goes_and_names_itself_to_the_others() -> None:
    messages = [
        message(key="browse", journey_id="browse", priority=60),
        message(key="winback", journey_id="winback", priority=80, created_at=NOW - MINUTE),
        message(key="cart", journey_id="cart", priority=80, created_at=NOW - HOUR),
        message(key="receipt", journey_id="orders", priority=10, category="transactional"),
        message(key="news", journey_id="digest", priority=10, category="news"),
    ]
    recipients = [SARA] * len(messages)
    verdicts = decide_batch(messages, recipients, {}, WINDOW, NOW)
    assert [rule_of(v) for v in verdicts] == ["priority", "priority", "go", "go", "go"]
    assert "from journey cart (priority 80, this one 60)" in verdicts[0].detail
    assert "from journey cart (priority 80, this one 80)" in verdicts[1].detail


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"created_at": NOW - 1}, {"created_at": NOW}),  # older first
        ({"journey_id": "a"}, {"journey_id": "b"}),  # then journey id
    ],
)
def test_batch_priority_ties_break_on_age_then_journey(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    a = message(**{"key": "x1", "journey_id": "j1", **first})
    b = message(**{"key": "x2", "journey_id": "j2", **second})
    for messages in ([a, b], [b, a]):
        assert verdicts_by_key(messages, WINDOW) == {"x1": "go", "x2": "priority"}


def test_messages_that_go_count_against_caps_for_the_rest_of_the_batch() -> None:
    policy = Policy(frequency_caps=(FrequencyCap(id="daily", max=2, window_ms=DAY),))
    messages = [message(key=f"k{i}", created_at=NOW - i) for i in range(3)]
    messages.append(message(key="other", profile_id="p2"))
    facts = {"p2": Facts(sends=[sent(NOW - HOUR, profile_id="p2")])}
    assert verdicts_by_key(messages, policy, facts) == {
        "k2": "go",
        "k1": "go",
        "k0": "frequency_cap:daily",
        "other": "go",
    }


def test_only_messages_that_go_count() -> None:
    messages = [
        message(key="loud", journey_id="a", priority=90, quiet_hours="skip"),
        message(key="quiet", journey_id="b", priority=10, quiet_hours="ignore"),
    ]
    night = ms("2026-11-20T23:00:00+00:00")
    policy = Policy(
        priority_window_ms=DAY, frequency_caps=(FrequencyCap(id="one", max=1, window_ms=DAY),)
    )
    verdicts = decide_batch(messages, [SARA, SARA], {}, policy, night)
    assert [rule_of(v) for v in verdicts] == ["quiet_hours", "go"]


def test_a_batch_needs_one_recipient_per_message() -> None:
    with pytest.raises(ValueError, match="one recipient per message; got 2 messages and 1"):
        decide_batch([message(), message(key="k2")], [SARA], {}, POLICY, NOW)


BATCH_POLICY = Policy(
    priority_window_ms=DAY,
    frequency_caps=(
        FrequencyCap(id="daily", max=2, window_ms=DAY),
        FrequencyCap(id="email", max=3, window_ms=7 * DAY, category="marketing", channel="email"),
    ),
)
PROFILES = {
    "p1": msgspec.structs.replace(SARA, profile_id="p1"),  # noon: outside quiet hours
    "p2": Recipient(profile_id="p2", traits={"timezone": "Asia/Tokyo"}, address="x"),  # 21:00
}


@st.composite
def some_messages(draw: st.DrawFn, categories: tuple[str, ...]) -> list[Message]:
    count = draw(st.integers(1, 8))
    return [
        message(
            key=f"k{i}",
            profile_id=draw(st.sampled_from(sorted(PROFILES))),
            journey_id=draw(st.sampled_from(["a", "b", "c"])),
            priority=draw(st.sampled_from([10, 50, 90])),
            created_at=NOW - draw(st.integers(0, 3)) * HOUR,
            channel=draw(st.sampled_from(["email", "sms"])),
            category=draw(st.sampled_from(categories)),
            quiet_hours=draw(st.sampled_from(["delay", "skip", "ignore"])),
        )
        for i in range(count)
    ]


@given(
    data=st.data(),
    messages=some_messages(("marketing", "news", "transactional")),
    earlier=st.lists(st.sampled_from(["a", "b", "d"]), max_size=3),
)
def test_batch_verdicts_do_not_depend_on_input_order(
    data: st.DataObject, messages: list[Message], earlier: list[str]
) -> None:
    facts = {
        "p1": Facts(
            sends=[
                sent(NOW - HOUR * (i + 1), journey_id=j, priority=50) for i, j in enumerate(earlier)
            ]
        )
    }
    order = data.draw(st.permutations(range(len(messages))))
    shuffled = [messages[i] for i in order]

    def run(batch: list[Message]) -> dict[str, Verdict]:
        recipients = [PROFILES[m.profile_id] for m in batch]
        verdicts = decide_batch(batch, recipients, facts, BATCH_POLICY, NOW)
        return {m.key: v for m, v in zip(batch, verdicts, strict=True)}

    assert run(messages) == run(shuffled)


@settings(max_examples=50)
@given(
    rounds=st.lists(
        st.tuples(st.integers(0, 30), some_messages(("marketing", "news"))), min_size=1, max_size=6
    ),
    window=st.sampled_from([0, HOUR]),
)
def test_caps_are_never_exceeded(rounds: list[tuple[int, list[Message]]], window: int) -> None:
    policy = msgspec.structs.replace(BATCH_POLICY, priority_window_ms=window, quiet_hours=None)
    sends: dict[str, list[SentRecord]] = {name: [] for name in PROFILES}
    now = NOW
    for n, (hours, messages) in enumerate(rounds):
        now += hours * HOUR
        batch = [msgspec.structs.replace(m, key=f"r{n}-{m.key}", created_at=now) for m in messages]
        facts = {name: Facts(sends=list(done)) for name, done in sends.items()}
        recipients = [PROFILES[m.profile_id] for m in batch]
        for m, verdict in zip(
            batch, decide_batch(batch, recipients, facts, policy, now), strict=True
        ):
            if verdict.kind == "go":
                sends[m.profile_id].append(
                    SentRecord(
                        message_key=m.key,
                        profile_id=m.profile_id,
                        journey_id=m.journey_id,
                        channel=m.channel,
                        category=m.category,
                        priority=m.priority,
                        at=now,
                    )
                )
    for done in sends.values():
        for cap in policy.frequency_caps:
            counted = [
                s.at
                for s in done
                if cap.category in (None, s.category) and cap.channel in (None, s.channel)
            ]
            for t in counted:
                assert sum(t - cap.window_ms < u <= t for u in counted) <= cap.max, cap.id
