"""The policy file: every field read into the model, and every mistake named by line and field."""

from __future__ import annotations

import textwrap

import pytest

from safar.definitions.policy import DEFAULT_POLICY, load_policy, parse_policy
from safar.definitions.problems import DefinitionError
from safar.definitions.validate import POLICY_NAMES, cel_checker, validate_policy
from safar.model.policy import FrequencyCap, Policy, QuietHours, Suppression

FORMS = "give segment, or where, or event (and within), or after_event with until_event"
HOUR = 3_600_000
DAY = 24 * HOUR

FULL = textwrap.dedent(
    """\
    default_timezone: Asia/Tehran
    quiet_hours: {start: 22:00, end: 08:30, max_delay: 10h}
    frequency_caps:
      - {id: marketing_weekly, max: 3, per: 7d, category: marketing}
      - {id: sms_daily, max: 1, per: 1d, channel: sms}
    suppressions:
      - id: open_ticket
        after_event: Ticket Opened
        until_event: Ticket Resolved
      - id: recent_return
        event: Order Returned
        within: 7d
        categories: [marketing, upsell]
        channels: [email, sms]
      - id: unhappy
        where: profile.traits.nps < 7
      - {id: ever_complained, event: Complaint Filed, channels: [sms]}
    priority_window: 4h
    transactional_categories: [transactional, security]
    """
)


def test_every_field() -> None:
    assert parse_policy(FULL, "policy.yaml") == Policy(
        default_timezone="Asia/Tehran",
        quiet_hours=QuietHours(start="22:00", end="08:30", max_delay_ms=10 * HOUR),
        frequency_caps=(
            FrequencyCap(id="marketing_weekly", max=3, window_ms=7 * DAY, category="marketing"),
            FrequencyCap(id="sms_daily", max=1, window_ms=DAY, channel="sms"),
        ),
        suppressions=(
            Suppression(
                id="open_ticket", after_event="Ticket Opened", until_event="Ticket Resolved"
            ),
            Suppression(
                id="recent_return",
                event="Order Returned",
                within_ms=7 * DAY,
                categories=("marketing", "upsell"),
                channels=("email", "sms"),
            ),
            Suppression(id="unhappy", where="profile.traits.nps < 7"),
            Suppression(id="ever_complained", event="Complaint Filed", channels=("sms",)),
        ),
        priority_window_ms=4 * HOUR,
        transactional_categories=("transactional", "security"),
    )


def test_an_empty_file_is_the_default_policy() -> None:
    assert parse_policy("") == DEFAULT_POLICY
    assert parse_policy("# nothing yet\n") == Policy()
    assert parse_policy("default_timezone: UTC\n") == Policy()


@pytest.mark.parametrize("off", ["null", "false", "~"])
def test_quiet_hours_can_be_turned_off(off: str) -> None:
    assert parse_policy(f"quiet_hours: {off}\n").quiet_hours is None


def test_quiet_hours_fields_default() -> None:
    assert parse_policy("quiet_hours: {start: '20:00'}\n").quiet_hours == QuietHours(start="20:00")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n", [(1, "", "expected a mapping with default_timezone, quiet_hours")]),
        (
            "default_timezone: Mars/Olympus\n",
            [(1, "default_timezone", "unknown timezone 'Mars/Olympus'; use an IANA name")],
        ),
        ("default_timezone: Asia\n", [(1, "default_timezone", "unknown timezone 'Asia'")]),
        (
            "quiet_hour: {start: '21:00'}\n",
            [(1, "quiet_hour", "unknown key 'quiet_hour' (did you mean 'quiet_hours'?)")],
        ),
        (
            "quiet_hours: true\n",
            [(1, "quiet_hours", "expected a mapping with start, end, max_delay")],
        ),
        (
            "quiet_hours:\n  start: 9pm\n",
            [(2, "quiet_hours.start", "'9pm' is not a time of day; write HH:MM")],
        ),
        (
            "quiet_hours:\n  start: 21:00\n  end: 21:00\n",
            [(3, "quiet_hours.end", "start and end are the same; to turn quiet hours off write")],
        ),
        ("quiet_hours: {max_delay: long}\n", [(1, "quiet_hours.max_delay", "bad duration 'long'")]),
        (
            "frequency_caps:\n  - {id: a, max: 3}\n",
            [(2, "frequency_caps[0].per", "required but missing")],
        ),
        (
            "frequency_caps:\n  - {id: a, max: 0, per: 1d}\n",
            [(2, "frequency_caps[0].max", "must be at least 1; to stop messages altogether use")],
        ),
        (
            "frequency_caps:\n  - {id: a, max: 1, per: 0s}\n",
            [(2, "frequency_caps[0].per", "must be longer than 0s")],
        ),
        (
            "frequency_caps:\n  - {id: a, max: 1, per: 1d}\n  - {id: a, max: 2, per: 1d}\n",
            [(3, "frequency_caps[1].id", "duplicate frequency cap id 'a'")],
        ),
        (
            "frequency_caps:\n  - id: a\n    max: 1\n    per: 1d\n    channel: fax\n",
            [(5, "frequency_caps[0].channel", "unknown channel 'fax'; use email, sms")],
        ),
        (
            "frequency_caps:\n  - {id: a, max: three, per: 1d}\n",
            [(2, "frequency_caps[0].max", "expected a whole number, got the text 'three'")],
        ),
        (
            "suppressions:\n  - id: a\n",
            [
                (
                    2,
                    "suppressions[0]",
                    f"a suppression says when it holds: {FORMS}; found none",
                )
            ],
        ),
        (
            "suppressions:\n  - id: a\n    where: 'true'\n    event: X\n    within: 1d\n",
            [
                (
                    2,
                    "suppressions[0]",
                    f"a suppression says when it holds: {FORMS}; found where and event+within",
                )
            ],
        ),
        (
            "suppressions:\n  - id: a\n    within: 7d\n",
            [(2, "suppressions[0].event", "required with within")],
        ),
        (
            "suppressions:\n  - id: a\n    until_event: Resolved\n",
            [(2, "suppressions[0].after_event", "required with until_event")],
        ),
        (
            "suppressions:\n  - {id: a, where: 'true'}\n  - {id: a, where: 'true'}\n",
            [(3, "suppressions[1].id", "duplicate suppression id 'a'")],
        ),
        (
            "suppressions:\n  - {id: a, where: 'true', categories: []}\n",
            [(2, "suppressions[0].categories", "an empty list suppresses nothing")],
        ),
        (
            "suppressions:\n  - {id: a, where: 'true', categories: marketing}\n",
            [(2, "suppressions[0].categories", "expected a list, got the text 'marketing'")],
        ),
        (
            "suppressions:\n  - id: a\n    where: 'true'\n    channels: [email, fax]\n",
            [(4, "suppressions[0].channels", "unknown channel 'fax'")],
        ),
        (
            "suppressions:\n  - {id: a, event: X, within: 0s}\n",
            [(2, "suppressions[0].within", "must be longer than 0s")],
        ),
        ("priority_window: 1 hour\n", [(1, "priority_window", "bad duration '1 hour'")]),
        (
            "transactional_categories: [transactional, 7]\n",
            [(1, "transactional_categories[1]", "expected text, got the number 7")],
        ),
    ],
)
def test_problems_name_line_and_field(text: str, expected: list[tuple[int, str, str]]) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_policy(text, "config/policy.yaml")
    found = caught.value.problems
    assert [(p.file, p.line, p.field) for p in found] == [
        ("config/policy.yaml", line, field) for line, field, _ in expected
    ]
    for problem, (_, _, message) in zip(found, expected, strict=True):
        assert problem.message.startswith(message), problem.message


def test_suppression_conditions_are_checked_with_cel() -> None:
    text = (
        "suppressions:\n"
        "  - {id: ok, where: profile.traits.nps < 7}\n"
        "  - id: bad\n"
        "    where: event.name == 'x'\n"
    )
    policy, lines = load_policy(text, "policy.yaml")
    [problem] = validate_policy(
        policy, conditions=cel_checker(POLICY_NAMES), origin="policy.yaml", lines=lines
    )
    assert (problem.line, problem.field) == (4, "suppressions[1].where")
    assert problem.message.startswith("bad condition: ")
    assert "unknown variable 'event'" in problem.message
