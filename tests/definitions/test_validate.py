"""Whole-journey checks: targets, reachability, loops, stages, schedules, entry settings,
templates and conditions, each naming file, line and field."""

from __future__ import annotations

import textwrap

import msgspec
import pytest

from safar.definitions.journeys import load_journey, parse_journey
from safar.definitions.validate import cel_checker, validate_journey
from safar.model.journeys import Send

HEADER = "id: j\nname: J\nentry: {event: A}\nsteps:\n"  # steps start on line 5
TEMPLATES = {
    "t": "email",
    "cart_reminder": "email",
    "cart_reminder_sms": "sms",
    "cart_coupon": "email",
}


def problems(text: str, **options: object) -> list[tuple[int, str, str]]:
    journey, lines = load_journey(text, "j.yaml")
    found = validate_journey(journey, lines=lines, **options)  # type: ignore[arg-type]
    assert all(problem.file == "j.yaml" for problem in found)
    return [(problem.line, problem.field, problem.message) for problem in found]


def steps(text: str) -> str:
    return HEADER + textwrap.indent(textwrap.dedent(text), "  ")


def test_the_example_is_valid(example_text: str) -> None:
    assert problems(example_text, templates=TEMPLATES, conditions=cel_checker()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEADER + "  []\n", [(4, "steps", "a journey needs at least one step")]),
        (
            steps("- {id: a, wait: {for: 1h}}\n- {id: a, exit: true}\n"),
            [(6, "steps[1].id", "duplicate step id 'a' (also steps[0])")],
        ),
        (steps("- {id: exit, wait: {for: 1h}}\n"), [(5, "steps[0].id", "'exit' is reserved")]),
        (steps("- {id: a b, wait: {for: 1h}}\n"), [(5, "steps[0].id", "bad step id 'a b': use")]),
        (
            HEADER.replace("id: j", "id: cart recovery") + "  - {id: a, exit: true}\n",
            [(1, "id", "bad journey id 'cart recovery': use letters, digits")],
        ),
        (
            steps(
                """\
                - id: a
                  wait: {for: 1h}
                  next: sned
                - id: send
                  send: {channel: email, template: t}
                """
            ),
            [
                (
                    7,
                    "steps[0].next",
                    "no step 'sned' (did you mean 'send'?); name a step id or 'exit'",
                ),
                (8, "steps[1]", "step 'send' is never reached from the first step 'a'"),
            ],
        ),
        (
            steps(
                """\
                - id: a
                  wait: {event: Clicked, timeout: 1d, timeout_next: nowhere}
                """
            ),
            [(6, "steps[0].wait.timeout_next", "no step 'nowhere'; name a step id or 'exit'")],
        ),
        (
            steps(
                """\
                - id: a
                  branch:
                    - if: profile.traits.vip
                      next: b
                    - else: c
                - {id: b, exit: true}
                """
            ),
            [
                (7, "steps[0].branch[0].if", "bad condition: nope"),
                (9, "steps[0].branch[1].else", "no step 'c'; name a step id or 'exit'"),
            ],
        ),
        (
            steps("- id: a\n  branch: []\n"),
            [(6, "steps[0].branch", "a branch needs at least one case")],
        ),
        (
            steps(
                """\
                - id: a
                  split:
                    seed: s
                    branches:
                      - {name: x, weight: -1, next: b}
                      - {name: x, weight: 1, next: c}
                - {id: b, exit: true}
                """
            ),
            [
                (9, "steps[0].split.branches[0].weight", "must be a number 0 or above"),
                (10, "steps[0].split.branches[1].name", "duplicate branch name 'x'"),
                (10, "steps[0].split.branches[1].next", "no step 'c'"),
            ],
        ),
        (
            steps(
                """\
                - id: a
                  split:
                    seed: s
                    branches:
                      - {name: x, weight: 0, next: exit}
                      - {name: y, weight: 0, next: exit}
                """
            ),
            [(8, "steps[0].split.branches", "all weights are 0: nobody would be assigned")],
        ),
        (
            steps("- id: a\n  split: {seed: s, branches: []}\n"),
            [(6, "steps[0].split.branches", "a split needs at least one branch")],
        ),
        (
            steps(
                """\
                - {id: a, wait: {for: 1h}}
                - {id: b, exit: true}
                - {id: c, exit: true}
                - {id: d, exit: true}
                """
            ),
            [
                (7, "steps[2]", "step 'c' is never reached from the first step 'a'"),
                (8, "steps[3]", "step 'd' is never reached from the first step 'a'"),
            ],
        ),
        (
            steps(
                """\
                - {id: a, send: {channel: email, template: t}}
                - {id: b, emit: {event: X}}
                - {id: c, update: {set: {x: 1}}, next: a}
                """
            ),
            [
                (
                    5,
                    "steps[0]",
                    "steps 'a', 'b', 'c' form a loop with no wait step in it: a customer would go "
                    "round without pausing; add a wait",
                )
            ],
        ),
        (
            steps("- {id: a, emit: {event: X}, next: a}\n"),
            [(5, "steps[0]", "step 'a' goes back to itself with no wait step in it")],
        ),
        (
            steps(
                """\
                - id: check
                  branch:
                    - {if: profile.traits.open, next: check}
                    - else: exit
                """
            ),
            [(5, "steps[0]", "step 'check' goes back to itself with no wait step in it")],
        ),
        (
            HEADER.replace("id: j", "id: j\nstage: buying") + "  - {id: a, exit: true}\n",
            [(2, "stage", "unknown stage 'buying'; stages are awareness, consideration, purchase")],
        ),
        (
            steps("- id: a\n  exit: true\n  stage: checkout\n"),
            [(7, "steps[0].stage", "unknown stage 'checkout'")],
        ),
        (
            steps("- id: a\n  wait: {until: 9am}\n"),
            [(6, "steps[0].wait.until", "'9am' is not a time of day; write HH:MM")],
        ),
        (
            steps("- id: a\n  wait: {for: 0s}\n"),
            [(6, "steps[0].wait.for", "must be longer than 0s")],
        ),
        (
            steps("- id: a\n  wait: {event: Clicked, timeout: 0s}\n"),
            [(6, "steps[0].wait.timeout", "a wait for an event needs a timeout")],
        ),
        (
            HEADER.replace("{event: A}", "\n  schedule: 0 9 * *") + "  - {id: a, exit: true}\n",
            [(4, "entry.schedule", "bad cron expression '0 9 * *': it needs 5 fields")],
        ),
        (
            HEADER.replace("{event: A}", "{schedule: 0 0 30 feb *}") + "  - {id: a, exit: true}\n",
            [(3, "entry.schedule", "bad cron expression '0 0 30 feb *': it never fires")],
        ),
        (
            HEADER.replace("{event: A}", "{where: profile.traits.new}")
            + "  - {id: a, exit: true}\n",
            [
                (
                    3,
                    "entry",
                    "customers cannot enter: give an event, a segment, a schedule or api: true",
                )
            ],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, cooldown: 1d}") + "  - {id: a, exit: true}\n",
            [(3, "entry.cooldown", "a cooldown needs reentry: after_exit or always")],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, reentry: after_exit, max_active: 2}")
            + "  - {id: a, exit: true}\n",
            [(3, "entry.max_active", "more than one active instance needs reentry: always")],
        ),
        (
            HEADER.replace("{event: A}", "{event: A, reentry: always, max_active: 0}")
            + "  - {id: a, exit: true}\n",
            [(3, "entry.max_active", "must be at least 1")],
        ),
        (
            HEADER + "  - {id: a, exit: true}\ngoal:\n  event: B\n  within: 0s\n",
            [(8, "goal.within", "must be longer than 0s")],
        ),
        (
            steps("- id: a\n  send: {channel: emial, template: t}\n"),
            [(6, "steps[0].send.channel", "unknown channel 'emial'; use email, sms, webhook")],
        ),
        (
            steps("- id: a\n  send:\n    channel: email\n    template: cart_remnder\n"),
            [
                (
                    8,
                    "steps[0].send.template",
                    "no template 'cart_remnder' (did you mean 'cart_reminder'?)",
                )
            ],
        ),
        (
            steps("- id: a\n  send: {channel: sms, template: cart_reminder}\n"),
            [(6, "steps[0].send.template", "template 'cart_reminder' is for email, not sms")],
        ),
        (steps("- id: a\n  update: {}\n"), [(6, "steps[0].update", "changes nothing")]),
        (
            steps("- id: a\n  webhook: {url: ftp://x.example, method: FETCH}\n"),
            [
                (
                    6,
                    "steps[0].webhook.url",
                    "expected an http:// or https:// URL, got 'ftp://x.example'",
                ),
                (6, "steps[0].webhook.method", "unknown method; use GET, POST, PUT, PATCH, DELETE"),
            ],
        ),
    ],
)
def test_problems_name_line_and_field(text: str, expected: list[tuple[int, str, str]]) -> None:
    found = problems(
        text,
        templates=TEMPLATES,
        conditions=lambda source: "nope" if source == "profile.traits.vip" else None,
    )
    assert [(line, field) for line, field, _ in found] == [
        (line, field) for line, field, _ in expected
    ]
    for (_, _, message), (_, _, start) in zip(found, expected, strict=True):
        assert message.startswith(start), message


def test_a_loop_with_a_wait_is_fine() -> None:
    text = steps(
        """\
        - {id: remind, send: {channel: email, template: t}}
        - {id: pause, wait: {for: 1d}}
        - id: again
          branch:
            - {if: profile.traits.open, next: remind}
        """
    )
    assert problems(text) == []


def test_a_schedule_without_where_enters_everyone() -> None:
    text = HEADER.replace("{event: A}", "{schedule: '0 9 * * mon'}") + "  - {id: a, exit: true}\n"
    assert problems(text) == []


def test_conditions_are_checked_where_they_are() -> None:
    text = textwrap.dedent(
        """\
        id: j
        name: J
        entry: {event: A, where: bad entry}
        goal: {event: B, where: bad goal}
        steps:
          - id: a
            wait:
              event: C
              where: bad wait
              timeout: 1d
          - id: b
            branch:
              - {if: bad case, next: exit}
        """
    )
    seen: list[str] = []

    def check(source: str) -> str | None:
        seen.append(source)
        return f"cannot read {source!r}"

    found = problems(text, conditions=check)
    assert seen == ["bad goal", "bad entry", "bad wait", "bad case"]
    assert [(line, field) for line, field, _ in found] == [
        (3, "entry.where"),
        (4, "goal.where"),
        (9, "steps[0].wait.where"),
        (13, "steps[1].branch[0].if"),
    ]
    assert found[0][2] == "bad condition: cannot read 'bad entry'"


def test_cel_checker_reports_unknown_names_and_syntax() -> None:
    check = cel_checker()
    assert check("event.properties.price >= 10 && profile.traits.vip == true") is None
    assert check("journey.tries < 3 && now > 0") is None
    assert "unknown variable 'order'" in (check("order.total > 3") or "")
    assert check("event.properties.price >=") is not None


def test_without_lines_each_problem_has_its_node_line(example_text: str) -> None:
    journey = parse_journey(example_text, "cart.yaml")
    broken = msgspec.structs.replace(
        journey,
        steps=(
            *journey.steps[:2],
            msgspec.structs.replace(journey.steps[2], next="nowhere"),
            *journey.steps[3:],
        ),
    )
    [problem] = validate_journey(broken)
    assert (
        str(problem) == "cart.yaml:24: steps[2].next: no step 'nowhere'; name a step id or 'exit'"
    )


def test_templates_as_names_only(example_text: str) -> None:
    journey = parse_journey(example_text)
    found = validate_journey(journey, templates={"cart_reminder", "cart_coupon"})
    assert [(p.field, p.message) for p in found] == [
        (
            "steps[3].send.template",
            "no template 'cart_reminder_sms' (did you mean 'cart_reminder'?)",
        )
    ]
    assert isinstance(journey.steps[3], Send)
