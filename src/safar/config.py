"""Configuration: one ``safar.toml`` plus ``SAFAR_<SECTION>_<KEY>`` environment variables.

Precedence, highest first: command-line flags, environment, ``safar.toml``, defaults. The file
is ``--config FILE``, else ``$SAFAR_CONFIG``, else ``./safar.toml`` when it exists. The data
directory is ``--data-dir DIR``, else ``$SAFAR_DATA_DIR``, else ``./.safar``. Every key is
documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from safar.channels.settings import ChannelSettings
from safar.errors import ConfigError


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8088
    #: With ``serve --role all``, a low-priority child process catches the previews' warehouse
    #: up this often, so a preview finds it nearly current (ADR 13); 0: only previews do.
    warehouse_refresh_seconds: float = 10.0


class StorageSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Empty: the embedded SQLite store under the data directory. ``postgresql://…``: every
    #: store in that PostgreSQL database (docs/deploy.md).
    url: str = ""
    #: Connections each process may hold open to PostgreSQL.
    pool_size: int = 8
    #: SQLite ``synchronous`` pragma: "full" survives power loss, "normal" survives process crashes.
    synchronous: str = "full"


class IngestSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: How long a messageId is remembered for deduplication. At least 24 hours.
    dedupe_window_hours: float = 24.0
    #: Sustained events per second allowed per write key; bursts up to ``rate_limit_burst``.
    rate_limit: float = 250_000.0
    rate_limit_burst: float = 500_000.0
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_events: int = 2500


class IdentitySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Identifier types read from ``context.externalIds`` and traits, besides the built-in ones.
    external_ids: list[str] = msgspec.field(default_factory=lambda: ["crm_id"])
    #: Highest priority first. Types not listed rank after those listed.
    priority: list[str] = msgspec.field(
        default_factory=lambda: ["user_id", "crm_id", "email", "phone", "anonymous_id"]
    )
    #: Most values of a type one profile may hold; a merge that would exceed it is refused.
    #: Types not listed are unlimited.
    limits: dict[str, int] = msgspec.field(
        default_factory=lambda: {"user_id": 1, "crm_id": 1, "email": 5, "phone": 5}
    )
    #: Values that never identify anyone (compared case-insensitively after trimming).
    blocked_values: list[str] = msgspec.field(
        default_factory=lambda: [
            "",
            "null",
            "undefined",
            "none",
            "nil",
            "0",
            "-1",
            "n/a",
            "unknown",
        ]
    )
    #: Country calling code assumed for phone numbers written without one.
    default_country_code: str = "1"


class JourneySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Base URL customers reach the API at, for links in messages (unsubscribe, opens,
    #: clicks). Empty: ``http://<server.host>:<server.port>``.
    public_url: str = ""
    #: Directory of message templates (``<id>.yaml``, see docs/templates.md).
    templates_dir: str = "templates"
    #: The policy file (see docs/policy.md); when it does not exist the defaults apply.
    policy_file: str = "policy.yaml"
    #: The key signing links in messages. Empty: ``link-secret`` in the data directory. Every
    #: process of one installation must read the same key (docs/deploy.md).
    link_secret_file: str = ""


class WorkerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: How long a worker's lease on the stepper lasts without renewal: a standby worker takes
    #: over this long after the holder dies (docs/deploy.md).
    lease_seconds: float = 15.0


#: ``bus.url`` for the work feed in a SQLite file of the data directory.
SQLITE_FEED: Final = "sqlite:"


class BusSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Empty: no work feed. ``nats://host:4222``: the profile processor publishes every event
    #: to its customer's partition of a NATS JetStream stream (docs/deploy.md, ADR 12).
    #: ``sqlite:``: to a SQLite file in the data directory, for workers on one machine (ADR 15).
    url: str = ""
    #: The JetStream stream, and the subject prefix of its partitions (``<subject>.<n>``).
    stream: str = "SAFAR_WORK"
    subject: str = "safar.work"
    #: Partitions of the feed: the most workers that can step customers at once. Fixed for an
    #: installation's life.
    partitions: int = 16
    #: 0: the stream keeps a partition's items until its owner has committed past them (and
    #: trims them). Above 0: items also go after this many hours, read or not; a partition
    #: left unread longer stops with an error naming the lost range.
    max_age_hours: float = 0.0
    #: How often a partition's owner trims the items it has committed past; 0: never (the
    #: stream keeps everything, up to ``max_age_hours``: for audits and tests).
    trim_seconds: float = 5.0
    #: When a partition's items are gone before its owner read them (expired by
    #: ``max_age_hours``, removed by hand, a lost stream): False, the partition waits for them
    #: (an error names the range); True, it goes on after them and those events' journey steps
    #: and segment changes are missed (``runtime/feed_gaps.py``).
    skip_lost: bool = False


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data_dir: str = ".safar"
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    identity: IdentitySettings = msgspec.field(default_factory=IdentitySettings)
    journeys: JourneySettings = msgspec.field(default_factory=JourneySettings)
    channels: ChannelSettings = msgspec.field(default_factory=ChannelSettings)
    workers: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    bus: BusSettings = msgspec.field(default_factory=BusSettings)

    @property
    def database_path(self) -> Path:
        """The SQLite file holding state: profiles, keys (and later journeys)."""
        return Path(self.data_dir) / "safar.db"

    @property
    def work_feed_path(self) -> Path:
        """The SQLite file holding the work feed when ``bus.url`` is ``sqlite:``."""
        return Path(self.data_dir) / "work.db"

    @property
    def events_database_path(self) -> Path:
        """The SQLite file holding the event log and its dedupe window."""
        return Path(self.data_dir) / "events.db"

    @property
    def public_url(self) -> str:
        """Where customers reach this installation's links."""
        return self.journeys.public_url or f"http://{self.server.host}:{self.server.port}"

    @property
    def secret_path(self) -> Path:
        """The secret signing links in messages, created on first use."""
        return Path(self.journeys.link_secret_file or Path(self.data_dir) / "link-secret")


_SECTIONS = (
    "server",
    "storage",
    "ingest",
    "identity",
    "journeys",
    "channels",
    "workers",
    "bus",
)


def load_settings(
    *,
    config_file: str | Path | None = None,
    data_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, the TOML file, the environment and explicit values."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = Path(config_file or env.get("SAFAR_CONFIG") or "safar.toml")
    explicit = bool(config_file or env.get("SAFAR_CONFIG"))
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    for section in _SECTIONS:
        prefix = f"SAFAR_{section.upper()}_"
        for name, value in env.items():
            if name.startswith(prefix):
                key = name[len(prefix) :].lower()
                raw.setdefault(section, {})[key] = _env_value(value, _is_list(section, key))
    if data_dir is not None:
        raw["data_dir"] = str(data_dir)
    elif "SAFAR_DATA_DIR" in env:
        raw["data_dir"] = env["SAFAR_DATA_DIR"]
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"configuration ({path.name} or SAFAR_* environment): {exc}") from exc
    if settings.ingest.dedupe_window_hours < 24:
        raise ConfigError("ingest.dedupe_window_hours must be at least 24")
    if settings.workers.lease_seconds < 1:
        raise ConfigError("workers.lease_seconds must be at least 1")
    if settings.storage.url and not settings.storage.url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise ConfigError(
            "storage.url must be empty (the embedded SQLite store) or a postgresql:// URL"
        )
    if settings.bus.url and not (
        settings.bus.url.startswith(("nats://", "tls://")) or settings.bus.url == SQLITE_FEED
    ):
        raise ConfigError(
            f"bus.url must be empty (no work feed), {SQLITE_FEED!r} (a feed in the data"
            " directory, for workers on this machine) or a nats:// URL"
        )
    if settings.server.warehouse_refresh_seconds < 0:
        raise ConfigError("server.warehouse_refresh_seconds must be 0 (off) or above")
    if not 1 <= settings.bus.partitions <= 4096:
        raise ConfigError("bus.partitions must be between 1 and 4096")
    if settings.bus.trim_seconds < 0:
        raise ConfigError("bus.trim_seconds must be 0 (never trim) or above")
    if settings.bus.max_age_hours < 0:
        raise ConfigError("bus.max_age_hours must be 0 (keep until read) or above")
    if settings.storage.synchronous.lower() not in ("full", "normal", "extra"):
        raise ConfigError("storage.synchronous must be one of full, normal, extra")
    return settings


def _env_value(value: str, is_list: bool) -> Any:
    """Environment values are strings; lists are comma-separated (one item needs no comma),
    tables are JSON."""
    text = value.strip()
    if text.startswith(("{", "[")):
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"environment value {text!r} is not valid JSON") from exc
    if "," in text or is_list:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _is_list(section: str, key: str) -> bool:
    """Whether ``[section] key`` holds a list (unknown keys are reported by the conversion)."""
    section_type = {f.name: f.type for f in msgspec.structs.fields(Settings)}[section]
    fields = {f.name: f.type for f in msgspec.structs.fields(section_type)}
    return typing.get_origin(fields.get(key)) is list
