"""Partitioned stepping: the journey workload of ``safar bench journeys`` (phase A: every
customer's events through profiles, audiences and the abandoned-cart journey's entries and goal
exits) with 0, 1 and 2 partition owners, each a process of its own. On PostgreSQL and NATS
JetStream (``postgres``), or on the embedded SQLite stores with the work feed in a SQLite file
(``bus.url = "sqlite:"``).

- ``0``: one stepper does everything, journeys included (ADR 11, no work feed): the baseline.
- ``N``: the stepper folds profiles and audiences and publishes to a feed of
  :data:`PARTITIONS` partitions; N partition owners step the journeys.

With ``audiences``, :data:`AUDIENCES` (segments and computed traits over the same events) are
published too and kept current per event: by the stepper without a feed, by the partition
owners with one (ADR 12, decision 8).

Every run has its own scratch schema and stream, the same preloaded events and the journey
published; the processes start, open their stores and wait, and the clock starts when they are
told to go. A run ends when every event has gone through journeys: the stepper's cursor for
``0``; for ``N``, the feed published to the end and every partition read to its end; with
``audiences``, also once every segment has been evaluated for everyone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import msgspec

from safar.bench.journeys_e2e import (
    APPEND_BATCH,
    JOURNEY,
    POLICY,
    TEMPLATES,
    event_stream,
    expected_entries,
)
from safar.bench.postgres import scratch_schema
from safar.config import SQLITE_FEED, Settings, load_settings
from safar.testing.nats import delete_streams_at

PARTITIONS = 8
#: Definitions ``audiences`` publishes: every event of the stream feeds or is read by some.
#: Windows are long, so events stamped at ``T0`` (2026-11-18) stay inside them for months.
AUDIENCES = (
    "{id: views_90d, compute: {event: Product Viewed, within: 90d}}",
    "{id: spend, compute: {event: Order Completed, kind: sum, value: properties.total}}",
    "{id: last_product, compute: {event: Product Added, kind: last, value: properties.name}}",
    "{id: browsers, name: Browsers, where: {performed: Product Viewed, at_least: 2, within: 90d}}",
    "{id: carted, name: Carted, where: {performed: Product Added, within: 60d,"
    " where: event.properties.price >= 20}}",
    "{id: buyers, name: Buyers, where: {performed: Order Completed}}",
    "{id: big, name: Big spenders, where: {trait: spend, gte: 50}}",
    "{id: reachable, name: Reachable, where: {all: [{identifier: email}, {trait: vip, eq: true}]}}",
)
#: How often the main process checks whether a run is done, and when it gives up.
POLL_S = 0.05
GIVE_UP_S = 1800


def run_partitions_bench(
    postgres: str | None,
    nats: str | None,
    *,
    customers: int,
    owners: tuple[int, ...] = (0, 1, 2),
    repeat: int = 1,
    as_json: bool = False,
    audiences: bool = False,
) -> int:
    """Measure each configuration in ``owners`` and print the results (see the module). With
    ``repeat``, the configurations take turns that many times, and each reports its median
    run (this machine's speed drifts over minutes; turns spread the drift over all)."""
    server = None
    if nats is None:
        from safar.testing.nats import NatsServer

        server = NatsServer()
        nats = server.url
    try:
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in owners}
        for _ in range(repeat):
            for n in owners:
                runs[n].append(_run(postgres, nats, customers, n, audiences))
    finally:
        if server is not None:
            server.remove()
    results = []
    for n in owners:
        ordered = sorted(runs[n], key=lambda r: r["seconds"])
        median = dict(ordered[len(ordered) // 2])
        median["all_seconds"] = [round(r["seconds"], 2) for r in runs[n]]
        results.append(median)
    base = next((r for r in results if r["owners"] == 0), None)
    for result in results:
        if base is not None:
            result["vs_one_stepper"] = result["events_per_s"] / base["events_per_s"]
    if as_json:
        document = {"customers": customers, "audiences": audiences, "runs": results}
        print(msgspec.json.encode(document).decode())
        return 0
    kept = f", {len(AUDIENCES)} audience definitions" if audiences else ""
    store = "PostgreSQL and NATS" if postgres else "SQLite"
    print(
        f"partitioned journeys on {store}, {customers:,} customers, {PARTITIONS} partitions,"
        f" phase A{kept}"
    )
    for r in results:
        ratio = f"  ×{r['vs_one_stepper']:.2f}" if "vs_one_stepper" in r else ""
        label = "one stepper (no feed)" if r["owners"] == 0 else f"{r['owners']} partition owner(s)"
        print(
            f"  {label:<26} {r['events']:>9,} events in {r['seconds']:6.1f} s"
            f"  {r['events_per_s']:>8,.0f} events/s  {r['journeys_per_s']:>7,.0f} entries/s{ratio}"
            + (f"  (stepper done at {r['published_s']:.1f} s)" if r["owners"] else "")
        )
        cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(r["cpu_s"].items()))
        print(f"  {'':<26} CPU seconds: {cpu}; every run: {r['all_seconds']} s")
    return 0


def _run(
    postgres: str | None, nats: str, customers: int, owners: int, audiences: bool
) -> dict[str, Any]:
    from safar.clock import SystemClock
    from safar.definitions import parse_audience, parse_journey
    from safar.runtime import audience_catalog
    from safar.runtime.audiences import live_definitions
    from safar.runtime.catalog import publish
    from safar.stores.bundle import open_feed, open_stores

    with tempfile.TemporaryDirectory() as data, _schema(postgres, f"p{owners}") as url:
        settings = _settings(Path(data), url, nats if owners else "", owners)
        with open_stores(settings, SystemClock()) as stores:
            journey = parse_journey(JOURNEY.read_text(encoding="utf-8"), str(JOURNEY))
            publish(stores.journeys, journey, SystemClock().now_ms())
            for text in AUDIENCES if audiences else ():
                definition = parse_audience(text)
                audience_catalog.publish(
                    stores.audience_catalog, definition, SystemClock().now_ms()
                )
            batch = []
            for event in event_stream(customers):
                batch.append(event)
                if len(batch) == APPEND_BATCH:
                    stores.events.append(batch)
                    batch = []
            if batch:
                stores.events.append(batch)
            last = stores.events.last_seq()
            ctx = multiprocessing.get_context("spawn")
            ready = ctx.Semaphore(0)
            go, stop = ctx.Event(), ctx.Event()
            used = ctx.Queue()
            encoded = msgspec.json.encode(settings)
            procs = [ctx.Process(target=_stepper, args=(encoded, ready, go, stop, used))]
            procs += [
                ctx.Process(target=_owner, args=(encoded, f"owner{n}", ready, go, stop, used))
                for n in range(owners)
            ]
            for proc in procs:
                proc.start()
            feed = None
            try:
                for _ in procs:
                    if not ready.acquire(timeout=120):
                        raise RuntimeError("a benchmark process did not start")
                feed = open_feed(settings)
                started = time.perf_counter()
                go.set()
                published = None
                while not _done(stores, feed, last) or (audiences and not _ready(stores)):
                    if time.perf_counter() - started > GIVE_UP_S:
                        raise RuntimeError(f"{owners} owner(s): not done after {GIVE_UP_S} s")
                    if published is None and feed is not None and feed.published_seq() >= last:
                        published = time.perf_counter() - started
                    time.sleep(POLL_S)
                seconds = time.perf_counter() - started
                segments, _ = live_definitions(stores.audience_catalog.all())
                members = {s.id: stores.audiences.count(s.id) for s in segments}
            finally:
                stop.set()
                cpu = dict(used.get(timeout=60) for _ in procs)
                for proc in procs:
                    proc.join(60)
                    if proc.is_alive():
                        proc.kill()
                if feed is not None:
                    # Once no process reads it any more (they logged failures to find it).
                    feed.close()
                    if nats != SQLITE_FEED:
                        delete_streams_at(nats, [settings.bus.stream])
    return {
        "owners": owners,
        "events": last,
        "seconds": seconds,
        "events_per_s": last / seconds,
        "journeys_per_s": expected_entries(customers) / seconds,
        # When the stepper had published the whole log (profiles and audiences done).
        "published_s": published if published is not None else seconds,
        # CPU seconds each process used from the start signal to the end of the run.
        "cpu_s": cpu,
        # Segment -> its members at the end (with ``audiences``): the same in every run.
        "members": members,
    }


@contextlib.contextmanager
def _schema(postgres: str | None, label: str) -> Iterator[str]:
    """A scratch schema's URL on ``postgres``, or ``""`` (the SQLite stores) without one."""
    if postgres is None:
        yield ""
        return
    with scratch_schema(postgres, label) as url:
        yield url


def _settings(data: Path, url: str, nats: str, owners: int) -> Settings:
    (data / "policy.yaml").write_text(POLICY, encoding="utf-8")
    settings = load_settings(data_dir=data, environ={})
    settings.storage.url = url
    settings.journeys.templates_dir = str(TEMPLATES)
    settings.journeys.policy_file = str(data / "policy.yaml")
    settings.bus.url = nats
    settings.bus.partitions = PARTITIONS
    token = uuid.uuid4().hex[:12]
    settings.bus.stream = f"SAFAR_BENCH_{token}"
    settings.bus.subject = f"safar.bench.{token}"
    # Short leases: the second owner gets its share within about a second of the start.
    settings.workers.lease_seconds = 2
    return settings


def _done(stores: Any, feed: Any, last: int) -> bool:
    if feed is None:
        return bool(stores.runs.processed_seq() >= last)
    if feed.published_seq() < last:
        return False
    return all(not feed.read(p, stores.runs.processed_seq(p), 1) for p in range(feed.partitions))


def _ready(stores: Any) -> bool:
    """Whether every segment has been evaluated for every customer (``scan:<id>`` done)."""
    from safar.runtime.audiences import live_definitions

    progress = stores.audiences.progress()
    segments, _ = live_definitions(stores.audience_catalog.all())
    return all(progress.get(f"scan:{s.id}", "").endswith(":done") for s in segments)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stepper(encoded: bytes, ready: Any, go: MpEvent, stop: MpEvent, used: Any) -> None:
    """The stepper: with a feed, profiles, audiences and publishing; without, journeys too."""
    from safar.channels.console import NullChannel
    from safar.clock import SystemClock
    from safar.runtime.serve import tune_gc
    from safar.runtime.worker import Worker
    from safar.stores.bundle import open_feed, open_stores

    settings = msgspec.json.decode(encoded, type=Settings)
    channels = {"email": NullChannel(name="email"), "sms": NullChannel(name="sms")}
    with open_stores(settings, SystemClock()) as stores:
        feed = open_feed(settings)
        worker = Worker(stores, settings, SystemClock(), channels=channels, feed=feed)
        tune_gc()
        ready.release()
        go.wait()
        cpu = _cpu()
        while not stop.is_set():
            if worker.step_once() == 0:
                stop.wait(0.005)
        used.put(("stepper", _cpu() - cpu))
        if feed is not None:
            feed.close()


def _owner(encoded: bytes, name: str, ready: Any, go: MpEvent, stop: MpEvent, used: Any) -> None:
    """A partition owner."""
    from safar.clock import SystemClock
    from safar.runtime.partitioned import PartitionWorker
    from safar.runtime.serve import tune_gc
    from safar.stores.bundle import open_feed, open_stores

    settings = msgspec.json.decode(encoded, type=Settings)
    with open_stores(settings, SystemClock()) as stores:
        feed = open_feed(settings)
        assert feed is not None
        owner = PartitionWorker(stores, settings, SystemClock(), feed, owner=name)
        tune_gc()
        ready.release()
        go.wait()
        cpu = _cpu()
        import threading

        halt = threading.Event()

        def watch() -> None:
            stop.wait()
            halt.set()

        threading.Thread(target=watch, daemon=True).start()
        owner.run(halt, idle_wait=0.005)
        used.put((name, _cpu() - cpu))
        feed.close()
