"""Many customers waiting: memory, and how late timers fire after a restart.

``waiting`` abandoned-cart instances are written straight through :meth:`RunStore.commit` in
batches, all in step ``wait_day`` (the reminder sent, the day's wait running), as the runtime
leaves them; their ``wake_at`` is spread uniformly over ``window`` seconds from a base instant.
Their customers have no profiles: the runtime then steps each with a stand-in profile without
traits (what it does for an erased customer), so ``vip_check`` sends nothing and every fired
instance exits. That measures the timers, not the profile store.

Then a fresh worker process starts (the worker of ``safar serve``, spawned, with its real
clock shifted so that the first timers come due ``LEAD`` seconds after the process is started)
and runs for ``observe`` seconds of due timers. Measured: its start-up time, its RSS while the
instances wait and its peak, and for every timer due while it ran, lateness = the runtime's
``now`` when it stepped the instance (its ``ended_at``) − ``wake_at``.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from safar.config import Settings

SEED_BATCH = 20_000
LEAD = 3.0
#: Where the timers start: 2026-11-24 00:00 UTC in the shifted clock of the worker.
BASE = 1_795_478_400_000
STEP = "wait_day"


class _ShiftedClock:
    """The system clock moved by a constant: it runs in real time."""

    def __init__(self, offset_ms: int) -> None:
        self._offset = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self._offset


def wake_at(index: int, waiting: int, window_ms: int) -> int:
    # A permutation of the indexes, so wake order is not insertion order.
    return BASE + (index * 7919 % waiting) * window_ms // waiting


def seed(settings: Settings, waiting: int, window_ms: int) -> dict[str, Any]:
    """Publish the journey and write ``waiting`` instances waiting in ``wait_day``."""
    from safar.bench.journeys_e2e import JOURNEY
    from safar.core.journey import instance_id
    from safar.definitions import parse_journey
    from safar.model.runs import Instance
    from safar.ports import JourneyUpdate
    from safar.runtime.catalog import publish
    from safar.stores.bundle import open_stores
    from safar.testing import FakeClock

    journey = parse_journey(JOURNEY.read_text(encoding="utf-8"), str(JOURNEY))
    entered = BASE - 86_400_000 - 3_600_000
    clock = FakeClock(entered)
    started = time.perf_counter()
    with open_stores(settings, clock) as stores:
        version, _ = publish(stores.journeys, journey, entered)
        for first in range(0, waiting, SEED_BATCH):
            instances = []
            for index in range(first, min(waiting, first + SEED_BATCH)):
                profile_id = f"p{index:011d}"
                key = f"cart-{index}"
                summary = {
                    "name": "Product Added",
                    "type": "track",
                    "timestamp": "2026-11-22T22:59:59.000Z",
                    "properties": {"product_id": f"p-{index % 500}", "price": 19.5},
                }
                instances.append(
                    Instance(
                        id=instance_id(journey.id, profile_id, key),
                        journey_id=journey.id,
                        version=version.version,
                        profile_id=profile_id,
                        identifier=("user_id", f"user-{index}"),
                        step=STEP,
                        entered_at=entered,
                        entry_key=key,
                        context={"event": summary, "splits": {"split": "email"}},
                        wake_at=wake_at(index, waiting, window_ms),
                        goal_until=entered + 3 * 86_400_000,
                        transitions=4,
                    )
                )
            stores.runs.commit(JourneyUpdate(instances=instances))
    seconds = time.perf_counter() - started
    data = Path(settings.data_dir)
    size = sum(p.stat().st_size for p in data.glob("safar.db*"))
    return {"seed_s": round(seconds, 1), "db_mb": round(size / 2**20, 1)}


def run_worker(encoded: bytes, offset_ms: int, until_ms: int, report: Connection) -> None:
    """Child process: the worker until the shifted clock reaches ``until_ms``."""
    import resource
    import threading

    from safar.channels.console import NullChannel
    from safar.runtime.serve import tune_gc
    from safar.runtime.worker import Worker
    from safar.stores.bundle import open_stores

    settings = msgspec.json.decode(encoded, type=Settings)
    clock = _ShiftedClock(offset_ms)
    stores = open_stores(settings, clock)
    channels = {name: NullChannel(name=name) for name in ("email", "sms")}
    worker = Worker(stores, settings, clock, channels=channels)
    tune_gc()
    report.send({"ready_ms": clock.now_ms()})
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    while clock.now_ms() < until_ms:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    stores.close()
    report.send({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_waiting(
    settings: Settings, waiting: int, *, window: float = 600.0, observe: float = 60.0
) -> dict[str, Any]:
    """Seed, restart, observe; ``settings.data_dir`` must be a fresh directory."""
    from safar.bench.journeys_e2e import JOURNEY, POLICY, TEMPLATES
    from safar.clock import SystemClock
    from safar.core.journey import instance_id
    from safar.definitions import parse_journey
    from safar.stores.bundle import open_stores

    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "policy.yaml").write_text(POLICY, encoding="utf-8")
    settings.journeys.templates_dir = str(TEMPLATES)
    settings.journeys.policy_file = str(data / "policy.yaml")
    window_ms = int(window * 1000)
    result: dict[str, Any] = {"waiting": waiting, "window_s": window}
    result.update(seed(settings, waiting, window_ms))

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    spawned = time.time_ns() // 1_000_000
    offset = BASE - int(LEAD * 1000) - spawned
    until = BASE + int(observe * 1000)
    process = ctx.Process(
        target=run_worker, args=(msgspec.json.encode(settings), offset, until, send)
    )
    process.start()
    assert process.pid is not None
    ready = receive.recv()["ready_ms"]
    time.sleep(max(0.0, (BASE - 500 - (time.time_ns() // 1_000_000 + offset)) / 1000))
    rss_waiting = _rss_mb(process.pid, "VmRSS")
    peak = receive.recv()["peak_rss_mb"]
    process.join(30)

    journey = parse_journey(JOURNEY.read_text(encoding="utf-8"), str(JOURNEY))
    due = [i for i in range(waiting) if wake_at(i, waiting, window_ms) <= until - 1000]
    wakes = {
        instance_id(journey.id, f"p{i:011d}", f"cart-{i}"): wake_at(i, waiting, window_ms)
        for i in due
    }
    late: list[int] = []
    fired_first = until
    with open_stores(settings, SystemClock()) as stores:
        ids = list(wakes)
        for first in range(0, len(ids), 10_000):
            for instance in stores.runs.instances(ids[first : first + 10_000]):
                if instance.ended_at is not None:
                    late.append(instance.ended_at - wakes[instance.id])
                    fired_first = min(fired_first, instance.ended_at)
    late.sort()
    started = spawned + offset
    result.update(
        startup_s=round((ready - started) / 1000, 2),
        first_due_s=LEAD,
        first_fired_s=round((fired_first - started) / 1000, 3),
        rss_mb_waiting=round(rss_waiting, 1),
        peak_rss_mb=round(peak, 1),
        due_while_running=len(wakes),
        fired=len(late),
        not_fired=len(wakes) - len(late),
        late_p50_ms=late[len(late) // 2] if late else None,
        late_p99_ms=late[min(len(late) - 1, int(len(late) * 0.99))] if late else None,
        late_max_ms=late[-1] if late else None,
    )
    return result


def _rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0
