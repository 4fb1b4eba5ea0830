"""Segment exports: entries and exits POSTed to a segment's webhook (a real local receiver),
signed, in order, at least once, across receiver outages and exporter restarts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from safar.channels import MAX_ATTEMPTS, WebhookClient
from safar.channels.signing import verify
from safar.config import load_settings
from safar.ingest.importer import import_file
from safar.model.audiences import SEGMENT_ENTERED, SEGMENT_EXITED, Segment, TraitCondition
from safar.runtime import audience_catalog, segment_export
from safar.runtime.segment_export import Cursor, SegmentExporter
from safar.runtime.worker import Worker
from safar.stores.bundle import open_stores
from safar.testing import FakeClock
from safar.testing.journeys import JourneyHarness
from safar.testing.providers import RecordedRequest, WebhookSink
from safar.testing.wait import wait_until

SECRET = "whsec_segments"


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as running:
        yield running


@pytest.fixture
def h() -> JourneyHarness:
    return JourneyHarness()


def vip(url: str | None, segment_id: str = "vip", trait: str = "vip") -> Segment:
    return Segment(
        id=segment_id,
        name=f"{segment_id} customers",
        where=TraitCondition(trait=trait, op="eq", value=True),
        webhook=url,
    )


def exporter(h: JourneyHarness, *, secret: str | None = SECRET) -> SegmentExporter:
    client = (
        WebhookClient(secret, allow_private=True, clock=h.clock, timeout_ms=5000)
        if secret
        else None
    )
    return SegmentExporter(
        h.stores.events, h.stores.audience_catalog, h.stores.audiences, h.clock, client
    )


def changes_in_log(h: JourneyHarness, segment_id: str = "vip") -> list[tuple[str, str]]:
    """(type, id) of the segment's membership events, in log order."""
    kinds = {SEGMENT_ENTERED: "entered", SEGMENT_EXITED: "exited"}
    found = []
    for event in h.stores.events.read(0, 100_000):
        if event.name in kinds and event.payload()["properties"]["segment_id"] == segment_id:
            found.append((kinds[event.name], event.message_id))
    return found


def delivered(requests: list[RecordedRequest]) -> list[tuple[str, str]]:
    return [(c["type"], c["id"]) for r in requests for c in r.json()["changes"]]


def churn(h: JourneyHarness, *users: str) -> None:
    """Each user enters the segment, then the first one leaves it."""
    for user in users:
        h.identify(user, {"vip": True})
    h.identify(users[0], {"vip": False})


def progress(h: JourneyHarness, segment_id: str = "vip") -> Cursor:
    return Cursor.decode(h.stores.audiences.progress().get(f"export:{segment_id}"))


def test_entries_and_exits_arrive_in_order_signed(h: JourneyHarness, sink: WebhookSink) -> None:
    h.publish_audience(vip(sink.url + "/hooks/segments"))
    churn(h, "u1", "u2")
    export = exporter(h)

    assert export.step() == 3
    [request] = sink.requests
    assert (request.method, request.path) == ("POST", "/hooks/segments")
    assert verify(
        SECRET,
        signature=request.headers["x-safar-signature"],
        timestamp=request.headers["x-safar-timestamp"],
        body=request.body,
        now_s=h.clock.now_ms() // 1000,
    )
    body: dict[str, Any] = request.json()
    assert (body["segment_id"], body["segment_name"]) == ("vip", "vip customers")
    changes = body["changes"]
    assert [(c["type"], c["identifier"]) for c in changes] == [
        ("entered", {"type": "user_id", "value": "u1"}),
        ("entered", {"type": "user_id", "value": "u2"}),
        ("exited", {"type": "user_id", "value": "u1"}),
    ]
    assert changes[0]["profile_id"] == h.profile("u1").id
    assert changes[0]["at"].endswith("Z")
    assert delivered(sink.requests) == changes_in_log(h)
    assert progress(h) == Cursor(h.stores.events.last_seq())

    # Nothing new: nothing sent. New changes: only they are sent.
    assert export.step() == 0
    h.identify("u3", {"vip": True})
    assert export.step() == 1
    assert len(sink.requests) == 2
    assert delivered(sink.requests) == changes_in_log(h)


def test_batches_are_bounded_and_ordered(
    h: JourneyHarness, sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segment_export, "BATCH", 2)
    h.publish_audience(vip(sink.url))
    churn(h, "u1", "u2", "u3", "u4")
    export = exporter(h)
    while export.step():
        pass
    assert [len(r.json()["changes"]) for r in sink.requests] == [2, 2, 1]
    assert delivered(sink.requests) == changes_in_log(h)


def test_a_failing_receiver_gets_everything_after_it_recovers(
    h: JourneyHarness, sink: WebhookSink
) -> None:
    h.publish_audience(vip(sink.url))
    churn(h, "u1", "u2")
    export = exporter(h)
    sink.fail_next(4)

    assert export.step() == 0
    held = progress(h)
    assert (held.seq, held.attempts) == (0, 1)
    assert held.retry_at >= h.clock.now_ms()
    # More changes during the outage queue up behind the failed batch.
    churn(h, "u3", "u4")
    while len(sink.requests) < 5:
        h.clock.advance_to(progress(h).retry_at)
        export.step()

    assert progress(h) == Cursor(h.stores.events.last_seq())
    ok = sink.requests[4:]
    assert delivered(ok) == changes_in_log(h)
    assert len(changes_in_log(h)) == 6


def test_after_the_retry_limit_it_keeps_trying_and_says_so(
    h: JourneyHarness, sink: WebhookSink, caplog: pytest.LogCaptureFixture
) -> None:
    h.publish_audience(vip(sink.url))
    h.identify("u1", {"vip": True})
    export = exporter(h)
    sink.fail_next(MAX_ATTEMPTS + 1, status=404)

    with caplog.at_level(logging.WARNING, logger="safar.runtime.segment_export"):
        for _ in range(MAX_ATTEMPTS + 1):
            h.clock.advance_to(max(progress(h).retry_at, h.clock.now_ms()))
            assert export.step() == 0
    assert progress(h).attempts == MAX_ATTEMPTS + 1
    assert progress(h).retry_at == h.clock.now_ms() + 3_600_000
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "nothing is dropped" in errors[0].getMessage()

    h.clock.advance(hours=1)
    assert export.step() == 1
    assert delivered(sink.requests[-1:]) == changes_in_log(h)
    assert progress(h) == Cursor(h.stores.events.last_seq())


def test_one_endpoint_down_does_not_hold_up_another(h: JourneyHarness) -> None:
    with WebhookSink(status=503) as down, WebhookSink() as up:
        h.publish_audience(vip(down.url, "a"))
        h.publish_audience(vip(up.url, "b"))
        h.identify("u1", {"vip": True})
        export = exporter(h)
        assert export.step() == 1
        assert delivered(up.requests) == changes_in_log(h, "b")
        assert len(down.requests) == 1
        h.identify("u2", {"vip": True})
        assert export.step() == 1
        assert delivered(up.requests) == changes_in_log(h, "b")
        assert len(down.requests) == 1  # waiting for its retry
        assert progress(h, "a").attempts == 1


def test_a_restart_resumes_from_the_cursor(
    h: JourneyHarness, sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    h.publish_audience(vip(sink.url))
    churn(h, "u1", "u2")
    first = exporter(h)
    assert first.step() == 3

    # The next batch reaches the receiver, but the process dies before the cursor is stored.
    h.identify("u3", {"vip": True})

    def crash(*_: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(first, "_save", crash)
    with pytest.raises(RuntimeError):
        first.step()
    assert len(sink.requests) == 2

    h.identify("u4", {"vip": True})
    second = exporter(h)
    assert second.step() == 2
    acknowledged, unacknowledged, again = (r.json()["changes"] for r in sink.requests)
    # Only the unacknowledged batch is sent again, with what came after it.
    assert len(acknowledged) == 3
    assert len(unacknowledged) == 1 and again[:1] == unacknowledged
    assert delivered(sink.requests[:1] + sink.requests[2:]) == changes_in_log(h)
    assert second.step() == 0
    assert len(sink.requests) == 3


def test_a_segment_without_webhook_sends_nothing(h: JourneyHarness, sink: WebhookSink) -> None:
    h.publish_audience(vip(None, "quiet"))
    h.publish_audience(vip(sink.url, "loud", trait="loud"))
    h.identify("u1", {"vip": True})
    export = exporter(h)
    assert export.step() == 0
    assert sink.requests == []
    assert "export:quiet" not in h.stores.audiences.progress()
    assert changes_in_log(h, "quiet")

    h.identify("u2", {"loud": True})
    assert export.step() == 1
    assert {r.json()["segment_id"] for r in sink.requests} == {"loud"}


def test_without_a_secret_nothing_is_sent_and_nothing_is_lost(
    h: JourneyHarness, sink: WebhookSink, caplog: pytest.LogCaptureFixture
) -> None:
    h.publish_audience(vip(sink.url))
    churn(h, "u1", "u2")
    unsigned = exporter(h, secret=None)
    with caplog.at_level(logging.ERROR, logger="safar.runtime.segment_export"):
        assert unsigned.step() == 0
        assert unsigned.step() == 0
    assert sink.requests == []
    assert "export:vip" not in h.stores.audiences.progress()
    [logged] = caplog.records
    assert "vip" in logged.getMessage() and "webhook_secret" in logged.getMessage()

    # Once a secret is configured, everything goes out.
    assert exporter(h).step() == 3
    assert delivered(sink.requests) == changes_in_log(h)


def test_the_worker_exports_beside_the_dispatcher(tmp_path: Path, sink: WebhookSink) -> None:
    """From a CRM file imported with --traits to the segment's webhook, through the worker."""
    settings = load_settings(data_dir=tmp_path, environ={})
    settings.journeys.policy_file = str(tmp_path / "no-policy.yaml")
    settings.channels.webhook_secret = SECRET
    settings.channels.webhook_allow_private = True
    clock = FakeClock(1_795_000_000_000)
    crm = tmp_path / "crm.jsonl"
    crm.write_text('{"user_id": "sara", "vip": true}\n', encoding="utf-8")
    with open_stores(settings, clock) as stores:
        audience_catalog.publish(stores.audience_catalog, vip(sink.url), clock.now_ms())
        report = import_file(
            crm,
            events=stores.events,
            source_id="crm",
            clock=clock,
            limits=settings.ingest,
            identity=settings.identity,
            traits=True,
        )
        assert report.accepted == 1
        stop = threading.Event()
        running = threading.Thread(target=Worker(stores, settings, clock).run, args=(stop,))
        running.start()
        try:
            wait_until(lambda: sink.requests, timeout=30, what="the segment webhook")
        finally:
            stop.set()
            running.join(timeout=30)
        [change] = sink.requests[0].json()["changes"]
        assert change["type"] == "entered"
        assert change["identifier"] == {"type": "user_id", "value": "sara"}
        assert stores.audiences.progress()["export:vip"].endswith(":0:0")
