"""A deterministic simulated shop run on the SQLite stores, meant to be killed with SIGKILL.

    python tests/e2e/journey_driver.py DATA_DIR SENT_FILE

Time is a FakeClock at ``T0 + tick × TICK``. Each tick appends the customers' events that
belong to it (fixed messageIds, so a repeated tick appends nothing new), then runs the worker's
stepper and dispatcher until both are idle, then records the next tick in ``DATA_DIR/tick``
(atomically), so a crash repeats at most the tick it interrupted. Every channel is a
:class:`FileChannel`: the provider, which writes each idempotency key it is handed to SENT_FILE.
Audiences run too: a computed trait and two segments, one with a window (so timers change
memberships). After the last tick it writes ``DATA_DIR/final.json`` (each customer's journey
instances, sent messages, segments, computed trait and membership-change events) and then
``DATA_DIR/done``.

Prints ``running`` once the stores are open, so a test knows start-up is over.

With ``SAFAR_DRIVER_NATS`` set to a NATS server, audiences and journeys are kept as
partitioned workers keep them (ADR 12): the stepper publishes to a work feed of
:data:`PARTITIONS` partitions on that server (its stream named after the data directory, so
every life of a run shares it) and coordinates audiences, and a partition owner keeps the
partitions' audiences and steps their journeys, in the same loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safar.config import (
    BusSettings,
    IngestSettings,
    JourneySettings,
    Settings,
    StorageSettings,
)
from safar.definitions import parse_audience, parse_journey
from safar.ingest.validate import event_from_json
from safar.model.events import Event, iso
from safar.model.messages import CHANNELS, Receipt, RenderedMessage
from safar.runtime import audience_catalog
from safar.runtime.audience_view import AudienceReader
from safar.runtime.catalog import publish
from safar.runtime.partitioned import PartitionWorker
from safar.runtime.profiler import ProfileProcessor
from safar.runtime.worker import Worker
from safar.stores.bundle import Stores, open_feed, open_stores
from safar.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = ROOT / "examples" / "journeys" / "abandoned_cart.yaml"
TEMPLATES = ROOT / "examples" / "templates"

# Noon UTC: carts abandoned in the evening and at night meet the default quiet hours
# (21:00-08:00 UTC), so many messages are delayed to 08:00 and claimed twice.
T0 = int(datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)
MINUTE = 60 * 1000
HOUR = 60 * MINUTE
TICK_MS = 20 * MINUTE
#: Carts are abandoned over the first 20 hours, some again 37 hours later; an instance lasts
#: 1 h + 1 d, so after 4 days every journey has ended, with a margin for timers a crash delays.
TICKS = 4 * 24 * HOUR // TICK_MS
CUSTOMERS = 8000
#: Partitions of the work feed with SAFAR_DRIVER_NATS.
PARTITIONS = 4
AUDIENCES = (
    "{id: carts, compute: {event: Product Added}}",
    "{id: browsing, name: Cart without an order, where: {all: [{performed: Product Added,"
    " within: 12h}, {not: {performed: Order Completed, within: 12h}}]}}",
    "{id: buyers, name: Buyers, where: {performed: Order Completed}}",
)

NAMES = {
    "en": ["Alice", "Ben", "Chloe", "Dan"],
    "fa": ["سارا", "علی", "مریم", "رضا"],
    "ar": ["ليلى", "عمر", "فاطمة", "يوسف"],
    "zh": ["王芳", "李伟", "张敏", "刘洋"],
}
LOCALES = tuple(NAMES)

# Orders come far from the moments an instance changes step (entry + 1 h, entry + 25 h), so
# a timer that a crash delays (by its lease, a tick) cannot change how any journey ends.
ORDER_DURING_FIRST_WAIT = 20 * MINUTE  # converted before anything is sent
ORDER_DURING_DAY_WAIT = 10 * HOUR  # converted after the reminder
ORDER_AFTER_END = 33 * HOUR  # too late: the instance has ended
REENTRY_AFTER = 37 * HOUR  # a second cart once the first instance has ended


def schedule() -> dict[int, list[dict[str, Any]]]:
    """Every customer event, by the tick it happens at (Segment-shaped, fixed messageIds)."""
    ticks: dict[int, list[dict[str, Any]]] = {}

    def at(tick: int, uid: str, n: int, body: dict[str, Any]) -> None:
        body = {**body, "userId": uid, "messageId": f"{uid}-{n}", "timestamp": iso(time(tick))}
        ticks.setdefault(tick, []).append(body)

    for i in range(CUSTOMERS):
        uid = user_id(i)
        locale = LOCALES[i % len(LOCALES)]
        traits = {
            "email": f"{uid}@example.com",
            "phone": f"+1415555{i:04d}",
            "vip": i % 3 == 0,
            "first_name": NAMES[locale][i // len(LOCALES) % len(NAMES[locale])],
            "locale": locale,
        }
        cart = 1 + (i * 7) % (20 * HOUR // TICK_MS)
        at(cart, uid, 0, {"type": "identify", "traits": traits})
        price = 5 if i % 10 == 9 else 20 + i  # under 10: does not enter
        at(cart, uid, 1, _cart(i, price, 1))
        order = {
            1: ORDER_DURING_FIRST_WAIT,
            2: ORDER_DURING_DAY_WAIT,
            3: ORDER_AFTER_END,
        }.get(i % 4)
        if order is not None:
            at(cart + order // TICK_MS, uid, 2, _order(i))
        if i % 5 == 0:
            at(cart + REENTRY_AFTER // TICK_MS, uid, 3, _cart(i, price + 5, 2))
    return ticks


def _cart(i: int, price: int, n: int) -> dict[str, Any]:
    properties = {"price": price, "name": f"Product {i}-{n}", "cart_id": f"c{i:02d}-{n}"}
    return {"type": "track", "event": "Product Added", "properties": properties}


def _order(i: int) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "properties": {"order_id": f"o{i:02d}"}}


def user_id(i: int) -> str:
    return f"u{i:04d}"


def time(tick: int) -> int:
    return T0 + tick * TICK_MS


class FileChannel:
    """A provider that receives each message's idempotency key, durably, before it returns."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd = fd

    def send(self, message: RenderedMessage) -> Receipt:
        os.write(self._fd, f"{message.key}\n".encode())
        os.fsync(self._fd)
        return Receipt(provider_id=f"file-{message.key}")


def settings_for(data_dir: Path) -> Settings:
    nats = os.environ.get("SAFAR_DRIVER_NATS", "")
    token = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    bus = BusSettings(
        url=nats,
        partitions=PARTITIONS,
        stream=f"SAFAR_DRIVER_{token}",
        subject=f"safar.driver.{token}",
    )
    return Settings(
        bus=bus,
        data_dir=str(data_dir),
        # "normal" survives a killed process (not a power cut), which is what is tested here.
        storage=StorageSettings(synchronous="normal"),
        journeys=JourneySettings(
            templates_dir=str(TEMPLATES),
            # Does not exist, so the default policy applies (quiet hours 21:00-08:00 UTC).
            policy_file=str(data_dir / "policy.yaml"),
        ),
    )


def deterministic_ids(clock: FakeClock) -> Callable[[], str]:
    """Profile ids that are the same in every run, so that instance ids, split branches and
    idempotency keys are too (the default ids are random): the tick's time and a count within
    the tick. Profiles are only made from the events a tick appends, in one call, folded in one
    batch: a batch redone after a crash makes the same ids in the same order, and no id of a
    committed batch is made again."""
    made: Counter[int] = Counter()

    def new_id() -> str:
        now = clock.now_ms()
        made[now] += 1
        return f"{now:012x}{made[now]:020x}"

    return new_id


def write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def run_to_rest(worker: Worker, owner: PartitionWorker | None) -> None:
    while worker.step_once() + (owner.step_once() if owner else 0) + worker.dispatcher.run_once():
        pass


def final_state(stores: Stores, clock: FakeClock) -> dict[str, Any]:
    """Per customer: their journey instances (journey, status, step, exit reason), the keys of
    the messages the engine recorded as sent, their segments and computed trait, and their
    membership-change events in log order; under ``_outbox``, what is left undelivered."""
    found: dict[str, Any] = {
        "_outbox": {"pending": stores.outbox.pending(), "dead": len(stores.outbox.dead(1000))}
    }
    reader = AudienceReader(stores.profiles, stores.audiences, stores.audience_catalog, clock)
    for i in range(CUSTOMERS):
        uid = user_id(i)
        profile = reader.find(("user_id", uid))
        assert profile is not None, f"no profile for {uid}"
        instances, _ = stores.runs.history(profile.id, 100)
        decisions = stores.delivery.decisions(profile.id, 1000)
        timeline = stores.events.get(stores.profiles.timeline(profile.id, 1000))
        changes = [
            [e.name, e.payload()["properties"]["segment_id"]]
            for e in timeline
            if e.name in ("Segment Entered", "Segment Exited")
        ]
        found[uid] = {
            "instances": sorted(
                [run.journey_id, run.status, run.step, run.exit_reason or ""] for run in instances
            ),
            "sent": sorted(d.message_key for d in decisions if d.outcome == "sent"),
            "segments": profile.segments,
            "carts": profile.traits.get("carts"),
            "changes": changes,
        }
    return found


def main(data_dir: Path, sent_file: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tick_file = data_dir / "tick"
    tick = int(tick_file.read_text()) if tick_file.exists() else 0
    clock = FakeClock(time(tick))
    settings = settings_for(data_dir)
    events = schedule()
    fd = os.open(sent_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    channels = {name: FileChannel(name, fd) for name in CHANNELS}
    with open_stores(settings, clock) as stores:
        print("running", flush=True)
        publish(stores.journeys, parse_journey(JOURNEY.read_text(encoding="utf-8")), time(0))
        for text in AUDIENCES:
            audience_catalog.publish(stores.audience_catalog, parse_audience(text), time(0))
        feed = open_feed(settings)
        worker = Worker(stores, settings, clock, channels=channels, feed=feed)
        worker.profiler = ProfileProcessor(
            stores.events, stores.profiles, settings.identity, clock, deterministic_ids(clock)
        )
        owner = None
        if feed is not None:
            owner = PartitionWorker(stores, settings, clock, feed, owner="driver")
        limits = IngestSettings()
        while tick < TICKS:
            clock.advance_to(time(tick))
            if tick in events:
                stores.events.append([_event(body, tick, limits) for body in events[tick]])
            run_to_rest(worker, owner)
            tick += 1
            write_atomically(tick_file, str(tick))
        final = final_state(stores, clock)
        write_atomically(data_dir / "final.json", json.dumps(final, indent=1))
        if feed is not None:
            feed.close()
    os.close(fd)
    write_atomically(data_dir / "done", "")


def _event(body: dict[str, Any], tick: int, limits: IngestSettings) -> Event:
    return event_from_json(
        body,
        source_id="shop",
        received_at=time(tick),
        sent_at=None,
        default_type=None,
        location="event",
        limits=limits,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
