"""SQLite :class:`safar.ports.KeyStore`.

``source_by_write_key`` runs on every ingestion request, so found sources are cached in process.
A miss always asks the database, so a source created by another process (``safar source create``
while ``safar serve`` runs) is found on its first request. Nothing in the port removes or changes a
source, so a cached entry never goes stale; revoking write keys will need invalidation here.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from safar.errors import StoreError
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
from safar.stores.sqlite.db import Database

_MIGRATIONS = [
    """
    CREATE TABLE sources(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        write_key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_keys(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        scope TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    )
    """,
]

_SOURCE_COLUMNS = "id, name, write_key, created_at"
_API_KEY_COLUMNS = "id, name, scope, created_at"


class SqliteKeyStore:
    """Sources and API keys in the shared SQLite database; API key secrets only as SHA-256."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # Plain dict: a racing duplicate fill from two threads stores equal values, so no lock.
        self._sources: dict[str, Source] = {}
        db.migrate("keys", _MIGRATIONS)

    def create_source(self, name: str) -> Source:
        source = Source(
            id=new_source_id(),
            name=name,
            write_key=new_write_key(),
            created_at=self._clock.now_ms(),
        )
        self._write(
            f"INSERT INTO sources({_SOURCE_COLUMNS}) VALUES (?, ?, ?, ?)",
            (source.id, source.name, source.write_key, source.created_at),
        )
        self._sources[source.write_key] = source
        return source

    def source_by_write_key(self, write_key: str) -> Source | None:
        source = self._sources.get(write_key)
        if source is None:
            rows = self._read(
                f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE write_key = ?", (write_key,)
            )
            if not rows:
                return None
            source = _source(rows[0])
            self._sources[write_key] = source
        return source

    def list_sources(self) -> list[Source]:
        rows = self._read(f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY created_at, rowid", ())
        return [_source(row) for row in rows]

    def create_api_key(self, name: str, scope: str) -> tuple[ApiKey, str]:
        check_scope(scope)
        secret = new_api_secret()
        key = ApiKey(id=new_api_key_id(), name=name, scope=scope, created_at=self._clock.now_ms())
        self._write(
            "INSERT INTO api_keys(id, name, scope, secret_sha256, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (key.id, key.name, key.scope, hash_secret(secret), key.created_at),
        )
        return key, secret

    def api_key_by_secret(self, secret: str) -> ApiKey | None:
        rows = self._read(
            f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE secret_sha256 = ?",
            (hash_secret(secret),),
        )
        if not rows:
            return None
        id_, name, scope, created_at = rows[0]
        return ApiKey(id=id_, name=name, scope=scope, created_at=created_at)

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            with self._db.write() as conn:
                conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"key store write failed on {self._db.path}: {exc}") from exc

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        with self._db.read() as conn:
            rows: list[Any] = conn.execute(sql, params).fetchall()
        return rows


def _source(row: Any) -> Source:
    id_, name, write_key, created_at = row
    return Source(id=id_, name=name, write_key=write_key, created_at=created_at)
