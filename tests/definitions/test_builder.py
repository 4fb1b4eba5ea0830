"""Journeys built in Python equal the same journeys written in YAML."""

from __future__ import annotations

import pytest

from safar.definitions.builder import JourneyBuilder
from safar.definitions.journeys import parse_journey
from safar.definitions.problems import DefinitionError

from .conftest import without_lines


def abandoned_cart() -> JourneyBuilder:
    return (
        JourneyBuilder("abandoned-cart", "Abandoned cart recovery", stage="purchase")
        .entry(event="Product Added", where="event.properties.price >= 10", reentry="after_exit")
        .goal("Order Completed", within="3d")
        .policy(category="marketing", priority=60)
        .wait("wait_for_order", for_="1h")
        .split(
            "split",
            seed="cart-2026-11",
            branches=[
                ("email", 45, "send_email"),
                ("sms", 45, "send_sms"),
                ("control", 10, "exit"),
            ],
        )
        .send("send_email", channel="email", template="cart_reminder", next="wait_day")
        .send("send_sms", channel="sms", template="cart_reminder_sms", next="wait_day")
        .wait("wait_day", for_="1d")
        .branch("vip_check", [("profile.traits.vip == true", "send_coupon")], otherwise="exit")
        .send("send_coupon", channel="email", template="cart_coupon")
    )


def test_the_example_built_in_python_equals_the_yaml(example_text: str) -> None:
    built = abandoned_cart().build()
    parsed = parse_journey(example_text, "examples/journeys/abandoned_cart.yaml")
    assert without_lines(built) == without_lines(parsed)
    assert built != parsed  # only because the parsed one knows its lines and file


def test_every_step_kind_equals_its_yaml() -> None:
    yaml_text = """\
id: all
name: All kinds
description: d
context: {campaign: winter}
entry: {schedule: "0 9 * * mon", api: true, reentry: always, cooldown: 12h, max_active: 2}
goal: {event: Bought}
policy: {quiet_hours: ignore}
steps:
  - id: morning
    wait: {until: "09:00"}
    touchpoint: inbox
  - id: click
    wait: {event: Clicked, where: "event.properties.n > 1", timeout: 2d, timeout_next: bye}
  - id: tag
    update: {set: {tier: gold}, increment: {score: 2}, unset: [old]}
    stage: retention
  - id: crm
    webhook: {url: "https://crm.example.com", method: PATCH, body: [1, 2], headers: {A: b},
              save: {crm_id: id}, timeout: 3s}
  - id: chain
    emit: {event: Tagged, properties: {by: journey}}
  - id: bye
    exit: {reason: done}
"""
    built = (
        JourneyBuilder("all", "All kinds", description="d", context={"campaign": "winter"})
        .entry(schedule="0 9 * * mon", api=True, reentry="always", cooldown="12h", max_active=2)
        .goal("Bought")
        .policy(quiet_hours="ignore")
        .wait("morning", until="09:00", touchpoint="inbox")
        .wait(
            "click",
            event="Clicked",
            where="event.properties.n > 1",
            timeout="2d",
            timeout_next="bye",
        )
        .update(
            "tag", set={"tier": "gold"}, increment={"score": 2}, unset=["old"], stage="retention"
        )
        .webhook(
            "crm",
            url="https://crm.example.com",
            method="PATCH",
            body=[1, 2],
            headers={"A": "b"},
            save={"crm_id": "id"},
            timeout=3000,
        )
        .emit("chain", "Tagged", properties={"by": "journey"})
        .exit("bye", reason="done")
        .build()
    )
    assert without_lines(built) == without_lines(parse_journey(yaml_text))


def test_build_reports_every_problem_with_yaml_field_names() -> None:
    builder = (
        JourneyBuilder("j", "J")
        .wait("a", for_="1x")
        .send("b", channel="pigeon", template="t", next="nowhere")
    )
    with pytest.raises(DefinitionError) as caught:
        builder.build()
    assert [str(problem) for problem in caught.value.problems] == [
        "<journey>: steps[0].wait.for: bad duration '1x': use a number and a unit s, m, h, d or "
        "w, e.g. 90m or 3d",
        "<journey>: entry: customers cannot enter: give an event, a segment, a schedule or"
        " api: true",
        "<journey>: steps[0].wait.for: must be longer than 0s",
        "<journey>: steps[1].next: no step 'nowhere'; name a step id or 'exit'",
        "<journey>: steps[1].send.channel: unknown channel 'pigeon'; use email, sms, webhook, "
        "in_app, console, null",
    ]
