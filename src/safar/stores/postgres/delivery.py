"""PostgreSQL :class:`safar.ports.DeliveryStore`: sends, decisions, consent and the in-app inbox
(tables: see :mod:`safar.stores.postgres.journeys`).

Sends and decisions are appended by :class:`~safar.stores.postgres.outbox.PgOutbox`; each table
is indexed by ``(profile_id, at)`` (the inbox by ``created_at``), and ties are broken by
``position``, i.e. by the order rows were written, newest first. Consent and inbox marks are
single-row upserts and updates whose conditions PostgreSQL re-checks on the latest row version,
so concurrent writers need no lock of their own: the newest consent wins and the first mark of
an item stays.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

from safar.errors import ValidationError
from safar.model.messages import Consent, Decision, InboxItem, SentRecord
from safar.stores.postgres.db import PgDatabase
from safar.stores.postgres.journeys import encode, migrate

_decode_decision = msgspec.json.Decoder(Decision).decode
_decode_item = msgspec.json.Decoder(InboxItem).decode

#: Inbox action -> the column its time is kept in.
_MARKS = {"read": "read_at", "dismiss": "dismissed_at"}

_SENDS = (
    "SELECT message_key, profile_id, journey_id, channel, category, priority, at"
    " FROM journey_sends WHERE profile_id = ANY(%s) AND at >= %s"
    " ORDER BY at DESC, position DESC"
)
_CONSENT_COLUMNS = "profile_id, channel, category, subscribed, at, source"
#: An older choice than the stored one (by ``at``) changes nothing; one made at the same time
#: is not older, and replaces it.
_SET_CONSENT = (
    f"INSERT INTO journey_consents({_CONSENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT(profile_id, channel, category) DO UPDATE SET"
    " subscribed = excluded.subscribed, at = excluded.at, source = excluded.source"
    " WHERE excluded.at >= journey_consents.at"
)
_ADD_INBOX = (
    "INSERT INTO journey_inbox(id, profile_id, created_at, read_at, dismissed_at, data)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT(id) DO NOTHING"
)


class PgDeliveryStore:
    """What the policy gate reads and the management API shows, in the journey tables."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        migrate(db)

    def sends(self, profile_ids: Collection[str], since: int) -> list[SentRecord]:
        if not profile_ids:
            return []
        with self._db.read() as conn:
            rows = conn.execute(_SENDS, (list(set(profile_ids)), since)).fetchall()
        return [_sent(row) for row in rows]

    def decisions(self, profile_id: str, limit: int) -> list[Decision]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM journey_decisions WHERE profile_id = %s"
                " ORDER BY at DESC, position DESC LIMIT %s",
                (profile_id, limit),
            ).fetchall()
        return [_decode_decision(data) for (data,) in rows]

    def consents(self, profile_ids: Collection[str]) -> list[Consent]:
        if not profile_ids:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_CONSENT_COLUMNS} FROM journey_consents WHERE profile_id = ANY(%s)"
                " ORDER BY profile_id, channel, category",
                (list(set(profile_ids)),),
            ).fetchall()
        return [_consent(row) for row in rows]

    def set_consent(self, consent: Consent) -> None:
        row = (
            consent.profile_id,
            consent.channel,
            consent.category,
            consent.subscribed,
            consent.at,
            consent.source,
        )
        with self._db.write() as conn:
            conn.execute(_SET_CONSENT, row)

    def add_inbox(self, item: InboxItem) -> None:
        row = (item.id, item.profile_id, item.created_at, item.read_at, item.dismissed_at)
        with self._db.write() as conn:
            conn.execute(_ADD_INBOX, (*row, encode(item)))

    def inbox(self, profile_id: str, include_dismissed: bool = False) -> list[InboxItem]:
        shown = "" if include_dismissed else " AND dismissed_at IS NULL"
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data, read_at, dismissed_at FROM journey_inbox"
                f" WHERE profile_id = %s{shown} ORDER BY created_at DESC, position DESC",
                (profile_id,),
            ).fetchall()
        return [_item(row) for row in rows]

    def mark_inbox(self, profile_id: str, item_id: str, action: str, at: int) -> bool:
        column = _MARKS.get(action)
        if column is None:
            raise ValidationError(
                f"unknown inbox action {action!r}; use 'read' or 'dismiss'", "action"
            )
        with self._db.write() as conn:
            # The first mark's time is kept: marking again is harmless.
            changed = conn.execute(
                f"UPDATE journey_inbox SET {column} = coalesce({column}, %s)"
                " WHERE id = %s AND profile_id = %s",
                (at, item_id, profile_id),
            ).rowcount
        return changed > 0


def _sent(row: tuple[Any, ...]) -> SentRecord:
    message_key, profile_id, journey_id, channel, category, priority, at = row
    return SentRecord(
        message_key=message_key,
        profile_id=profile_id,
        journey_id=journey_id,
        channel=channel,
        category=category,
        priority=priority,
        at=at,
    )


def _consent(row: tuple[Any, ...]) -> Consent:
    profile_id, channel, category, subscribed, at, source = row
    return Consent(
        profile_id=profile_id,
        channel=channel,
        category=category,
        subscribed=subscribed,
        at=at,
        source=source,
    )


def _item(row: tuple[Any, ...]) -> InboxItem:
    data, read_at, dismissed_at = row
    item = _decode_item(data)
    # The marks live in columns; ``data`` keeps the item as it was added.
    item.read_at, item.dismissed_at = read_at, dismissed_at
    return item
