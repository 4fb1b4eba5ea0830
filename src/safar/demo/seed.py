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

    def banner(self, url: str) -> str:
        auth = f"-H 'Authorization: Bearer {self.api_key}'"
        profile = f"{url}/v1/profiles/{self.sample_ref}"
        track = """'{"userId":"demo-1","event":"Demo Clicked"}'"""
        return "\n".join(
            [
                "",
                f"Safar demo shop: {self.customers:,} customers, {self.events:,} events.",
                f"  Home            {url}/",
                f"  API docs        {url}/docs",
                f"  Health          {url}/healthz",
                f"  A profile       curl {auth} {profile}",
                f"  Its timeline    curl {auth} '{profile}/events?limit=5'",
                f"  Send an event   curl -u '{self.write_key}:' -d {track} {url}/v1/track",
                "Press Ctrl+C to stop.",
                "",
            ]
        )


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
    batch: list[Event] = []
    sample_ref = ""
    total = 0
    for index, raw in enumerate(generate_shop(customers=customers, start=start, days=90)):
        if not sample_ref and raw.get("type") == "identify" and raw.get("userId"):
            sample_ref = f"user_id:{raw['userId']}"
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
    _say(f"\rseeding the demo shop: {total:,} events stored\n")
    processor = ProfileProcessor(stores.events, stores.profiles, settings.identity, clock)
    done = 0
    while (step := processor.run_once(10_000)) > 0:
        done += step
        _say(f"\rbuilding profiles: {done:,}/{total:,} events")
    _say("\n")
    return DemoInfo(
        write_key=source.write_key,
        api_key=api_key,
        sample_ref=sample_ref,
        events=total,
        customers=customers,
    )


def _say(text: str) -> None:
    print(text, end="", file=sys.stderr, flush=True)
