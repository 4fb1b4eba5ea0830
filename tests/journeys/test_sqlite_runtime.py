"""The worker on the embedded SQLite store: a 90-day wait survives restarts."""

from __future__ import annotations

from pathlib import Path

from safar.config import Settings, load_settings
from safar.model.journeys import Entry, Journey, Send, Wait
from safar.runtime.catalog import publish
from safar.runtime.internal import internal_event
from safar.runtime.worker import Worker
from safar.stores.bundle import open_stores
from safar.testing import FakeClock
from safar.testing.journeys import RecordingChannel

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * 3_600_000


def settings_in(directory: Path) -> Settings:
    settings = load_settings(data_dir=directory, environ={})
    settings.journeys.templates_dir = str(ROOT / "examples/templates")
    settings.journeys.policy_file = str(directory / "no-policy.yaml")
    return settings


def drain(worker: Worker) -> None:
    while worker.step_once() + worker.dispatcher.run_once():
        pass


def test_a_90_day_wait_survives_restarts(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    clock = FakeClock(1_795_000_000_000)
    journey = Journey(
        id="winback",
        name="Win back",
        entry=Entry(event="Order Completed"),
        steps=(
            Wait(id="quiet", duration_ms=90 * DAY),
            Send(id="offer", channel="email", template="winback_offer"),
        ),
    )
    email = RecordingChannel("email")
    with open_stores(settings, clock) as stores:
        publish(stores.journeys, journey, clock.now_ms())
        now = clock.now_ms()
        stores.events.append(
            [
                internal_event(
                    key="id1",
                    type="identify",
                    identifier=("user_id", "sara"),
                    timestamp=now,
                    received_at=now,
                    traits={"email": "sara@shop.example", "first_name": "Sara", "locale": "fa"},
                ),
                internal_event(
                    key="o1",
                    type="track",
                    identifier=("user_id", "sara"),
                    timestamp=now,
                    received_at=now,
                    name="Order Completed",
                    properties={"total": 40},
                ),
            ]
        )
        drain(Worker(stores, settings, clock, channels={"email": email}))
    assert email.sent == []
    for _ in range(3):  # restarts while waiting
        clock.advance(days=30)
        with open_stores(settings, clock) as stores:
            drain(Worker(stores, settings, clock, channels={"email": email}))
    (message,) = email.sent
    assert message.to == "sara@shop.example" and message.locale == "fa"
    assert message.direction == "rtl" and message.html is not None
    assert 'dir="rtl"' in message.html and "/l/o/" in message.html  # open pixel
    assert message.unsubscribe_url is not None and "/l/u/" in message.unsubscribe_url
    with open_stores(settings, clock) as stores:
        sara = stores.profiles.find(("user_id", "sara"))
        assert sara is not None
        (decision,) = stores.delivery.decisions(sara.id, 10)
        assert decision.outcome == "sent"
        (instance,), _ = stores.runs.history(sara.id, 10)
        assert instance.status == "exited" and instance.ended_at == clock.now_ms()
