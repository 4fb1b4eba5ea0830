"""Settings from defaults, the environment and the file (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safar.config import load_settings
from safar.errors import ConfigError


def test_lists_in_the_environment_are_comma_separated_and_one_item_needs_no_comma() -> None:
    settings = load_settings(
        environ={
            "SAFAR_CHANNELS_CONSOLE_FOR": "email",
            "SAFAR_IDENTITY_EXTERNAL_IDS": "crm_id, zendesk_id",
            "SAFAR_IDENTITY_LIMITS": '{"user_id": 1, "email": 3}',
            "SAFAR_SERVER_PORT": "9000",
        }
    )
    assert settings.channels.console_for == ["email"]
    assert settings.identity.external_ids == ["crm_id", "zendesk_id"]
    assert settings.identity.limits == {"user_id": 1, "email": 3}
    assert settings.server.port == 9000
    assert load_settings(environ={"SAFAR_CHANNELS_CONSOLE_FOR": ""}).channels.console_for == []


def test_storage_url_is_empty_or_postgresql() -> None:
    assert load_settings(environ={}).storage.url == ""
    url = "postgresql://safar@db:5432/safar"
    assert load_settings(environ={"SAFAR_STORAGE_URL": url}).storage.url == url
    with pytest.raises(ConfigError, match=r"storage\.url"):
        load_settings(environ={"SAFAR_STORAGE_URL": "mysql://db/safar"})


def test_leases_last_at_least_a_second() -> None:
    assert load_settings(environ={}).workers.lease_seconds == 15
    with pytest.raises(ConfigError, match="lease_seconds"):
        load_settings(environ={"SAFAR_WORKERS_LEASE_SECONDS": "0.5"})


def test_the_work_feed_keeps_items_until_read_unless_an_age_is_set() -> None:
    assert load_settings(environ={}).bus.max_age_hours == 0
    aged = load_settings(environ={"SAFAR_BUS_MAX_AGE_HOURS": "48"})
    assert aged.bus.max_age_hours == 48
    with pytest.raises(ConfigError, match=r"bus\.max_age_hours"):
        load_settings(environ={"SAFAR_BUS_MAX_AGE_HOURS": "-1"})
    assert load_settings(environ={}).bus.trim_seconds == 5
    assert load_settings(environ={"SAFAR_BUS_TRIM_SECONDS": "0"}).bus.trim_seconds == 0
    with pytest.raises(ConfigError, match=r"bus\.trim_seconds"):
        load_settings(environ={"SAFAR_BUS_TRIM_SECONDS": "-2"})


def test_the_work_feed_is_none_a_sqlite_file_or_nats(tmp_path: Path) -> None:
    from safar.stores.bundle import open_feed
    from safar.stores.sqlite.work import SqliteWorkFeed

    assert load_settings(environ={}).bus.url == ""
    local = load_settings(data_dir=tmp_path, environ={"SAFAR_BUS_URL": "sqlite:"})
    feed = open_feed(local)
    assert isinstance(feed, SqliteWorkFeed)
    try:
        assert feed.partitions == local.bus.partitions
        assert (tmp_path / "work.db").exists()
    finally:
        feed.close()
    assert load_settings(environ={"SAFAR_BUS_URL": "nats://127.0.0.1:4222"}).bus.url
    for wrong in ("sqlite:/tmp/feed.db", "redis://127.0.0.1", "sqlite"):
        with pytest.raises(ConfigError, match=r"bus\.url must be empty .* 'sqlite:'"):
            load_settings(environ={"SAFAR_BUS_URL": wrong})


def test_the_preview_warehouse_refresh_is_off_or_positive() -> None:
    assert load_settings(environ={}).server.warehouse_refresh_seconds == 10
    with pytest.raises(ConfigError, match=r"server\.warehouse_refresh_seconds"):
        load_settings(environ={"SAFAR_SERVER_WAREHOUSE_REFRESH_SECONDS": "-1"})


def test_the_link_secret_is_in_the_data_directory_unless_a_file_is_named(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, environ={}).secret_path == tmp_path / "link-secret"
    shared = tmp_path / "shared" / "secret"
    named = load_settings(
        data_dir=tmp_path, environ={"SAFAR_JOURNEYS_LINK_SECRET_FILE": str(shared)}
    )
    assert named.secret_path == shared


def test_an_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match="lease_second"):
        load_settings(environ={"SAFAR_WORKERS_LEASE_SECOND": "3"})
