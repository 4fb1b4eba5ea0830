"""``safar bench journeys``: the journey engine's benchmarks, each beside its baseline or peer.

- ``e2e``: customers' events through the abandoned-cart journey to a null channel, in process on
  the SQLite stores (:mod:`safar.bench.journeys_e2e`); baseline: the same events through the
  profile processor alone.
- ``dbos``: the same journey as DBOS durable workflows on SQLite (:mod:`safar.bench.dbos_peer`);
  the peer of ``e2e``'s journeys/s.
- ``latency``: from ``/v1/batch``'s acknowledgement to the message handed to the channel, at a
  steady rate, against a real ``safar serve`` (:mod:`safar.bench.journeys_latency`).
- ``waiting``: many customers in a wait step; memory and timer lateness after a restart
  (:mod:`safar.bench.journeys_waiting`).

Every run that holds state works in a fresh temporary directory; ``e2e``, its baseline and
``dbos`` each run in a process of their own, so each peak RSS is its own. Numbers are reported,
never asserted.
"""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from safar.config import SQLITE_FEED, Settings

PARTS = ("e2e", "dbos", "latency", "waiting")
#: (section, key, comparison, target) reported as met or not.
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("e2e", "events_per_s", ">=", 50_000),
    ("latency", "p99_ms", "<=", 100),
    ("waiting", "peak_rss_mb", "<=", 1024),
    ("waiting", "late_max_ms", "<=", 1000),
    ("dbos", "ratio", ">=", 10),
)

T = TypeVar("T")


def _isolated(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a fresh spawned process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _fresh(settings: Settings, directory: Path) -> Settings:
    copy = msgspec.json.decode(msgspec.json.encode(settings), type=Settings)
    copy.data_dir = str(directory)
    return copy


def run_journeys_bench(
    settings: Settings,
    *,
    customers: int,
    latency_seconds: float,
    waiting: int,
    dbos_customers: int,
    parts: Collection[str] = PARTS,
    as_json: bool = False,
    latency_rate: float = 5_000.0,
    waiting_observe: float = 60.0,
    postgres: str | None = None,
    bus: str | None = None,
) -> int:
    """Run the chosen parts and print their report. Returns a process exit code.

    With ``postgres``, ``e2e``, its baseline and ``latency`` run on scratch schemas of that
    database and the DBOS peer on a database of its own beside it (``safar_dbos_bench``, dropped
    and created); ``waiting`` stays on SQLite. With ``bus`` (a NATS URL), ``latency`` runs with
    a work feed there (partitioned journeys, ADR 12), on a stream of its own."""
    from safar.bench.journeys_e2e import JOURNEY, TEMPLATES, run_e2e

    def say(message: str) -> None:
        if not as_json:
            print(message, file=sys.stderr, flush=True)

    if not (JOURNEY.exists() and TEMPLATES.is_dir()):
        print(
            f"safar: {JOURNEY} not found; run the benchmark from a source checkout", file=sys.stderr
        )
        return 2

    work = Path(tempfile.mkdtemp(prefix="safar-bench-journeys-"))
    report: dict[str, Any] = {"machine": _machine(), "load_before": os.getloadavg()}
    report["machine"]["store"] = "postgresql" if postgres else "sqlite"
    try:
        if "e2e" in parts:
            say(f"e2e: {customers:,} customers through the profile processor alone ...")
            with _store(settings, work / "profiles", postgres) as fresh:
                baseline = _isolated(run_e2e, fresh, customers, False)
            say("e2e: the same events through the abandoned-cart journey ...")
            with _store(settings, work / "journeys", postgres) as fresh:
                e2e = _isolated(run_e2e, fresh, customers, True)
            e2e["baseline_events_per_s"] = baseline["events_per_s"]
            e2e["baseline_peak_rss_mb"] = baseline["peak_rss_mb"]
            e2e["ratio_to_baseline"] = e2e["events_per_s"] / baseline["events_per_s"]
            e2e["append_events_per_s"] = e2e["events"] / e2e["append_s"]
            report["e2e"] = e2e
        if "dbos" in parts and dbos_customers > 0:
            say(f"dbos: {dbos_customers:,} customers as DBOS workflows ...")
            try:
                dbos = _isolated(_dbos, dbos_customers, work / "dbos", postgres)
            except RuntimeError as exc:  # the bench extra is not installed
                dbos = {"skipped": str(exc)}
            if "e2e" in report and "journeys_per_s" in dbos:
                dbos["ratio"] = report["e2e"]["journeys_per_s"] / dbos["journeys_per_s"]
            report["dbos"] = dbos
        if "latency" in parts:
            from safar.bench.journeys_latency import run_latency

            # The webhook channel makes one HTTP call at a time from the dispatcher thread (a few
            # hundred µs each here), so it is measured at a rate it can sustain.
            runs = (("latency", "console", latency_rate), ("latency_webhook", "webhook", 500.0))
            for name, sink, rate in runs:
                say(f"{name}: {rate:,.0f} events/s for {latency_seconds:g} s ({sink}) ...")
                (work / sink).mkdir()
                with _store(settings, work / f"{sink}-store", postgres) as fresh:
                    if bus:
                        token = uuid.uuid4().hex[:12]
                        fresh.bus.url = bus
                        fresh.bus.stream = f"SAFAR_BENCH_{token}"
                        fresh.bus.subject = f"safar.bench.{token}"
                    try:
                        report[name] = run_latency(
                            fresh,
                            work / sink,
                            seconds=latency_seconds,
                            rate=rate,
                            sink=sink,
                            warmup=min(3.0, latency_seconds / 4),
                        )
                    finally:
                        if bus and bus != SQLITE_FEED:  # a SQLite feed goes with its data dir
                            from safar.testing.nats import delete_streams_at

                            delete_streams_at(bus, [fresh.bus.stream])
        if "waiting" in parts:
            from safar.bench.journeys_waiting import run_waiting

            say(f"waiting: seeding {waiting:,} waiting instances, then a restart ...")
            report["waiting"] = run_waiting(
                _fresh(settings, work / "waiting"), waiting, observe=waiting_observe
            )
        report["load_after"] = os.getloadavg()
        _check(report)
        if as_json:
            print(msgspec.json.encode(report).decode())
        else:
            print(_format(report))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _store(settings: Settings, directory: Path, postgres: str | None) -> Iterator[Settings]:
    """Settings for a fresh run: a new data directory, and with ``postgres`` a scratch schema."""
    fresh = _fresh(settings, directory)
    if postgres is None:
        yield fresh
        return
    from safar.bench.postgres import scratch_schema

    with scratch_schema(postgres, directory.name) as url:
        fresh.storage.url = url
        yield fresh


def _dbos(customers: int, directory: Path, postgres: str | None = None) -> dict[str, Any]:
    from safar.bench.dbos_peer import run_dbos, run_dbos_postgres

    if postgres is not None:
        return dict(run_dbos_postgres(customers, postgres))
    return dict(run_dbos(customers, directory))


def _machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _check(report: dict[str, Any]) -> None:
    met: dict[str, str] = {}
    for section, key, comparison, target in TARGETS:
        value = report.get(section, {}).get(key)
        if value is None:
            continue
        ok = value >= target if comparison == ">=" else value <= target
        met[f"{section}.{key} {comparison} {target:g}"] = "met" if ok else "NOT met"
    report["targets"] = met


def _format(report: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, values in report.items():
        if not isinstance(values, dict):
            lines.append(f"{section}: {_show(values)}")
            continue
        if not values:
            continue
        lines.append(f"[{section}]")
        width = max((len(k) for k in values), default=0)
        lines += [f"  {k:<{width}}  {_show(v)}" for k, v in values.items()]
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, tuple | list):
        return " ".join(_show(v) for v in value)
    return str(value)
