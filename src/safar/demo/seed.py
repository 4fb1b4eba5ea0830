"""Seed a data directory with the synthetic shop, once, and remember the demo's keys."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from safar.clock import SystemClock
from safar.config import Settings
from safar.model.events import Event
from safar.stores.bundle import Stores, open_stores

_MARKER = "demo.json"


class DemoInfo(msgspec.Struct, kw_only=True):
    """What the demo created: keys to try the API with, and a profile worth looking at."""

    write_key: str
    api_key: str
    sample_ref: str
    events: int
    customers: int

    journeys: list[str] = msgspec.field(default_factory=list)
    audiences: list[str] = msgspec.field(default_factory=list)
    history: str = ""

    def banner(self, url: str, messages: str = "") -> str:
        auth = f"-H 'Authorization: Bearer {self.api_key}'"
        profile = f"{url}/v1/profiles/{self.sample_ref}"
        track = """'{"userId":"demo-1","event":"Demo Clicked"}'"""
        signup = (
            """'{"batch":[{"type":"identify","userId":"demo-2","traits":{"""
            """"email":"demo-2@example.com","first_name":"سارا","locale":"fa"}},"""
            """{"type":"track","userId":"demo-2","event":"Signed Up"}]}'"""
        )
        lines = [
            "",
            f"Safar demo shop: {self.customers:,} customers, {self.events:,} events.",
            f"  Home            {url}/",
            f"  API docs        {url}/docs",
            f"  Health          {url}/healthz",
            f"  A profile       curl {auth} {profile}",
            f"  Its timeline    curl {auth} '{profile}/events?limit=5'",
            f"  Send an event   curl -u '{self.write_key}:' -d {track} {url}/v1/track",
        ]
        if self.journeys:
            lines += [
                f"Journeys live: {', '.join(self.journeys)} (examples/journeys).",
                f"  Why (not) sent  curl {auth} {profile}/decisions",
                f"  Welcome a user  curl -u '{self.write_key}:' -d {signup} {url}/v1/batch",
            ]
            if messages:
                lines.append(f"  Messages        printed to {messages} (console channel)")
        if self.audiences:
            lines += [
                f"Segments and computed traits live: {', '.join(self.audiences)}"
                " (examples/audiences).",
                f"  Segments        curl {auth} {url}/v1/segments",
            ]
            if "vip-lapsed" in self.audiences:
                lines.append(
                    f"  Lapsed VIPs     curl {auth} '{url}/v1/segments/vip-lapsed/members?limit=5'"
                )
        if self.history:
            lines.append(
                "  Simulate        safar journeys simulate examples/journeys/abandoned_cart.yaml"
                f" --events {self.history} --until 3d --templates examples/templates"
            )
        return "\n".join([*lines, "Press Ctrl+C to stop.", ""])


#: The repository's examples, used by the demo when it runs from a checkout.
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
#: Days of the shop's history written out for ``safar journeys simulate``.
HISTORY_DAYS = 14


def demo_settings(settings: Settings) -> Settings:
    """The demo's journeys, templates and policy come from the examples; email and SMS are
    printed to a file in the data directory instead of being delivered."""
    if EXAMPLES.is_dir():
        settings.journeys.templates_dir = str(EXAMPLES / "templates")
        settings.journeys.policy_file = str(EXAMPLES / "policy.yaml")
    channels = settings.channels
    if not channels.console_for and not channels.smtp_host:
        channels.console_for = ["email", "sms"]
        channels.console_path = channels.console_path or str(
            Path(settings.data_dir) / "messages.log"
        )
    return settings


def seed_demo(settings: Settings, *, customers: int = 10_000) -> DemoInfo:
    """Fill ``settings.data_dir`` with the demo shop unless it already holds it."""
    marker = Path(settings.data_dir) / _MARKER
    if marker.exists():
        return msgspec.json.decode(marker.read_bytes(), type=DemoInfo)
    with open_stores(settings, SystemClock()) as stores:
        info = _seed(stores, settings, customers)
    marker.write_bytes(msgspec.json.encode(info))
    return info


def _seed(stores: Stores, settings: Settings, customers: int) -> DemoInfo:
    from safar.demo.shop import generate_shop
    from safar.ingest.validate import event_from_json
    from safar.runtime.profiler import ProfileProcessor

    clock = SystemClock()
    source = stores.keys.create_source("demo-shop")
    _, api_key = stores.keys.create_api_key("demo", "admin")
    start = datetime.now(tz=UTC).replace(microsecond=0) - timedelta(days=90)
    recent = (start + timedelta(days=90 - HISTORY_DAYS)).isoformat()
    history_path = Path(settings.data_dir) / "demo-history.jsonl"
    history = history_path.open("wb")
    batch: list[Event] = []
    sample_ref = ""
    total = 0
    for index, raw in enumerate(generate_shop(customers=customers, start=start, days=90)):
        if not sample_ref and raw.get("type") == "identify" and raw.get("userId"):
            sample_ref = f"user_id:{raw['userId']}"
        if str(raw.get("timestamp", "")) >= recent or raw.get("type") == "identify":
            history.write(msgspec.json.encode(raw) + b"\n")
        batch.append(
            event_from_json(
                raw,
                source_id=source.id,
                received_at=clock.now_ms(),
                sent_at=None,
                default_type=None,
                location=f"demo event {index}",
                limits=settings.ingest,
            )
        )
        if len(batch) == 5000:
            total += stores.events.append(batch).appended
            batch.clear()
            _say(f"\rseeding the demo shop: {total:,} events stored")
    if batch:
        total += stores.events.append(batch).appended
    history.close()
    _say(f"\rseeding the demo shop: {total:,} events stored\n")
    processor = ProfileProcessor(stores.events, stores.profiles, settings.identity, clock)
    done = 0
    while (step := processor.run_once(10_000)) > 0:
        done += step
        _say(f"\rbuilding profiles: {done:,}/{total:,} events")
    _say("\n")
    # Audiences first: journeys then start after the membership events they append.
    audiences = _publish_audiences(stores, settings)
    return DemoInfo(
        write_key=source.write_key,
        api_key=api_key,
        sample_ref=sample_ref,
        events=total,
        customers=customers,
        journeys=_publish_examples(stores),
        audiences=audiences,
        history=str(history_path),
    )


def _publish_audiences(stores: Stores, settings: Settings) -> list[str]:
    """Publish the example segments and computed traits and evaluate them over the shop's
    history, so the demo starts with members (and ``Segment Entered`` events) in place."""
    from safar.definitions import parse_audience
    from safar.runtime import audience_catalog
    from safar.runtime.worker import Worker

    folder = EXAMPLES / "audiences"
    if not folder.is_dir():
        return []
    clock = SystemClock()
    published = []
    for path in sorted(folder.glob("*.yaml")):
        definition = parse_audience(path.read_text(encoding="utf-8"), str(path))
        audience_catalog.publish(stores.audience_catalog, definition, clock.now_ms())
        published.append(definition.id)
    # No journey is published yet: the worker folds profiles and audiences, and the processor's
    # own membership events, until nothing is left.
    worker = Worker(stores, settings, clock)
    while worker.step_once() > 0:
        done, total = stores.audiences.processed_seq(), stores.events.last_seq()
        _say(f"\rcomputing audiences: {done:,}/{total:,} events")
    _say("\n")
    return published


def _publish_examples(stores: Stores) -> list[str]:
    """Publish the example journeys for what customers do from now on: the shop's history is
    marked as handled, so nobody enters a journey for something done weeks ago."""
    from safar.definitions import parse_journey
    from safar.ports import JourneyUpdate
    from safar.runtime.catalog import publish

    folder = EXAMPLES / "journeys"
    if not folder.is_dir():
        return []
    now = SystemClock().now_ms()
    published = []
    for path in sorted(folder.glob("*.yaml")):
        journey = parse_journey(path.read_text(encoding="utf-8"), str(path))
        publish(stores.journeys, journey, now)
        published.append(journey.id)
    after = stores.runs.processed_seq()
    stores.runs.commit(JourneyUpdate(after_seq=after, processed_seq=stores.events.last_seq()))
    return published


def _say(text: str) -> None:
    print(text, end="", file=sys.stderr, flush=True)
