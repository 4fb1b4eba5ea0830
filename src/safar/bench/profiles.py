"""``safar bench ingest --only profiles``: the profile processor alone, over ingestion's events.

The events are :func:`safar.bench.ingest.make_batches`' (track mostly, an identify per ~20
events, ``users`` people), validated as ingestion validates them and appended, untimed, to a
fresh store: the SQLite stores in a temporary directory, or a scratch schema with ``postgres``.
Then a :class:`~safar.runtime.profiler.ProfileProcessor` on the system clock (garbage collector
tuned as the worker process tunes it) runs batches of up to ``batch`` events until the log is
consumed: that is timed.

The generator meets each person for the first time early on (every person within the first
``users`` events), so the report gives events/s over all events and over the batches after the
last new person (*known*: every event's person already has a profile), and the seconds spent
inside each store call; the rest is the processor's own Python. ``repeat`` runs again on a fresh
store each time. Numbers are reported, never asserted.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from safar.bench.ingest import make_batches
from safar.config import Settings
from safar.model.events import Event

#: Events appended per call while filling the log (untimed).
_APPEND_BATCH = 2_500
#: Profile store calls timed one by one (``events.read`` is the log's).
_TIMED = ("load", "load_clusters", "trait_writes", "apply", "processed_seq")
#: When the events claim to have been received (2026-11-01, as their timestamps).
_RECEIVED_AT = 1_793_491_200_000


def make_events(events: int, users: int, settings: Settings) -> list[Event]:
    """``events`` of :func:`~safar.bench.ingest.make_batches`' events, validated as ingestion
    validates them."""
    from safar.ingest.validate import event_from_json

    return [
        event_from_json(
            message,
            source_id="bench",
            received_at=_RECEIVED_AT,
            sent_at=None,
            default_type=None,
            location="bench",
            limits=settings.ingest,
        )
        for batch in make_batches(events, _APPEND_BATCH, users)
        for message in batch
    ]


def last_new_person(events: Sequence[Event]) -> int:
    """How many of ``events`` there are up to and including the last one whose person (user id)
    comes up for the first time."""
    met: set[str | None] = set()
    last = 0
    for position, event in enumerate(events, start=1):
        if event.user_id not in met:
            met.add(event.user_id)
            last = position
    return last


def measure_profiles(
    settings: Settings, events: Sequence[Event], batch: int, pipelined: bool | None = None
) -> dict[str, Any]:
    """One run: append ``events`` to the empty stores ``settings`` names, then time the profile
    processor over them in batches of up to ``batch`` (``pipelined``: see
    :class:`~safar.runtime.profiler.ProfileProcessor`).

    ``store_s`` is the time spent in each store call; ``processor_s`` the rest of the
    processor's thread. A pipelined processor's applies run on a thread of their own, beside
    it: they are ``store_s["apply"]`` but not subtracted."""
    from safar.clock import SystemClock
    from safar.runtime.profiler import ProfileProcessor
    from safar.runtime.serve import server_gc
    from safar.stores.bundle import open_stores

    known_after = last_new_person(events)
    # The system clock, as in a worker: profile ids start with the time they were made, so each
    # batch's new profiles land at the end of the indexes (a clock standing still would scatter
    # them over the whole of each index).
    clock = SystemClock()
    with open_stores(settings, clock) as stores:
        for start in range(0, len(events), _APPEND_BATCH):
            stores.events.append(events[start : start + _APPEND_BATCH])
        spent = dict.fromkeys((*_TIMED, "events.read"), 0.0)
        for name in _TIMED:
            setattr(stores.profiles, name, _timed(getattr(stores.profiles, name), spent, name))
        setattr(stores.events, "read", _timed(stores.events.read, spent, "events.read"))  # noqa: B010
        processor = ProfileProcessor(
            stores.events, stores.profiles, settings.identity, clock, pipelined=pipelined
        )
        with server_gc():
            known_s, known_events, position = 0.0, 0, 0
            started = time.perf_counter()
            while True:
                batch_started = time.perf_counter()
                done = processor.run_once(batch)
                if not done:
                    break
                # The log's seqs are 1, 2, …: this batch began right after ``position``.
                if position >= known_after:
                    known_s += time.perf_counter() - batch_started
                    known_events += done
                position += done
            elapsed = time.perf_counter() - started
        processed = stores.profiles.processed_seq()
        beside = processor.pipelined
    if processed != len(events):
        raise RuntimeError(f"the processor stopped at seq {processed} of {len(events)}")
    return {
        "events": len(events),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(events) / elapsed),
        "known_events": known_events,
        "known_events_per_s": round(known_events / known_s) if known_s else None,
        "pipelined": beside,
        "store_s": {name: round(seconds, 3) for name, seconds in spent.items()},
        "processor_s": round(elapsed - sum(spent.values()) + (spent["apply"] if beside else 0), 3),
    }


def run_profiles_bench(
    settings: Settings,
    *,
    events: int,
    users: int,
    batch: int,
    repeat: int = 1,
    postgres: str | None = None,
    as_json: bool = False,
    pipelined: bool | None = None,
) -> int:
    """Run the benchmark ``repeat`` times, each on a fresh store, and print the report.
    Returns a process exit code."""
    for name, value in (("--events", events), ("--users", users), ("--profile-batch", batch)):
        if value < 1:
            print(f"safar: {name} must be at least 1, not {value}", file=sys.stderr)
            return 2
    if repeat < 1:
        print(f"safar: --repeat must be at least 1, not {repeat}", file=sys.stderr)
        return 2
    if not as_json:
        print(f"generating {events:,} events of {users:,} people ...", file=sys.stderr, flush=True)
    generated = make_events(events, users, settings)
    runs: list[dict[str, Any]] = []
    for run in range(repeat):
        with _fresh_store(settings, postgres, f"profiles{run}") as fresh:
            runs.append(measure_profiles(fresh, generated, batch, pipelined))
        if not as_json:
            print(f"run {run + 1}: {runs[-1]['events_per_s']:,} events/s", file=sys.stderr)
    report = {
        "store": "postgresql" if postgres else "sqlite",
        "events": events,
        "users": users,
        "batch": batch,
        "median_events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
        "runs": runs,
    }
    if as_json:
        print(msgspec.json.encode(report).decode())
    else:
        print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    return 0


@contextmanager
def _fresh_store(settings: Settings, postgres: str | None, label: str) -> Iterator[Settings]:
    """``settings`` on empty stores: a new data directory, and with ``postgres`` a scratch
    schema; both removed on the way out."""
    work = Path(tempfile.mkdtemp(prefix="safar-bench-profiles-"))
    try:
        storage = msgspec.structs.replace(settings.storage, url="")
        if postgres is None:
            yield msgspec.structs.replace(settings, data_dir=str(work), storage=storage)
            return
        from safar.bench.postgres import scratch_schema

        with scratch_schema(postgres, label) as url:
            storage = msgspec.structs.replace(storage, url=url)
            yield msgspec.structs.replace(settings, data_dir=str(work), storage=storage)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed(call: Callable[..., Any], spent: dict[str, float], name: str) -> Callable[..., Any]:
    """``call``, adding the seconds each call takes to ``spent[name]``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return timed
