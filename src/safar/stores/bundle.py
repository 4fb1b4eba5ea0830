"""Open the set of stores one Safar installation uses, without callers knowing the backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from safar.config import SQLITE_FEED, Settings
from safar.ports import (
    AudienceCatalog,
    AudienceStore,
    Clock,
    DeliveryStore,
    EventLog,
    JourneyStore,
    KeyStore,
    LeaseStore,
    Outbox,
    ProfileStore,
    RunStore,
    WorkFeed,
)


@dataclass
class Stores:
    """The stores of one installation. ``close()`` releases what they hold, in order."""

    events: EventLog
    keys: KeyStore
    profiles: ProfileStore
    journeys: JourneyStore
    runs: RunStore
    outbox: Outbox
    delivery: DeliveryStore
    audience_catalog: AudienceCatalog
    audiences: AudienceStore
    leases: LeaseStore
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_stores(settings: Settings, clock: Clock) -> Stores:
    """The stores ``settings.storage.url`` names: PostgreSQL, or when empty the embedded SQLite
    stores under ``settings.data_dir``."""
    if settings.storage.url:
        from safar.stores.postgres import open_postgres_stores

        return open_postgres_stores(settings, clock)
    return open_sqlite_stores(settings, clock)


def open_feed(settings: Settings) -> WorkFeed | None:
    """The work feed ``settings.bus.url`` names (NATS JetStream, or ``sqlite:`` in the data
    directory), or None when it is empty."""
    bus = settings.bus
    if not bus.url:
        return None
    if bus.url == SQLITE_FEED:
        from safar.stores.sqlite.work import SqliteWorkFeed

        # Not synced at every commit: the feed can always be published again from the log, so
        # a power loss costs at most its last publishes, which the stepper then makes again.
        return SqliteWorkFeed(
            settings.work_feed_path,
            partitions=bus.partitions,
            synchronous="normal",
            max_age_s=bus.max_age_hours * 3600,
        )
    from safar.stores.nats import JetStreamWorkFeed

    return JetStreamWorkFeed(
        bus.url,
        partitions=bus.partitions,
        stream=bus.stream,
        subject=bus.subject,
        max_age_s=bus.max_age_hours * 3600,
    )


def open_sqlite_stores(settings: Settings, clock: Clock) -> Stores:
    """The embedded SQLite stores under ``settings.data_dir``.

    Two database files: the event log (written by ingestion) and the state (written by the
    processors), so neither ever waits for the other's write lock (ADR 5).
    """
    from safar.stores.sqlite.audiences import SqliteAudienceCatalog, SqliteAudienceStore
    from safar.stores.sqlite.db import Database
    from safar.stores.sqlite.delivery import SqliteDeliveryStore
    from safar.stores.sqlite.events import SqliteEventLog
    from safar.stores.sqlite.journeys import SqliteJourneyStore
    from safar.stores.sqlite.keys import SqliteKeyStore
    from safar.stores.sqlite.leases import SqliteLeaseStore
    from safar.stores.sqlite.outbox import SqliteOutbox
    from safar.stores.sqlite.profiles import SqliteProfileStore
    from safar.stores.sqlite.runs import SqliteRunStore

    synchronous = settings.storage.synchronous
    log_db = Database(settings.events_database_path, synchronous=synchronous)
    state_db = Database(settings.database_path, synchronous=synchronous)
    window_ms = int(settings.ingest.dedupe_window_hours * 3600 * 1000)
    events = SqliteEventLog(log_db, clock, dedupe_window_ms=window_ms)
    return Stores(
        events=events,
        keys=SqliteKeyStore(state_db, clock),
        profiles=SqliteProfileStore(state_db),
        journeys=SqliteJourneyStore(state_db),
        runs=SqliteRunStore(state_db),
        outbox=SqliteOutbox(state_db),
        delivery=SqliteDeliveryStore(state_db),
        audience_catalog=SqliteAudienceCatalog(state_db),
        audiences=SqliteAudienceStore(state_db),
        leases=SqliteLeaseStore(state_db),
        # Flushing the dedupe keys first spares the next start re-reading the log's tail.
        closers=[events.close, log_db.close, state_db.close],
    )


def memory_stores(clock: Clock, *, dedupe_window_ms: int = 24 * 3600 * 1000) -> Stores:
    """In-memory stores, for tests and simulations."""
    from safar.stores.memory.audiences import MemoryAudienceStores
    from safar.stores.memory.events import MemoryEventLog
    from safar.stores.memory.journeys import MemoryJourneyStores
    from safar.stores.memory.keys import MemoryKeyStore
    from safar.stores.memory.leases import MemoryLeaseStore
    from safar.stores.memory.profiles import MemoryProfileStore

    journeys = MemoryJourneyStores()
    audiences = MemoryAudienceStores()
    return Stores(
        events=MemoryEventLog(clock, dedupe_window_ms=dedupe_window_ms),
        keys=MemoryKeyStore(clock),
        profiles=MemoryProfileStore(),
        journeys=journeys,
        runs=journeys,
        outbox=journeys,
        delivery=journeys,
        audience_catalog=audiences,
        audiences=audiences,
        leases=MemoryLeaseStore(),
    )
