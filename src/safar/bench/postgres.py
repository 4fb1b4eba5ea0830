"""PostgreSQL for benchmarks: a scratch schema per run, and the floor for the event log.

A benchmark given ``--postgres URL`` runs Safar on a schema of its own in that database, created
empty and dropped afterwards, so runs never see each other's rows and the database is left as
found.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import msgspec
import psycopg

from safar.model.events import Event
from safar.testing.services import with_search_path


@contextmanager
def scratch_schema(url: str, label: str) -> Iterator[str]:
    """``url`` with ``search_path`` set to a new, empty schema, dropped on the way out."""
    schema = f"safar_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_floor(url: str, batches: Sequence[Sequence[Event]]) -> float:
    """Events/s for the same events bulk-loaded into a plain table shaped like the PostgreSQL
    event log's (``COPY``, one transaction per batch, no dedupe, no head row): the fastest a
    log in PostgreSQL can take them on this machine."""
    encode = msgspec.msgpack.Encoder().encode
    with scratch_schema(url, "floor") as scratch, psycopg.connect(scratch) as conn:
        conn.execute(
            "CREATE TABLE events(seq BIGINT PRIMARY KEY, source_id TEXT NOT NULL,"
            " message_id TEXT NOT NULL, event BYTEA NOT NULL)"
        )
        conn.commit()
        seq = 0
        started = time.perf_counter()
        for batch in batches:
            with conn.cursor().copy(
                "COPY events(seq, source_id, message_id, event) FROM STDIN"
            ) as copy:
                for event in batch:
                    seq += 1
                    copy.write_row((seq, event.source_id, event.message_id, encode(event)))
            conn.commit()
        elapsed = time.perf_counter() - started
    return sum(len(b) for b in batches) / elapsed
