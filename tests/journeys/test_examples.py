"""Every shipped example journey, with the example policy and templates, on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from safar.definitions import parse_audience, parse_journey, parse_policy, validate_paths
from safar.runtime.render import TemplateRenderer
from safar.templates import TemplateCatalog
from safar.testing.journeys import JourneyHarness

pytestmark = pytest.mark.usefixtures("journey_modes")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Monday 2026-11-16 12:00 UTC: inside nobody's quiet hours in the zones below.
START = int(datetime(2026, 11, 16, 12, 0, tzinfo=UTC).timestamp() * 1000)


def harness(*names: str) -> JourneyHarness:
    policy = parse_policy((EXAMPLES / "policy.yaml").read_text(), "policy.yaml")
    render = TemplateRenderer(TemplateCatalog.load(EXAMPLES / "templates", strict=True))
    h = JourneyHarness(start=START, policy=policy, render=render)
    for path in sorted((EXAMPLES / "audiences").glob("*.yaml")):
        h.publish_audience(parse_audience(path.read_text(), str(path)))
    for name in names:
        path = EXAMPLES / "journeys" / f"{name}.yaml"
        h.publish(parse_journey(path.read_text(), str(path)))
    return h


def customer(h: JourneyHarness, uid: str, **traits: Any) -> None:
    base = {"email": f"{uid}@shop.example", "first_name": uid.title(), "timezone": "UTC"}
    h.identify(uid, {**base, **traits})


def mails(h: JourneyHarness, uid: str) -> list[str]:
    pid = h.profile(uid).id
    return [m.subject or m.text or "" for m in h.sent if m.profile_id == pid]


def test_every_example_validates() -> None:
    assert validate_paths([EXAMPLES]) == []


def test_welcome_series_in_persian_with_the_tour_at_ten_local_time() -> None:
    h = harness("welcome")
    customer(h, "sara", locale="fa-IR", timezone="Asia/Tehran")
    h.track("sara", "Signed Up")
    (hello,) = h.sent
    assert hello.locale == "fa" and hello.direction == "rtl"
    assert "خوش آمدید" in (hello.subject or "")
    h.advance(days=2)
    assert len(h.sent) == 1  # waiting for 10:00 in Tehran
    h.advance(days=1)
    tour = h.sent[-1]
    assert len(h.sent) == 2 and tour.locale == "fa"
    (decision,) = [d for d in h.decisions("sara") if d.step_id == "tour"]
    local = datetime.fromtimestamp(decision.at / 1000, tz=UTC)
    assert (local.hour, local.minute) == (6, 30)  # 10:00 in Tehran


def test_welcome_ends_when_the_customer_orders() -> None:
    h = harness("welcome")
    customer(h, "li", locale="zh")
    h.track("li", "Signed Up")
    h.track("li", "Order Completed", {"order_id": "o-1", "total": 30})
    h.advance(days=5)
    assert len(h.sent) == 1 and "欢迎" in (h.sent[0].subject or "")
    (instance,), _ = h.stores.runs.history(h.profile("li").id, 10)
    assert instance.status == "converted"


def test_abandoned_cart_in_arabic() -> None:
    h = harness("abandoned_cart")
    customer(h, "omar", locale="ar", phone="+971501234567")
    h.track("omar", "Product Added", {"price": 120, "name": "Kettle", "cart_id": "c1"})
    h.advance(days=2)
    sent = h.sent
    instance = h.stores.runs.history(h.profile("omar").id, 10)[0][0]
    branch = instance.context["splits"]["split"]
    assert len(sent) == (0 if branch == "control" else 1)
    for message in sent:
        assert message.locale == "ar"
        assert message.direction == "rtl"


def test_post_purchase_survey_after_delivery_of_that_order() -> None:
    h = harness("post_purchase_survey")
    customer(h, "ana")
    h.track("ana", "Order Completed", {"order_id": "A-17", "total": 80})
    h.advance(days=1)
    h.track("ana", "Order Delivered", {"order_id": "other"})
    h.advance(hours=1)
    assert h.sent == []
    h.track("ana", "Order Delivered", {"order_id": "A-17"})
    h.advance(days=1)
    (invite,) = h.sent
    assert "A-17" in (invite.subject or "") and "score=5" in (invite.html or "")
    assert h.decisions("ana")[0].category == "service"


def test_post_purchase_survey_without_delivery_news_goes_after_a_week() -> None:
    h = harness("post_purchase_survey")
    customer(h, "ben")
    h.track("ben", "Order Completed", {"order_id": "B-1"})
    h.advance(days=6)
    assert h.sent == []
    h.advance(days=1)
    assert len(h.sent) == 1


def test_winback_offer_after_60_quiet_days_then_sms() -> None:
    h = harness("winback")
    customer(h, "kim", phone="+15551234567")
    customer(h, "loyal")
    h.track("kim", "Order Completed", {"order_id": "k1"})
    h.track("loyal", "Order Completed", {"order_id": "l1"})
    h.advance(days=30)
    h.track("loyal", "Order Completed", {"order_id": "l2"})  # converts, and starts again
    h.advance(days=31)
    assert [m.channel for m in h.sent] == ["email"]
    assert "20%" in (h.sent[0].subject or "")
    h.advance(days=14)
    assert sorted(m.channel for m in h.sent if m.profile_id == h.profile("kim").id) == [
        "email",
        "sms",
    ]
    assert mails(h, "loyal") == []


@pytest.mark.parametrize(
    ("support_events", "held_by"),
    [
        ([("Ticket Opened", {"subject": "faulty kettle"})], "suppression:open_support_ticket"),
        ([("Product Returned", {"order_id": "o9"})], "suppression:recent_return"),
    ],
)
def test_no_promotion_for_someone_who_just_contacted_support_or_returned_an_item(
    support_events: list[tuple[str, dict[str, Any]]], held_by: str
) -> None:
    h = harness("browse_offer")
    customer(h, "sara")
    for name, props in support_events:
        h.track("sara", name, props)
    h.track("sara", "Product Viewed", {"price": 240, "name": "Kettle Pro", "product_id": "k2"})
    h.advance(hours=3)
    assert h.sent == []
    (held,) = h.decisions("sara")
    assert (held.outcome, held.rule) == ("suppressed", held_by)
    assert "Sara" in held.detail
    # Once the ticket is resolved (or the return week is over), offers flow again.
    h.track("sara", "Ticket Resolved")
    h.advance(days=8)
    h.track("sara", "Product Viewed", {"price": 240, "name": "Kettle Pro", "product_id": "k2"})
    h.advance(hours=3)
    assert len(h.sent) == 1 and "Kettle Pro" in (h.sent[0].subject or "")


def test_simulate_reports_the_abandoned_cart_over_history(tmp_path: Path) -> None:
    from safar.cli import main

    lines = []
    for i in range(20):
        lines.append(
            f'{{"type":"identify","userId":"u{i}","traits":{{"email":"u{i}@x.io","vip":true}},'
            f'"timestamp":"2026-11-01T10:00:00Z"}}'
        )
        lines.append(
            f'{{"type":"track","userId":"u{i}","event":"Product Added",'
            f'"properties":{{"price":25,"name":"Kettle"}},"timestamp":"2026-11-01T10:05:00Z"}}'
        )
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report.json"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(
            [
                "journeys",
                "simulate",
                str(EXAMPLES / "journeys/abandoned_cart.yaml"),
                "--events",
                str(history),
                "--until",
                "5d",
                "--json",
                "--data-dir",
                str(tmp_path / "unused"),
            ]
        )
    assert code == 0
    out.write_text(buffer.getvalue())
    import json

    report = json.loads(out.read_text())
    assert report["customers_entered"] == 20
    assert report["instances"] == {"exited": 20}
    split = {s["outcome"]: s["count"] for s in report["steps"] if s["step"] == "split"}
    assert split["split:email"] + split["split:sms"] + split["split:control"] == 20
    # Nobody has a phone number: the SMS branch is held back, and says why.
    assert report["held_back"] == {"no_address": split["split:sms"]}
    assert report["messages"] == {
        "email:send_coupon": 20 - split["split:control"],
        "email:send_email": split["split:email"],
    }
