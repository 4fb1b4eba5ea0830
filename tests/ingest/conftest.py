"""Fixtures for the tracking API: in-memory stores on a fake clock, a running writer, a client."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from safar.config import IngestSettings
from safar.ingest.app import create_ingest_app
from safar.ingest.writer import IngestWriter
from safar.model.keys import Source
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.keys import MemoryKeyStore
from safar.testing import FakeClock


@pytest.fixture
def limits() -> IngestSettings:
    return IngestSettings()


@pytest.fixture
def event_log(clock: FakeClock) -> MemoryEventLog:
    return MemoryEventLog(clock)


@pytest.fixture
def keys(clock: FakeClock) -> MemoryKeyStore:
    return MemoryKeyStore(clock)


@pytest.fixture
def source(keys: MemoryKeyStore) -> Source:
    return keys.create_source("website")


@pytest.fixture
def writer(event_log: MemoryEventLog) -> Iterator[IngestWriter]:
    with IngestWriter(event_log) as running:
        yield running


@pytest.fixture
def client(
    keys: MemoryKeyStore, writer: IngestWriter, clock: FakeClock, limits: IngestSettings
) -> Iterator[TestClient]:
    app = create_ingest_app(keys=keys, writer=writer, clock=clock, settings=limits)
    with TestClient(app) as test_client:
        yield test_client


def basic(write_key: str) -> dict[str, str]:
    """The Authorization header Segment's SDKs send: the write key as the Basic auth user name."""
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def auth(source: Source) -> dict[str, str]:
    return basic(source.write_key)
