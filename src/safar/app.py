"""The full HTTP application: the tracking API and the management API over one set of stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware

from safar.api.errors import EXCEPTION_HANDLERS
from safar.api.guard import RefuseNul
from safar.api.routes import management_routes
from safar.config import Settings
from safar.ingest.http import ingest_routes
from safar.ingest.writer import IngestWriter
from safar.ports import Clock
from safar.runtime.links import Links, load_secret
from safar.runtime.warehouse_keeper import WAREHOUSE_FILE
from safar.stores.bundle import Stores


def create_app(*, stores: Stores, settings: Settings, clock: Clock) -> Starlette:
    """The app ``safar serve`` runs. Its lifespan starts and drains the ingestion writer thread."""
    writer = IngestWriter(stores.events)
    links = Links(load_secret(settings.secret_path), settings.public_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            writer.close()

    routes = [
        *ingest_routes(keys=stores.keys, writer=writer, clock=clock, settings=settings.ingest),
        *management_routes(
            keys=stores.keys,
            events=stores.events,
            profiles=stores.profiles,
            clock=clock,
            identity=settings.identity,
            journeys=stores.journeys,
            runs=stores.runs,
            outbox=stores.outbox,
            delivery=stores.delivery,
            links=links,
            templates_dir=Path(settings.journeys.templates_dir),
            audience_catalog=stores.audience_catalog,
            audiences=stores.audiences,
            warehouse_path=Path(settings.data_dir) / WAREHOUSE_FILE,
            partitions=settings.bus.partitions if settings.bus.url else 0,
        ),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
        middleware=[Middleware(RefuseNul)],
    )
