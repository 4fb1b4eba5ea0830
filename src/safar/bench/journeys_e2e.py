"""End to end: customers' events through the abandoned-cart journey to a null channel, in process.

Each customer sends five events, thirty seconds apart, a new customer every 50 ms of event time
(so about 2,400 are active at once, interleaved as in a real log): an identify (user id,
anonymous id, email, phone, ``vip`` for the same ~20% as the DBOS peer), two Product Viewed, a
Product Added (price under 10 for one in ten, who does not enter), then Order Completed (the
goal, for the peer's 10%) or Page Viewed. They are validated as ingestion does and appended to
the SQLite event log in batches of 2,500; the append is timed on its own.

Then, with a :class:`~safar.testing.FakeClock` standing still:

- phase A: the worker's stepper and dispatcher until the log is consumed (profiles, journey
  entries, goal exits);
- phase B: the clock moved to each next due timer (1 h, then 1 d), stepper and dispatcher until
  idle each time: timers, split, policy gate (default policy, quiet hours off), rendering of the
  example templates, the null channel, and the receipts they append to the log.

The baseline, in its own process and data directory, is the same events through the profile
processor alone (no journey published).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safar.bench.dbos_peer import customer_id, is_vip, orders
from safar.config import IngestSettings, Settings
from safar.model.events import Event, iso

EVENTS_PER_CUSTOMER = 5
APPEND_BATCH = 2_500
ARRIVAL_MS = 50
SPACING_MS = 30_000
ORDER_SHARE = 0.1
T0 = 1_795_000_000_000  # 2026-11-18, a Wednesday at 08:26 UTC
ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
JOURNEY = EXAMPLES / "journeys" / "abandoned_cart.yaml"
TEMPLATES = EXAMPLES / "templates"
#: The default policy, but with no quiet hours: the clock jumps, so quiet hours would only
#: move messages around the night.
POLICY = "quiet_hours: false\n"


def customer_events(index: int) -> list[dict[str, Any]]:
    """The five events of customer ``index``, without timestamps."""
    uid = customer_id(index)
    base = {"userId": uid, "anonymousId": f"anon-{index}"}
    traits = {
        "email": f"{uid}@example.com",
        "phone": f"+1415{index:07d}",
        "vip": is_vip(uid),
        "first_name": f"Name{index % 97}",
    }
    product = {"product_id": f"p-{index % 500}", "name": f"Product {index % 500}"}
    price = 5.0 if index % 10 == 9 else 19.5 + index % 50
    last: dict[str, Any] = (
        {"event": "Order Completed", "properties": {"order_id": f"o-{index}", "total": price}}
        if orders(uid, ORDER_SHARE)
        else {"event": "Page Viewed", "properties": {"path": "/"}}
    )
    bodies: list[dict[str, Any]] = [
        {"type": "identify", "traits": traits},
        {"type": "track", "event": "Product Viewed", "properties": {**product, "price": price}},
        {"type": "track", "event": "Product Viewed", "properties": {**product, "price": price}},
        {
            "type": "track",
            "event": "Product Added",
            "properties": {**product, "price": price, "cart_id": f"c-{index}"},
        },
        {"type": "track", **last},
    ]
    return [{**base, **body} for body in bodies]


def event_stream(customers: int) -> Iterator[Event]:
    """Every customer's events in timestamp order, validated as ingestion validates them."""
    from safar.ingest.validate import event_from_json

    limits = IngestSettings()
    lag = SPACING_MS // ARRIVAL_MS
    cache: dict[int, list[dict[str, Any]]] = {}
    for tick in range(customers + lag * (EVENTS_PER_CUSTOMER - 1)):
        at = T0 + tick * ARRIVAL_MS
        for k in range(EVENTS_PER_CUSTOMER):
            index = tick - k * lag
            if not 0 <= index < customers:
                continue
            if k == 0:
                cache[index] = customer_events(index)
            body = cache[index][k]
            if k == EVENTS_PER_CUSTOMER - 1:
                del cache[index]
            body["messageId"] = f"{customer_id(index)}-{k}"
            body["timestamp"] = iso(at)
            yield event_from_json(
                body,
                source_id="bench",
                received_at=at,
                sent_at=None,
                default_type=None,
                location="event",
                limits=limits,
            )


def expected_entries(customers: int) -> int:
    """Customers whose Product Added passes the entry condition (price >= 10)."""
    return sum(1 for i in range(customers) if i % 10 != 9)


def run_e2e(settings: Settings, customers: int, journeys: bool) -> dict[str, Any]:
    """One run on a fresh data directory (``settings.data_dir``); call in a process of its own,
    so that its peak RSS is its own."""
    from safar.channels.console import NullChannel
    from safar.definitions import parse_journey
    from safar.runtime.catalog import publish
    from safar.runtime.serve import tune_gc
    from safar.runtime.worker import Worker
    from safar.stores.bundle import open_stores
    from safar.testing import FakeClock

    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "policy.yaml").write_text(POLICY, encoding="utf-8")
    settings.journeys.templates_dir = str(TEMPLATES)
    settings.journeys.policy_file = str(data / "policy.yaml")
    last_event = T0 + (customers - 1) * ARRIVAL_MS + (EVENTS_PER_CUSTOMER - 1) * SPACING_MS
    clock = FakeClock(last_event + 1000)
    email, sms = NullChannel(name="email"), NullChannel(name="sms")
    result: dict[str, Any] = {"customers": customers}
    with open_stores(settings, clock) as stores:
        if journeys:
            journey = parse_journey(JOURNEY.read_text(encoding="utf-8"), str(JOURNEY))
            publish(stores.journeys, journey, clock.now_ms())
        appended, append_s = 0, 0.0
        batch: list[Event] = []
        for event in event_stream(customers):
            batch.append(event)
            if len(batch) == APPEND_BATCH:
                started = time.perf_counter()
                appended += stores.events.append(batch).appended
                append_s += time.perf_counter() - started
                batch = []
        if batch:
            started = time.perf_counter()
            appended += stores.events.append(batch).appended
            append_s += time.perf_counter() - started
        del batch
        result.update(events=appended, append_s=append_s)

        worker = Worker(stores, settings, clock, channels={"email": email, "sms": sms})
        tune_gc()  # as the worker process of ``safar serve`` does
        last = stores.events.last_seq()
        started = time.perf_counter()
        if journeys:
            while stores.runs.processed_seq() < last:
                worker.step_once()
                worker.dispatcher.run_once()
        else:
            while worker.profiler.run_once(20_000):
                pass
        result["phase_a_s"] = time.perf_counter() - started
        result["events_per_s"] = appended / result["phase_a_s"]
        if journeys:
            result.update(_phase_b(worker, stores, clock))
            entered = expected_entries(customers)
            total = result["phase_a_s"] + result["phase_b_s"]
            result.update(
                entered=entered,
                total_s=total,
                journeys_per_s=entered / total,
                messages=email.sent + sms.sent,
            )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _phase_b(worker: Any, stores: Any, clock: Any) -> dict[str, Any]:
    started = time.perf_counter()
    jumps = 0
    while True:
        while worker.step_once() + worker.dispatcher.run_once():
            pass
        due = [t for t in (stores.runs.next_wake(), stores.outbox.next_due()) if t is not None]
        if not due:
            break
        # A due entry still leased (none should be) is retried once its lease ends.
        clock.advance_to(max(min(due), clock.now_ms() + 1))
        jumps += 1
    return {"phase_b_s": time.perf_counter() - started, "clock_jumps": jumps}
