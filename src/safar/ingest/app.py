"""A Starlette app serving only the tracking API, for tests and benchmarks.

The full server composes :func:`safar.ingest.http.ingest_routes` with the management API instead.
"""

from __future__ import annotations

from starlette.applications import Starlette

from safar.config import IngestSettings
from safar.ingest.http import ingest_routes
from safar.ingest.writer import IngestWriter
from safar.ports import Clock, KeyStore


def create_ingest_app(
    *, keys: KeyStore, writer: IngestWriter, clock: Clock, settings: IngestSettings
) -> Starlette:
    """An app with the tracking API's routes. The caller starts and closes ``writer``."""
    return Starlette(routes=ingest_routes(keys=keys, writer=writer, clock=clock, settings=settings))
