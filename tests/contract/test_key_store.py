"""The KeyStore contract (safar.ports.KeyStore), run against every adapter."""

from __future__ import annotations

import pytest

from safar.errors import ValidationError
from safar.model.keys import SCOPES
from safar.ports import KeyStore
from safar.testing import FakeClock

from .conftest import Backend


def test_create_source_and_find_it_by_write_key(key_store: KeyStore, clock: FakeClock) -> None:
    source = key_store.create_source("Website")
    assert source.name == "Website"
    assert source.created_at == clock.now_ms()
    assert source.id.startswith("src_")
    assert source.write_key.startswith("wk_")
    assert key_store.source_by_write_key(source.write_key) == source
    assert key_store.source_by_write_key(source.write_key) == source  # cached or not, the same


def test_sources_get_distinct_ids_and_keys(key_store: KeyStore) -> None:
    sources = [key_store.create_source("Same name") for _ in range(20)]
    assert len({s.id for s in sources}) == 20
    assert len({s.write_key for s in sources}) == 20


def test_unknown_write_key_is_none(key_store: KeyStore) -> None:
    key_store.create_source("Website")
    assert key_store.source_by_write_key("wk_unknown") is None
    assert key_store.source_by_write_key("") is None


def test_list_sources_oldest_first(key_store: KeyStore, clock: FakeClock) -> None:
    assert key_store.list_sources() == []
    names = ["وب‌سایت", "应用", "CRM", "Helpdesk"]
    created = []
    for name in names:
        created.append(key_store.create_source(name))
        clock.advance(ms=1)
    created.append(key_store.create_source("Same ms as previous"))
    assert key_store.list_sources() == created


def test_source_created_by_another_process_is_found(key_backend: Backend) -> None:
    serving = key_backend.key_store()
    assert serving.source_by_write_key("wk_not-yet") is None
    created = key_backend.key_store().create_source("Imported later")
    assert serving.source_by_write_key(created.write_key) == created
    assert created in serving.list_sources()


def test_sources_survive_restart(key_backend: Backend) -> None:
    created = key_backend.key_store().create_source("Website")
    key_backend.shutdown()
    reopened = key_backend.key_store()
    assert reopened.source_by_write_key(created.write_key) == created
    assert reopened.list_sources() == [created]


@pytest.mark.parametrize("scope", SCOPES)
def test_create_api_key_and_find_it_by_secret(
    key_store: KeyStore, clock: FakeClock, scope: str
) -> None:
    key, secret = key_store.create_api_key("CI deploys", scope)
    assert (key.name, key.scope, key.created_at) == ("CI deploys", scope, clock.now_ms())
    assert key.id.startswith("key_")
    assert secret.startswith("sk_")
    assert key_store.api_key_by_secret(secret) == key


def test_api_keys_are_distinct(key_store: KeyStore) -> None:
    made = [key_store.create_api_key("k", "read") for _ in range(20)]
    assert len({key.id for key, _ in made}) == 20
    assert len({secret for _, secret in made}) == 20
    for key, secret in made:
        assert key_store.api_key_by_secret(secret) == key


def test_unknown_api_secret_is_none(key_store: KeyStore) -> None:
    _, secret = key_store.create_api_key("k", "admin")
    assert key_store.api_key_by_secret("sk_unknown") is None
    assert key_store.api_key_by_secret(secret[:-1]) is None
    assert key_store.api_key_by_secret("") is None


def test_write_key_is_not_an_api_secret(key_store: KeyStore) -> None:
    source = key_store.create_source("Website")
    assert key_store.api_key_by_secret(source.write_key) is None


def test_api_key_survives_restart(key_backend: Backend) -> None:
    key, secret = key_backend.key_store().create_api_key("k", "write")
    key_backend.shutdown()
    assert key_backend.key_store().api_key_by_secret(secret) == key


@pytest.mark.parametrize("scope", ["", "Admin", "owner", "read,write"])
def test_unknown_scope_is_refused(key_store: KeyStore, scope: str) -> None:
    with pytest.raises(ValidationError) as raised:
        key_store.create_api_key("k", scope)
    for allowed in SCOPES:
        assert allowed in raised.value.message
    assert raised.value.location == "scope"


def test_api_secret_is_stored_only_as_a_hash(key_backend: Backend) -> None:
    store = key_backend.key_store()
    secrets = [store.create_api_key(f"key {i}", "admin")[1] for i in range(3)]
    source = store.create_source("Website")
    stored = key_backend.stored_bytes()
    assert source.write_key.encode() in stored  # proves the check can see what is stored
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret.removeprefix("sk_").encode() not in stored
