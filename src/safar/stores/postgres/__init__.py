"""PostgreSQL adapters for every store port (the scale-out backend, docs/deploy.md).

All stores of one process share one :class:`~safar.stores.postgres.db.PgDatabase` (one pool).
"""

from __future__ import annotations

from safar.config import Settings
from safar.ports import Clock
from safar.stores.bundle import Stores


def open_postgres_stores(settings: Settings, clock: Clock) -> Stores:
    """Every store in the PostgreSQL database ``settings.storage.url`` names, migrated to this
    version's schema."""
    from safar.stores.postgres.audiences import PgAudienceCatalog, PgAudienceStore
    from safar.stores.postgres.db import PgDatabase
    from safar.stores.postgres.delivery import PgDeliveryStore
    from safar.stores.postgres.events import PgEventLog
    from safar.stores.postgres.journeys import PgJourneyStore
    from safar.stores.postgres.keys import PgKeyStore
    from safar.stores.postgres.leases import PgLeaseStore
    from safar.stores.postgres.outbox import PgOutbox
    from safar.stores.postgres.profiles import PgProfileStore
    from safar.stores.postgres.runs import PgRunStore

    db = PgDatabase(settings.storage.url, max_size=settings.storage.pool_size)
    window_ms = int(settings.ingest.dedupe_window_hours * 3600 * 1000)
    events = PgEventLog(db, clock, dedupe_window_ms=window_ms)
    return Stores(
        events=events,
        keys=PgKeyStore(db, clock),
        profiles=PgProfileStore(db),
        journeys=PgJourneyStore(db),
        runs=PgRunStore(db),
        outbox=PgOutbox(db),
        delivery=PgDeliveryStore(db),
        audience_catalog=PgAudienceCatalog(db),
        audiences=PgAudienceStore(db),
        leases=PgLeaseStore(db),
        closers=[events.close, db.close],
    )
