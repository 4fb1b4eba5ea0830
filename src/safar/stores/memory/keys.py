"""In-memory :class:`safar.ports.KeyStore`."""

from __future__ import annotations

import threading

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


class MemoryKeyStore:
    """Sources and API keys held in dicts; API key secrets are kept only as hashes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # Dicts keep insertion order, which is creation order: list_sources needs no sort.
        self._sources: dict[str, Source] = {}
        self._api_keys: dict[str, ApiKey] = {}

    def create_source(self, name: str) -> Source:
        source = Source(
            id=new_source_id(),
            name=name,
            write_key=new_write_key(),
            created_at=self._clock.now_ms(),
        )
        with self._lock:
            self._sources[source.write_key] = source
        return source

    def source_by_write_key(self, write_key: str) -> Source | None:
        return self._sources.get(write_key)

    def list_sources(self) -> list[Source]:
        with self._lock:
            return list(self._sources.values())

    def create_api_key(self, name: str, scope: str) -> tuple[ApiKey, str]:
        check_scope(scope)
        secret = new_api_secret()
        key = ApiKey(id=new_api_key_id(), name=name, scope=scope, created_at=self._clock.now_ms())
        with self._lock:
            self._api_keys[hash_secret(secret)] = key
        return key, secret

    def api_key_by_secret(self, secret: str) -> ApiKey | None:
        return self._api_keys.get(hash_secret(secret))
