"""SQLite :class:`safar.ports.DeliveryStore`: sends, decisions, consent and the in-app inbox.

Sends and decisions are written by :class:`~safar.stores.sqlite.outbox.SqliteOutbox`; each table
is indexed by ``(profile_id, at)`` (the inbox by ``created_at``), and ties are broken by rowid,
i.e. by the order rows were written.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from safar.errors import ValidationError
from safar.model.messages import Consent, Decision, InboxItem, SentRecord
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.journeys import chunks, encode, marks, migrate, transaction

_decode_decision = msgspec.json.Decoder(Decision).decode
_decode_item = msgspec.json.Decoder(InboxItem).decode

_MARKS = {"read": "read_at", "dismiss": "dismissed_at"}


class SqliteDeliveryStore:
    """What the policy gate reads and the management API shows, in the state database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        migrate(db)

    def sends(self, profile_ids: Collection[str], since: int) -> list[SentRecord]:
        rows: list[tuple[int, str, str, str, str, str, int, int]] = []
        with self._db.read() as conn:
            for chunk in chunks(list(set(profile_ids))):
                rows += conn.execute(
                    "SELECT rowid, message_key, profile_id, journey_id, channel, category,"
                    " priority, at FROM journey_sends"
                    f" WHERE profile_id IN ({marks(len(chunk))}) AND at >= ?",
                    (*chunk, since),
                ).fetchall()
        rows.sort(key=lambda row: (row[-1], row[0]), reverse=True)
        return [
            SentRecord(
                message_key=key,
                profile_id=pid,
                journey_id=journey_id,
                channel=channel,
                category=category,
                priority=priority,
                at=at,
            )
            for _, key, pid, journey_id, channel, category, priority, at in rows
        ]

    def decisions(self, profile_id: str, limit: int) -> list[Decision]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM journey_decisions WHERE profile_id = ?"
                " ORDER BY at DESC, rowid DESC LIMIT ?",
                (profile_id, limit),
            ).fetchall()
        return [_decode_decision(data) for (data,) in rows]

    def consents(self, profile_ids: Collection[str]) -> list[Consent]:
        found: list[Consent] = []
        with self._db.read() as conn:
            for chunk in chunks(list(set(profile_ids))):
                found += [
                    Consent(
                        profile_id=pid,
                        channel=channel,
                        category=category,
                        subscribed=bool(subscribed),
                        at=at,
                        source=source,
                    )
                    for pid, channel, category, subscribed, at, source in conn.execute(
                        "SELECT profile_id, channel, category, subscribed, at, source"
                        f" FROM journey_consents WHERE profile_id IN ({marks(len(chunk))})",
                        chunk,
                    )
                ]
        found.sort(key=lambda c: (c.profile_id, c.channel, c.category))
        return found

    def set_consent(self, consent: Consent) -> None:
        with transaction(self._db, "recording consent") as conn:
            conn.execute(
                "INSERT INTO journey_consents"
                "(profile_id, channel, category, subscribed, at, source) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(profile_id, channel, category) DO UPDATE SET"
                " subscribed = excluded.subscribed, at = excluded.at, source = excluded.source"
                " WHERE excluded.at >= journey_consents.at",
                (
                    consent.profile_id,
                    consent.channel,
                    consent.category,
                    int(consent.subscribed),
                    consent.at,
                    consent.source,
                ),
            )

    def add_inbox(self, item: InboxItem) -> None:
        with transaction(self._db, "adding an inbox item") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO journey_inbox"
                "(id, profile_id, created_at, read_at, dismissed_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    item.id,
                    item.profile_id,
                    item.created_at,
                    item.read_at,
                    item.dismissed_at,
                    encode(item),
                ),
            )

    def inbox(self, profile_id: str, include_dismissed: bool = False) -> list[InboxItem]:
        shown = "" if include_dismissed else " AND dismissed_at IS NULL"
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data, read_at, dismissed_at FROM journey_inbox"
                f" WHERE profile_id = ?{shown} ORDER BY created_at DESC, rowid DESC",
                (profile_id,),
            ).fetchall()
        items = []
        for data, read_at, dismissed_at in rows:
            item = _decode_item(data)
            # The marks live in columns; ``data`` keeps the item as it was added.
            item.read_at, item.dismissed_at = read_at, dismissed_at
            items.append(item)
        return items

    def mark_inbox(self, profile_id: str, item_id: str, action: str, at: int) -> bool:
        column = _MARKS.get(action)
        if column is None:
            raise ValidationError(
                f"unknown inbox action {action!r}; use 'read' or 'dismiss'", "action"
            )
        with transaction(self._db, "marking an inbox item") as conn:
            # The first mark's time is kept: marking again is harmless.
            changed = conn.execute(
                f"UPDATE journey_inbox SET {column} = coalesce({column}, ?)"
                " WHERE id = ? AND profile_id = ?",
                (at, item_id, profile_id),
            ).rowcount
        return changed > 0
