"""Journeys written back as YAML read back equal."""

from __future__ import annotations

from safar.definitions.dump import dump_journey
from safar.definitions.journeys import parse_journey

from .conftest import without_lines
from .test_builder import abandoned_cart

EVERYTHING = """\
id: everything
name: Каждое поле — 每个字段 — هر فیلد
description: Every field, once
stage: retention
context: {campaign: winter, "yes": "no", at: "21:00"}
entry: {event: Signed Up, where: "true", schedule: "@daily", api: true, reentry: always,
        cooldown: 1d12h, max_active: 4}
goal: {event: Bought, where: "event.properties.total > 0", within: 2w}
policy: {category: onboarding, priority: 90, quiet_hours: skip}
steps:
  - {id: at_nine, wait: {until: "09:00"}, stage: awareness, touchpoint: email}
  - {id: at_nine_pm, wait: {until: "21:00"}}
  - id: click
    wait: {event: Clicked, where: "event.properties.n > 1", timeout: 90m, timeout_next: bye}
    next: route
  - id: route
    branch:
      - {if: "profile.traits.vip", next: gift}
      - {else: split}
  - id: split
    split:
      seed: "2026"
      branches: [{name: a, weight: 0.5, next: gift}, {name: b, weight: 1.5, next: exit}]
  - {id: gift, send: {channel: in_app, template: gift, category: transactional}}
  - {id: tag, update: {set: {tier: gold, since: 2026-11-01}, increment: {score: 2.5}, unset: [x]}}
  - id: crm
    webhook: {url: "https://x.example", method: GET, body: {a: [1, null]}, headers: {A: b},
              save: {k: data.id}, timeout: 1500ms}
  - {id: chain, emit: {event: Tagged, properties: {n: 1}}}
  - {id: bye, exit: {reason: timed out}}
  - {id: end, exit: true}
"""


def test_round_trip_of_every_field() -> None:
    journey = parse_journey(EVERYTHING)
    text = dump_journey(journey)
    assert without_lines(parse_journey(text)) == without_lines(journey)
    assert dump_journey(parse_journey(text)) == text


def test_round_trip_of_the_example(example_text: str) -> None:
    journey = parse_journey(example_text)
    assert without_lines(parse_journey(dump_journey(journey))) == without_lines(journey)


def test_a_built_journey_dumps_to_what_a_person_would_write() -> None:
    text = dump_journey(abandoned_cart().build())
    assert "line" not in text
    assert text.splitlines()[:10] == [
        "id: abandoned-cart",
        "name: Abandoned cart recovery",
        "stage: purchase",
        "entry:",
        "  event: Product Added",
        "  where: event.properties.price >= 10",
        "  reentry: after_exit",
        "goal:",
        "  event: Order Completed",
        "  within: 3d",
    ]
