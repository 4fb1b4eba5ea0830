"""PostgreSQL :class:`safar.ports.KeyStore` (migration component ``keys``).

Tables, as in the SQLite store (:mod:`safar.stores.sqlite.keys`):

- ``sources(id, name, write_key UNIQUE, created_at, created_order)``: ``created_order`` is an
  identity column standing in for SQLite's rowid, so sources created in the same millisecond
  still list in the order they were created.
- ``api_keys(id, name, scope, secret_sha256 UNIQUE, created_at)``: only the SHA-256 of a secret
  is stored (:func:`~safar.stores.keygen.hash_secret`); a lookup hashes the secret it is given.

``source_by_write_key`` runs on every ingestion request, so found sources are cached in process.
A miss always asks the database, so a source created by another process is found on its first
request. Nothing in the port removes or changes a source, so a cached entry never goes stale.
"""

from __future__ import annotations

from typing import Any

from safar.model.keys import ApiKey, Source
from safar.ports import Clock
from safar.stores.keygen import (
    check_scope,
    hash_secret,
    new_api_key_id,
    new_api_secret,
    new_source_id,
    new_write_key,
)
from safar.stores.postgres.db import PgDatabase

_MIGRATIONS = [
    """
    CREATE TABLE sources(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        write_key TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        created_order BIGINT GENERATED ALWAYS AS IDENTITY
    );
    CREATE TABLE api_keys(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    """,
]

_SOURCE_COLUMNS = "id, name, write_key, created_at"
_INSERT_SOURCE = f"INSERT INTO sources({_SOURCE_COLUMNS}) VALUES (%s, %s, %s, %s)"
_SOURCE_BY_WRITE_KEY = f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE write_key = %s"
_ALL_SOURCES = f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY created_at, created_order"
_INSERT_API_KEY = (
    "INSERT INTO api_keys(id, name, scope, secret_sha256, created_at) VALUES (%s, %s, %s, %s, %s)"
)
_API_KEY_BY_HASH = "SELECT id, name, scope, created_at FROM api_keys WHERE secret_sha256 = %s"


class PgKeyStore:
    """Sources and API keys in the shared PostgreSQL database; API key secrets only as SHA-256."""

    def __init__(self, db: PgDatabase, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # Write key -> source. Plain dict: a racing duplicate fill from two threads stores equal
        # values, so no lock.
        self._sources: dict[str, Source] = {}
        db.migrate("keys", _MIGRATIONS)

    def create_source(self, name: str) -> Source:
        source = Source(
            id=new_source_id(),
            name=name,
            write_key=new_write_key(),
            created_at=self._clock.now_ms(),
        )
        self._write(_INSERT_SOURCE, (source.id, source.name, source.write_key, source.created_at))
        self._sources[source.write_key] = source
        return source

    def source_by_write_key(self, write_key: str) -> Source | None:
        source = self._sources.get(write_key)
        if source is None:
            row = self._read_one(_SOURCE_BY_WRITE_KEY, (write_key,))
            if row is None:
                return None
            source = _source(row)
            self._sources[write_key] = source
        return source

    def list_sources(self) -> list[Source]:
        with self._db.read() as conn:
            rows = conn.execute(_ALL_SOURCES).fetchall()
        return [_source(row) for row in rows]

    def create_api_key(self, name: str, scope: str) -> tuple[ApiKey, str]:
        check_scope(scope)
        secret = new_api_secret()
        key = ApiKey(id=new_api_key_id(), name=name, scope=scope, created_at=self._clock.now_ms())
        self._write(
            _INSERT_API_KEY, (key.id, key.name, key.scope, hash_secret(secret), key.created_at)
        )
        return key, secret

    def api_key_by_secret(self, secret: str) -> ApiKey | None:
        row = self._read_one(_API_KEY_BY_HASH, (hash_secret(secret),))
        if row is None:
            return None
        id_, name, scope, created_at = row
        return ApiKey(id=id_, name=name, scope=scope, created_at=created_at)

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._db.write() as conn:
            conn.execute(sql, params)

    def _read_one(self, sql: str, params: tuple[object, ...]) -> tuple[Any, ...] | None:
        with self._db.read() as conn:
            return conn.execute(sql, params).fetchone()


def _source(row: tuple[Any, ...]) -> Source:
    id_, name, write_key, created_at = row
    return Source(id=id_, name=name, write_key=write_key, created_at=created_at)
