"""Open the set of stores one Safar installation uses, without callers knowing the backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from safar.config import Settings
from safar.ports import Clock, EventLog, KeyStore, ProfileStore


@dataclass
class Stores:
    """The stores of one installation. ``close()`` releases what they hold, in order."""

    events: EventLog
    keys: KeyStore
    profiles: ProfileStore
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()


def open_stores(settings: Settings, clock: Clock) -> Stores:
    """The embedded SQLite stores under ``settings.data_dir``."""
    from safar.stores.sqlite.db import Database
    from safar.stores.sqlite.events import SqliteEventLog
    from safar.stores.sqlite.keys import SqliteKeyStore
    from safar.stores.sqlite.profiles import SqliteProfileStore

    db = Database(settings.database_path, synchronous=settings.storage.synchronous)
    window_ms = int(settings.ingest.dedupe_window_hours * 3600 * 1000)
    events = SqliteEventLog(db, clock, dedupe_window_ms=window_ms)
    return Stores(
        events=events,
        keys=SqliteKeyStore(db, clock),
        profiles=SqliteProfileStore(db),
        # Flushing the dedupe keys first spares the next start re-reading the log's tail.
        closers=[events.close, db.close],
    )


def memory_stores(clock: Clock, *, dedupe_window_ms: int = 24 * 3600 * 1000) -> Stores:
    """In-memory stores, for tests and simulations."""
    from safar.stores.memory.events import MemoryEventLog
    from safar.stores.memory.keys import MemoryKeyStore
    from safar.stores.memory.profiles import MemoryProfileStore

    return Stores(
        events=MemoryEventLog(clock, dedupe_window_ms=dedupe_window_ms),
        keys=MemoryKeyStore(clock),
        profiles=MemoryProfileStore(),
    )
