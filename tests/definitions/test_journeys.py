"""Journey files: the example parses to the model, and every shape error names file, line and
field."""

from __future__ import annotations

import textwrap

import pytest

from safar.definitions.journeys import load_journey, parse_journey
from safar.definitions.problems import DefinitionError
from safar.model.journeys import (
    EXIT,
    Branch,
    Case,
    Emit,
    Entry,
    EventMatch,
    Exit,
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

HOUR = 3_600_000
DAY = 24 * HOUR


def test_the_example_parses(example_text: str) -> None:
    journey = parse_journey(example_text, "abandoned_cart.yaml")
    assert journey == Journey(
        id="abandoned-cart",
        name="Abandoned cart recovery",
        stage="purchase",
        origin="abandoned_cart.yaml",
        entry=Entry(
            line=4,
            event="Product Added",
            where="event.properties.price >= 10",
            reentry="after_exit",
        ),
        goal=Goal(line=8, event="Order Completed", within_ms=3 * DAY),
        policy=JourneyPolicy(line=11, category="marketing", priority=60),
        steps=(
            Wait(line=15, id="wait_for_order", duration_ms=HOUR),
            Split(
                line=17,
                id="split",
                seed="cart-2026-11",
                branches=(
                    SplitBranch(line=21, name="email", weight=45.0, next="send_email"),
                    SplitBranch(line=22, name="sms", weight=45.0, next="send_sms"),
                    SplitBranch(line=23, name="control", weight=10.0, next=EXIT),
                ),
            ),
            Send(
                line=24, id="send_email", channel="email", template="cart_reminder", next="wait_day"
            ),
            Send(
                line=27, id="send_sms", channel="sms", template="cart_reminder_sms", next="wait_day"
            ),
            Wait(line=30, id="wait_day", duration_ms=DAY),
            Branch(
                line=32,
                id="vip_check",
                cases=(Case(line=34, condition="profile.traits.vip == true", next="send_coupon"),),
                otherwise=EXIT,
            ),
            Send(line=37, id="send_coupon", channel="email", template="cart_coupon"),
        ),
    )


def test_every_step_kind_and_field() -> None:
    text = textwrap.dedent(
        """\
        id: everything
        name: Every field
        description: A journey using every field once.
        stage: retention
        context: {campaign: winter, tries: 0}
        entry:
          event: Signed Up
          where: event.properties.plan != "free"
          schedule: 0 9 * * mon
          api: true
          reentry: always
          cooldown: 1d12h
          max_active: 3
        goal: {event: Order Completed, where: event.properties.total > 0}
        policy: {category: onboarding, priority: 70, quiet_hours: skip}
        steps:
          - id: morning
            wait: {until: "09:00"}
            stage: consideration
            touchpoint: inbox
          - id: wait_click
            wait: {event: Email Clicked, where: event.properties.link == "cta", timeout: 2d,
                   timeout_next: bye}
            next: tag
          - id: tag
            update:
              set: {segment: engaged, tags: [a, b]}
              increment: {score: 5, rating: 0.5}
              unset: [churn_risk]
          - id: crm
            webhook:
              url: https://crm.example.com/hooks/{{ profile.id }}
              method: PUT
              body: {email: "{{ profile.traits.email }}", n: 1}
              headers: {X-Source: safar}
              save: {crm_id: data.id}
              timeout: 5s
          - id: chain
            emit: {event: Onboarded, properties: {via: journey}}
          - id: bye
            exit: {reason: timed out}
          - id: done
            exit: true
        """
    )
    journey = parse_journey(text)
    assert journey.origin is None
    assert journey.description == "A journey using every field once."
    assert journey.context == {"campaign": "winter", "tries": 0}
    assert journey.entry == Entry(
        line=6,
        event="Signed Up",
        where='event.properties.plan != "free"',
        schedule="0 9 * * mon",
        api=True,
        reentry="always",
        cooldown_ms=DAY + 12 * HOUR,
        max_active=3,
    )
    assert journey.goal == Goal(
        line=14, event="Order Completed", where="event.properties.total > 0"
    )
    assert journey.policy == JourneyPolicy(
        line=15, category="onboarding", priority=70, quiet_hours="skip"
    )
    assert journey.steps == (
        Wait(line=17, id="morning", until="09:00", stage="consideration", touchpoint="inbox"),
        Wait(
            line=21,
            id="wait_click",
            next="tag",
            event=EventMatch(
                line=22, event="Email Clicked", where='event.properties.link == "cta"'
            ),
            timeout_ms=2 * DAY,
            timeout_next="bye",
        ),
        UpdateProfile(
            line=25,
            id="tag",
            set={"segment": "engaged", "tags": ["a", "b"]},
            increment={"score": 5, "rating": 0.5},
            unset=("churn_risk",),
        ),
        Webhook(
            line=30,
            id="crm",
            url="https://crm.example.com/hooks/{{ profile.id }}",
            method="PUT",
            body={"email": "{{ profile.traits.email }}", "n": 1},
            headers={"X-Source": "safar"},
            save={"crm_id": "data.id"},
            timeout_ms=5000,
        ),
        Emit(line=38, id="chain", event="Onboarded", properties={"via": "journey"}),
        Exit(line=40, id="bye", reason="timed out"),
        Exit(line=42, id="done"),
    )


def test_load_journey_gives_lines_by_field(example_text: str) -> None:
    _, lines = load_journey(example_text)
    assert lines["steps[2].send.template"] == 25
    assert lines["steps[5].branch[1].else"] == 36
    assert lines["goal.within"] == 10


HEADER = "id: j\nname: J\nentry: {event: A}\nsteps:\n"  # steps start on line 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The journey itself
        ("- a\n", [(1, "", "expected a mapping with id, name, description, stage, context")]),
        ("", [(1, "", "expected a mapping with id, name")]),
        (
            "id: j\nentry: {event: A}\nsteps:\n  - {id: a, exit: true}\n",
            [(1, "name", "required but missing")],
        ),
        (
            HEADER.replace("name: J", "name: [J]") + "  - {id: a, exit: true}\n",
            [(2, "name", "expected text, got a list")],
        ),
        (
            HEADER.replace("id: j", "id: 42") + "  - {id: a, exit: true}\n",
            [(1, "id", "expected text, got the number 42; put it in quotes")],
        ),
        (
            HEADER.replace("name: J", "name: ' '") + "  - {id: a, exit: true}\n",
            [(2, "name", "must not be empty")],
        ),
        (
            HEADER.replace("name: J", 'name: "J\\0"') + "  - {id: a, exit: true}\n",
            [(2, "name", "must not hold the NUL character")],
        ),
        (HEADER + "  {id: a}\n", [(4, "steps", "expected a list, got a mapping")]),
        (
            HEADER + "  - {id: a, exit: true}\ndescripton: x\n",
            [
                (
                    6,
                    "descripton",
                    "unknown key 'descripton' (did you mean 'description'?); "
                    "allowed here: id, name, description",
                )
            ],
        ),
        (
            HEADER + "  - {id: a, exit: true}\ncontext: [a]\n",
            [(6, "context", "expected a mapping, got a list")],
        ),
        # entry, goal, policy
        (
            HEADER.replace("{event: A}", "{event: A, reentry: sometimes}")
            + "  - {id: a, exit: true}\n",
            [
                (
                    3,
                    "entry.reentry",
                    "expected one of never, after_exit, always, got the text 'sometimes'",
                )
            ],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, cooldown: 3x}") + "  - {id: a, exit: true}\n",
            [(3, "entry.cooldown", "bad duration '3x': use a number and a unit s, m, h, d or w")],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, cooldown: 3600}")
            + "  - {id: a, exit: true}\n",
            [(3, "entry.cooldown", "bad duration '3600'")],
        ),
        (
            HEADER.replace("{event: A}", "{api: 'yes'}") + "  - {id: a, exit: true}\n",
            [(3, "entry.api", "expected true or false, got the text 'yes'")],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, max_active: two}")
            + "  - {id: a, exit: true}\n",
            [(3, "entry.max_active", "expected a whole number, got the text 'two'")],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, max_active: true}")
            + "  - {id: a, exit: true}\n",
            [(3, "entry.max_active", "expected a whole number, got true")],
        ),
        (
            HEADER.replace("{event: A}", "A") + "  - {id: a, exit: true}\n",
            [(3, "entry", "expected a mapping")],
        ),
        (
            HEADER + "  - {id: a, exit: true}\ngoal: {within: 3d}\n",
            [(6, "goal.event", "required but missing")],
        ),
        (
            HEADER + "  - {id: a, exit: true}\ngoal:\n  event: B\n  within: soon\n",
            [(8, "goal.within", "bad duration 'soon'")],
        ),
        (
            HEADER + "  - {id: a, exit: true}\npolicy: {priority: high}\n",
            [(6, "policy.priority", "expected a whole number, got the text 'high'")],
        ),
        (
            HEADER + "  - {id: a, exit: true}\npolicy: {quiet_hours: later}\n",
            [(6, "policy.quiet_hours", "expected one of delay, skip, ignore")],
        ),
        # Steps
        (HEADER + "  - just text\n", [(5, "steps[0]", "expected a mapping with id, next, stage")]),
        (
            HEADER + "  - id: a\n    next: b\n",
            [
                (
                    5,
                    "steps[0]",
                    "a step needs one of: wait, branch, split, send, update, webhook, emit, exit",
                )
            ],
        ),
        (
            HEADER + "  - id: a\n    send: {channel: email, template: t}\n    wait: {for: 1h}\n",
            [(5, "steps[0]", "a step does one thing, this one has wait and send; make more steps")],
        ),
        (
            HEADER + "  - send: {channel: email, template: t}\n",
            [(5, "steps[0].id", "required but missing")],
        ),
        (
            HEADER + "  - id: a\n    exit: true\n    nxt: b\n",
            [
                (
                    7,
                    "steps[0].nxt",
                    "unknown key 'nxt' (did you mean 'next'?); "
                    "allowed here: id, next, stage, touchpoint, exit",
                )
            ],
        ),
        (
            HEADER + "  - id: a\n    id: b\n    exit: true\n",
            [(6, "", "duplicate key 'id' (first at line 5)")],
        ),
        (
            HEADER + "  - id: a\n    exit: true\n    next: b\n",
            [(7, "steps[0].next", "an exit step has no 'next': the journey ends here")],
        ),
        # wait
        (
            HEADER + "  - id: a\n    wait: 1h\n",
            [(6, "steps[0].wait", "expected a mapping with for, until, event")],
        ),
        (
            HEADER + "  - id: a\n    wait: {}\n",
            [(6, "steps[0].wait", "a wait needs one of for, until or event; found none")],
        ),
        (
            HEADER + "  - id: a\n    wait: {for: 1h, until: '09:00'}\n",
            [(6, "steps[0].wait", "a wait needs one of for, until or event; found for and until")],
        ),
        (
            HEADER + "  - id: a\n    wait: {for: 1x}\n",
            [(6, "steps[0].wait.for", "bad duration '1x'")],
        ),
        (
            HEADER + "  - id: a\n    wait:\n      event: Clicked\n",
            [(6, "steps[0].wait.timeout", "a wait for an event needs a timeout, e.g. timeout: 3d")],
        ),
        (
            HEADER + "  - id: a\n    wait:\n      for: 1h\n      timeout: 1d\n",
            [(8, "steps[0].wait.timeout", "'timeout' belongs to a wait for an event")],
        ),
        # branch
        (
            HEADER + "  - id: a\n    branch: {if: x, next: exit}\n",
            [(6, "steps[0].branch", "expected a list, got a mapping")],
        ),
        (
            HEADER + "  - id: a\n    branch:\n      - if: x\n",
            [(7, "steps[0].branch[0].next", "required but missing")],
        ),
        (
            HEADER + "  - id: a\n    branch:\n      - if: true\n        next: exit\n",
            [(7, "steps[0].branch[0].if", "expected text, got true; put it in quotes")],
        ),
        (
            HEADER + "  - id: a\n    branch:\n      - else: exit\n      - {if: x, next: exit}\n",
            [
                (
                    7,
                    "steps[0].branch[0].else",
                    "'else' comes last: the cases after it would never be tried",
                )
            ],
        ),
        (
            HEADER
            + "  - id: a\n    branch:\n      - {if: x, next: exit}\n"
            + "      - else: exit\n      - else: exit\n",
            [
                (8, "steps[0].branch[1].else", "'else' comes last"),
                (9, "steps[0].branch[2].else", "a branch has one 'else'"),
            ],
        ),
        (
            HEADER + "  - id: a\n    branch:\n      - {if: x, next: exit}\n    next: b\n",
            [(8, "steps[0].next", "a branch step has no 'next': each case names its own")],
        ),
        # split
        (
            HEADER + "  - id: a\n    split:\n      branches: [{name: x, weight: 1, next: exit}]\n",
            [(6, "steps[0].split.seed", "required but missing")],
        ),
        (
            HEADER
            + "  - id: a\n    split:\n      seed: s\n      branches:\n"
            + "        - {name: x, weight: half, next: exit}\n",
            [(9, "steps[0].split.branches[0].weight", "expected a number, got the text 'half'")],
        ),
        (
            HEADER
            + "  - id: a\n    split:\n      seed: s\n      branches:\n"
            + "        - {name: x, weight: .nan, next: exit}\n",
            [(9, "steps[0].split.branches[0].weight", "expected a number, got the number nan")],
        ),
        # send, update, webhook, emit, exit
        (
            HEADER + "  - id: a\n    send: {channel: email}\n",
            [(6, "steps[0].send.template", "required but missing")],
        ),
        (
            HEADER
            + "  - id: a\n    send:\n      channel: email\n      templte: t\n      template: t\n",
            [
                (
                    8,
                    "steps[0].send.templte",
                    "unknown key 'templte' (did you mean 'template'?); "
                    "allowed here: channel, template, category",
                )
            ],
        ),
        (
            HEADER + "  - id: a\n    update:\n      increment: {visits: lots}\n",
            [(7, "steps[0].update.increment.visits", "expected a number, got the text 'lots'")],
        ),
        (
            HEADER + "  - id: a\n    update:\n      unset: name\n",
            [(7, "steps[0].update.unset", "expected a list, got the text 'name'")],
        ),
        (
            HEADER + "  - id: a\n    update:\n      unset: [name, 3]\n",
            [(7, "steps[0].update.unset[1]", "expected text, got the number 3")],
        ),
        (
            HEADER
            + "  - id: a\n    webhook:\n      url: https://x.example\n"
            + "      headers: {X-Count: 5}\n",
            [
                (
                    8,
                    "steps[0].webhook.headers.X-Count",
                    "expected text, got the number 5; put it in quotes",
                )
            ],
        ),
        (
            HEADER + "  - id: a\n    webhook: {url: https://x.example, timeout: fast}\n",
            [(6, "steps[0].webhook.timeout", "bad duration 'fast'")],
        ),
        (
            HEADER + "  - id: a\n    emit: {properties: {}}\n",
            [(6, "steps[0].emit.event", "required but missing")],
        ),
        (
            HEADER + "  - id: a\n    exit: false\n",
            [(6, "steps[0].exit", "expected true or a mapping with a reason, got false")],
        ),
        (
            HEADER + "  - id: a\n    exit: {reason: x, why: y}\n",
            [(6, "steps[0].exit.why", "unknown key 'why'; allowed here: reason")],
        ),
    ],
)
def test_shape_errors_name_file_line_and_field(
    text: str, expected: list[tuple[int, str, str]]
) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_journey(text, "journeys/j.yaml")
    found = caught.value.problems
    assert [(p.file, p.line, p.field) for p in found] == [
        ("journeys/j.yaml", line, field) for line, field, _ in expected
    ]
    for problem, (_, _, message) in zip(found, expected, strict=True):
        assert problem.message.startswith(message), problem.message


def test_all_problems_are_reported_at_once() -> None:
    text = HEADER + "  - id: a\n    send: {channel: email}\n  - id: b\n    wait: {for: 1x}\n"
    with pytest.raises(DefinitionError) as caught:
        parse_journey(text, "j.yaml")
    assert str(caught.value).splitlines() == [
        "j.yaml:6: steps[0].send.template: required but missing",
        "j.yaml:8: steps[1].wait.for: bad duration '1x': use a number and a unit s, m, h, d or w, "
        "e.g. 90m or 3d",
    ]


def test_a_yaml_syntax_error_is_a_problem() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_journey("id: j\nname: J\n  steps: []\n", "j.yaml")
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == ("j.yaml", 3, "")
    assert problem.message.startswith("YAML syntax error:")
