"""A columnar copy of the events and profiles in DuckDB, for recomputing audiences with SQL.

The event log is built for appending and reading in order; a segment recompute wants the
opposite: every customer's events of one name in a time window, grouped. The warehouse keeps:

- ``events(seq, ident, name, ts, payload)``: every event with the identifier it is attributed
  to (``type:value``) and its Segment-shaped payload as JSON text; copied from the log
  incrementally (:meth:`Warehouse.sync_events`), so only new events are read each time;
- ``profiles(profile_id, traits, identifiers)``, ``idents(ident, profile_id)`` and
  ``consents(owner, channel, category, subscribed, chosen_at)``: who is who now, loaded from the
  profile store whole (:meth:`Warehouse.load_profiles`) or for the customers some events or
  merges touched (:meth:`Warehouse.update_profiles`), because merges move identifiers;
- ``meta(key, value)``: what a keeper of the warehouse records about it (see
  :mod:`safar.runtime.warehouse_keeper`).

Rows are bulk-loaded through DuckDB's CSV reader: by far the fastest way in without Arrow.
"""

from __future__ import annotations

import csv
import itertools
import os
import tempfile
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import duckdb
import msgspec

from safar.core.identity import IdentityRules, extract
from safar.model.profiles import Identifier, Profile
from safar.ports import DeliveryStore, EventLog, ProfileReader

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events "
    "(seq BIGINT, ident VARCHAR, name VARCHAR, ts BIGINT, payload VARCHAR)",
    "CREATE TABLE IF NOT EXISTS synced (last_seq BIGINT)",
    "CREATE TABLE IF NOT EXISTS profiles (profile_id VARCHAR, traits VARCHAR, identifiers VARCHAR)",
    "CREATE TABLE IF NOT EXISTS idents (ident VARCHAR, profile_id VARCHAR)",
    "CREATE TABLE IF NOT EXISTS consents "
    "(owner VARCHAR, channel VARCHAR, category VARCHAR, subscribed BOOLEAN, chosen_at BIGINT)",
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
)
_TABLES = ("events", "synced", "profiles", "idents", "consents", "meta")
_COLUMNS = {
    "events": {
        "seq": "BIGINT",
        "ident": "VARCHAR",
        "name": "VARCHAR",
        "ts": "BIGINT",
        "payload": "VARCHAR",
    },
    "profiles": {"profile_id": "VARCHAR", "traits": "VARCHAR", "identifiers": "VARCHAR"},
    "idents": {"ident": "VARCHAR", "profile_id": "VARCHAR"},
    "consents": {
        "owner": "VARCHAR",
        "channel": "VARCHAR",
        "category": "VARCHAR",
        "subscribed": "BOOLEAN",
        "chosen_at": "BIGINT",
    },
}
EVENT_PAGE = 50_000
PROFILE_PAGE = 2000
#: Matches a column against a list bound as one parameter (a hash semi-join, not a scan of the
#: list per row, which ``list_contains`` would be).
_IN_LIST = "IN (SELECT unnest(?::VARCHAR[]))"

_encode = msgspec.json.encode
_decode_identifiers = msgspec.json.Decoder(dict[str, list[str]]).decode


def ident(identifier: tuple[str, str]) -> str:
    """How the warehouse writes an identifier: ``type:value``."""
    return f"{identifier[0]}:{identifier[1]}"


class Warehouse:
    """DuckDB tables for batch audience work; ``path`` None keeps them in memory."""

    def __init__(self, path: str | None = None) -> None:
        self.con = duckdb.connect(path or ":memory:")
        self.con.execute("SET enable_progress_bar = false")
        self._names = itertools.count(1)
        for statement in SCHEMA:
            self.con.execute(statement)

    def new_name(self, prefix: str) -> str:
        """A name no temporary table or function on this connection has."""
        return f"{prefix}_{next(self._names)}"

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- loading ----------------------------------------------------------------------------

    def load_rows(self, table: str, rows: Iterable[Sequence[Any]]) -> int:
        """Append rows to ``table`` (columns in schema order) in one bulk load."""
        columns = _COLUMNS[table]
        fd, name = tempfile.mkstemp(prefix="safar-warehouse-", suffix=".csv")
        count = 0
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                for row in rows:
                    writer.writerow(row)
                    count += 1
            if count:
                spec = ", ".join(f"'{column}': '{kind}'" for column, kind in columns.items())
                self.con.execute(
                    f"INSERT INTO {table} SELECT * FROM read_csv(?, header = false, "
                    f"columns = {{{spec}}}, quote = '\"', escape = '\"', nullstr = '\\N')",
                    [name],
                )
        finally:
            os.unlink(name)
        return count

    def scalar(self, query: str, parameters: Sequence[Any] = ()) -> Any:
        """The first column of the first row ``query`` gives, or None when it gives none.

        Every row is fetched: DuckDB refuses some calls (``create_function``) while a result
        is left half-read."""
        rows = self.con.execute(query, parameters).fetchall()
        return rows[0][0] if rows else None

    def last_seq(self) -> int:
        return int(self.scalar("SELECT max(last_seq) FROM synced") or 0)

    def sync_events(
        self,
        events: EventLog,
        rules: IdentityRules,
        page: int = EVENT_PAGE,
        *,
        upto: int | None = None,
        seen: set[Identifier] | None = None,
    ) -> int:
        """Copy the events appended since the last sync (those up to seq ``upto`` when given);
        returns how many. ``seen`` collects every identifier of the events copied."""
        after = self.last_seq()
        copied = 0
        while upto is None or after < upto:
            batch = events.read(after, page)
            if upto is not None:
                batch = [event for event in batch if event.seq <= upto]
            if not batch:
                break
            rows = []
            for event in batch:
                identifiers = extract(event, rules).identifiers
                if not identifiers:
                    continue
                if seen is not None:
                    seen.update(identifiers)
                payload = _encode(event.payload()).decode()
                rows.append(
                    (event.seq, ident(identifiers[0]), event.name or "", event.timestamp, payload)
                )
            copied += self.load_rows("events", rows)
            after = batch[-1].seq
            self.con.execute("DELETE FROM synced")
            self.con.execute("INSERT INTO synced VALUES (?)", [after])
        return copied

    def load_profiles(
        self,
        profiles: ProfileReader,
        delivery: DeliveryStore | None = None,
        page: int = PROFILE_PAGE,
    ) -> int:
        """Replace who-is-who with the profile store's current state; returns how many
        profiles. Consent choices filed under merged-away profile ids count for the profile
        they were merged into."""
        for table in ("profiles", "idents", "consents"):
            self.con.execute(f"DELETE FROM {table}")
        after, total = "", 0
        while found := profiles.scan(after, page):
            self._add_profiles(found, delivery)
            total += len(found)
            after = found[-1].id
        return total

    def update_profiles(
        self,
        profiles: ProfileReader,
        delivery: DeliveryStore | None,
        identifiers: Collection[Identifier],
        profile_ids: Collection[str] = (),
    ) -> int:
        """Re-load who-is-who for the customers ``identifiers`` and ``profile_ids`` name, as
        they are now and as they were at the last load; returns how many profiles now hold
        them.

        Given every identifier of the events processed since the last load and the profiles
        :meth:`~safar.ports.ProfileReader.reshaped` in that range, this leaves the tables as
        :meth:`load_profiles` would: the profiles that held an identifier before (merged away
        since, or having lost it) are re-read through all the identifiers they held, so a
        profile that is gone is dropped and one that changed is replaced."""
        held = self._profiles_holding(sorted({ident(i) for i in identifiers}))
        stale = held | set(profile_ids)
        wanted = set(identifiers) | self._identifiers_of(sorted(stale))
        fresh = {p.id: p for p in profiles.find_many(wanted).values()}
        replaced = sorted(stale | fresh.keys())
        held_now = sorted(
            ident((kind, value))
            for profile in fresh.values()
            for kind, values in profile.identifiers.items()
            for value in values
        )
        self.con.execute(f"DELETE FROM profiles WHERE profile_id {_IN_LIST}", [replaced])
        # By identifier too: an identifier belongs to one profile, whatever a stale row says.
        self.con.execute(
            f"DELETE FROM idents WHERE profile_id {_IN_LIST} OR ident {_IN_LIST}",
            [replaced, held_now],
        )
        self.con.execute(f"DELETE FROM consents WHERE owner {_IN_LIST}", [replaced])
        found = sorted(fresh.values(), key=lambda p: p.id)
        for start in range(0, len(found), PROFILE_PAGE):
            self._add_profiles(found[start : start + PROFILE_PAGE], delivery)
        return len(found)

    def _profiles_holding(self, keys: list[str]) -> set[str]:
        if not keys:
            return set()
        rows = self.con.execute(
            f"SELECT DISTINCT profile_id FROM idents WHERE ident {_IN_LIST}",
            [keys],
        ).fetchall()
        return {row[0] for row in rows}

    def _identifiers_of(self, profile_ids: list[str]) -> set[Identifier]:
        if not profile_ids:
            return set()
        rows = self.con.execute(
            f"SELECT identifiers FROM profiles WHERE profile_id {_IN_LIST}",
            [profile_ids],
        ).fetchall()
        return {
            (kind, value)
            for (text,) in rows
            for kind, values in _decode_identifiers(text).items()
            for value in values
        }

    def _add_profiles(self, found: Sequence[Profile], delivery: DeliveryStore | None) -> None:
        people: list[tuple[str, str, str]] = []
        idents: list[tuple[str, str]] = []
        choices: list[tuple[str, str, str, str, int]] = []
        owner: dict[str, str] = {}
        for profile in found:
            people.append(
                (
                    profile.id,
                    _encode(profile.traits).decode(),
                    _encode(profile.identifiers).decode(),
                )
            )
            for kind, values in profile.identifiers.items():
                idents.extend((ident((kind, value)), profile.id) for value in values)
            for pid in (profile.id, *profile.merged_from):
                owner[pid] = profile.id
        if delivery is not None and owner:
            for choice in delivery.consents(owner.keys()):
                choices.append(
                    (
                        owner[choice.profile_id],
                        choice.channel,
                        choice.category,
                        "true" if choice.subscribed else "false",
                        choice.at,
                    )
                )
        self.load_rows("profiles", people)
        self.load_rows("idents", idents)
        self.load_rows("consents", choices)

    def profile_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM profiles"))

    # -- bookkeeping ----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """What was recorded under ``key`` (see :meth:`set_meta`), or None."""
        value = self.scalar("SELECT value FROM meta WHERE key = ?", [key])
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def reset(self) -> None:
        """Empty every table, as a new warehouse."""
        for table in _TABLES:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in SCHEMA:
            self.con.execute(statement)
