"""PostgreSQL :class:`safar.ports.Outbox` over ``journey_outbox`` (written by the run store's
commit; tables: see :mod:`safar.stores.postgres.journeys`).

A row stays after it is settled: its key is what makes a re-committed batch skip the command.
Delivered rows drop their command, which nothing reads again.

Every worker dispatches, so claims and settlements of several processes meet here:

- :meth:`PgOutbox.claim` picks due pending rows from the partial index ``journey_outbox_due``
  with ``FOR UPDATE SKIP LOCKED`` and leases them in the same statement: no entry is handed to
  two claimers at once, and a claimer never waits for another.
- :meth:`PgOutbox.settle` first locks the batch's rows that are still pending, in key order (so
  two settlers of overlapping keys, e.g. one whose lease lapsed, do not deadlock), then writes
  every outcome with one statement per table. A key another settler settled meanwhile is no
  longer pending once its lock is granted, and is left alone with its decisions and sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import psycopg
from msgspec.structs import astuple

from safar.model.messages import Decision, SentRecord
from safar.model.runs import Command, OutboxEntry
from safar.ports import Settlement
from safar.stores.postgres.db import PgDatabase
from safar.stores.postgres.journeys import columns, encode, migrate, scalar

_decode_command = msgspec.json.Decoder(Command).decode

_ENTRY_COLUMNS = "key, command, profile_id, due, attempts, last_error"

#: The earliest due pending entries whose lease is free or over, leased in the same statement;
#: ``status = 'pending'`` is the predicate of ``journey_outbox_due``, which serves the order and
#: the limit (see the run store's timer claim, which has the same shape).
_CLAIM = (
    "WITH due AS ("
    " SELECT key, lease_until IS NOT NULL AS reclaimed FROM journey_outbox"
    " WHERE status = 'pending' AND due <= %(now)s"
    " AND (lease_until IS NULL OR lease_until <= %(now)s)"
    " ORDER BY due LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    "), leased AS ("
    " UPDATE journey_outbox AS o SET lease_owner = %(owner)s, lease_until = %(until)s"
    " FROM due WHERE o.key = due.key"
    " RETURNING o.key, o.command, o.profile_id, o.due, o.attempts, o.last_error, due.reclaimed"
    f") SELECT {_ENTRY_COLUMNS}, reclaimed FROM leased ORDER BY due"
)
#: Sorted before locked, so settlers lock overlapping keys in one order.
_LOCK_PENDING = (
    "SELECT key FROM journey_outbox WHERE key = ANY(%s) AND status = 'pending'"
    " ORDER BY key FOR UPDATE"
)
#: One row per key, the net outcome of its settlements (see _Outcome); the lease is released.
_SETTLE = (
    "UPDATE journey_outbox AS o SET status = s.status, due = coalesce(s.due, o.due),"
    " attempts = o.attempts + s.retries, last_error = coalesce(s.error, o.last_error),"
    " dead_seq = s.dead_seq, lease_owner = NULL, lease_until = NULL,"
    " command = CASE WHEN s.status = 'done' THEN NULL ELSE o.command END"
    " FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::int[], %b::text[], %b::bigint[])"
    " AS s(key, status, due, retries, error, dead_seq)"
    " WHERE o.key = s.key"
)
#: Appended in the settlements' order, so ``position`` orders records of the same millisecond.
_APPEND_DECISIONS = (
    "INSERT INTO journey_decisions(profile_id, at, data) SELECT profile_id, at, data"
    " FROM unnest(%b::text[], %b::bigint[], %b::bytea[]) WITH ORDINALITY"
    " AS d(profile_id, at, data, n) ORDER BY n"
)
_SEND_COLUMNS = "message_key, profile_id, journey_id, channel, category, priority, at"
_APPEND_SENDS = (
    f"INSERT INTO journey_sends({_SEND_COLUMNS}) SELECT {_SEND_COLUMNS}"
    " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[],"
    f" %b::bigint[]) WITH ORDINALITY AS s({_SEND_COLUMNS}, n) ORDER BY n"
)


@dataclass
class _Outcome:
    """The net effect of one key's settlements in one call, applied in order while the key is
    pending: each ``retry`` counts an attempt, the first ``done`` or ``dead`` ends the key, and
    the latest ``due`` and ``error`` given win."""

    status: Literal["pending", "done", "dead"] = "pending"
    due: int | None = None
    retries: int = 0
    error: str | None = None
    dead_seq: int | None = None


@dataclass
class _Settled:
    """What one settle call writes: an outcome per pending key, and the decisions and sends of
    the settlements that applied, in order."""

    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    died: list[str] = field(default_factory=list)  # keys settled dead, in settlement order
    decisions: list[Decision] = field(default_factory=list)
    sends: list[SentRecord] = field(default_factory=list)


class PgOutbox:
    """Outbox entries claimed with leases, settled with what the dispatcher decided and sent."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        migrate(db)

    def claim(self, now: int, limit: int, owner: str, lease_ms: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        params = {"now": now, "limit": limit, "owner": owner, "until": now + lease_ms}
        with self._db.write() as conn:
            rows = conn.execute(_CLAIM, params).fetchall()
        return [_entry(row[:-1], reclaimed=row[-1]) for row in rows]

    def settle(self, settlements: Sequence[Settlement]) -> None:
        if not settlements:
            return
        with self._db.write() as conn:
            pending = _lock_pending(conn, {s.key for s in settlements})
            settled = _net_outcomes(settlements, pending)
            _number_dead(conn, settled)
            _write_outcomes(conn, settled.outcomes)
            if settled.decisions:
                decisions = [(d.profile_id, d.at, encode(d)) for d in settled.decisions]
                conn.execute(_APPEND_DECISIONS, columns(decisions))
            if settled.sends:
                # Columns in field order, so a record is its own row.
                conn.execute(_APPEND_SENDS, columns(astuple(sent) for sent in settled.sends))

    def pending(self) -> int:
        with self._db.read() as conn:
            count: int = scalar(
                conn, "SELECT count(*) FROM journey_outbox WHERE status = 'pending'"
            )
        return count

    def next_due(self) -> int | None:
        with self._db.read() as conn:
            due: int | None = scalar(
                conn, "SELECT min(due) FROM journey_outbox WHERE status = 'pending'"
            )
        return due

    def dead(self, limit: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM journey_outbox WHERE status = 'dead'"
                " ORDER BY dead_seq DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [_entry(row) for row in rows]


def _lock_pending(conn: psycopg.Connection, keys: set[str]) -> set[str]:
    """Lock the rows of these keys that are pending, until the settle ends; their keys."""
    return {key for (key,) in conn.execute(_LOCK_PENDING, (sorted(keys),))}


def _net_outcomes(settlements: Sequence[Settlement], pending: set[str]) -> _Settled:
    """Fold the settlements, in order, into one outcome per key, as if each were applied alone:
    a key that is not (or no longer) pending ignores the rest, decisions and sends included."""
    settled = _Settled()
    open_keys = set(pending)
    for s in settlements:
        if s.key not in open_keys:
            continue  # already settled: harmless, changes nothing
        outcome = settled.outcomes.setdefault(s.key, _Outcome())
        if s.status == "retry":
            outcome.retries += 1
        else:
            outcome.status = s.status
            open_keys.discard(s.key)
            if s.status == "dead":
                settled.died.append(s.key)
        outcome.due = outcome.due if s.due is None else s.due
        outcome.error = outcome.error if s.error is None else s.error
        if s.decision is not None:
            settled.decisions.append(s.decision)
        if s.sent is not None:
            settled.sends.append(s.sent)
    return settled


def _number_dead(conn: psycopg.Connection, settled: _Settled) -> None:
    """Give each new dead letter its ``dead_seq``, ascending in settlement order."""
    if not settled.died:
        return
    seqs = sorted(
        seq
        for (seq,) in conn.execute(
            "SELECT nextval('journey_outbox_dead_seq') FROM generate_series(1, %s)",
            (len(settled.died),),
        )
    )
    for key, seq in zip(settled.died, seqs, strict=True):
        settled.outcomes[key].dead_seq = seq


def _write_outcomes(conn: psycopg.Connection, outcomes: dict[str, _Outcome]) -> None:
    if not outcomes:
        return
    rows = [
        (key, o.status, o.due, o.retries, o.error, o.dead_seq)
        for key, o in sorted(outcomes.items())
    ]
    conn.execute(_SETTLE, columns(rows))


def _entry(row: tuple[Any, ...], *, reclaimed: bool = False) -> OutboxEntry:
    key, command, profile_id, due, attempts, last_error = row
    return OutboxEntry(
        key=key,
        command=_decode_command(command),
        profile_id=profile_id,
        due=due,
        attempts=attempts,
        last_error=last_error,
        reclaimed=reclaimed,
    )
