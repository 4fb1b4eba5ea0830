"""In-memory :class:`safar.ports.AudienceCatalog` and :class:`~safar.ports.AudienceStore` in one
object, behind one lock.

Folds, memberships and pending events are kept encoded as the SQLite adapter keeps them (JSON,
and MessagePack for events), so callers can change what they passed in or got back without
changing the store, and a value the SQLite store cannot hold fails here too. Versions are kept
as deep copies: their definition is an untagged union msgspec cannot decode whole. Ties in time
are broken by write order, as SQLite's rowids break them.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import msgspec

from safar.errors import ValidationError, cursor_moved, job_moved
from safar.model.audiences import AudienceVersion, ComputedTrait, Fold, Membership, Segment
from safar.model.events import Event
from safar.ports import AudienceUpdate

_encode = msgspec.json.Encoder().encode
_decode_folds = msgspec.json.Decoder(dict[str, Fold]).decode
_decode_membership = msgspec.json.Decoder(Membership).decode
_encode_event = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode


@dataclass(frozen=True, slots=True)
class _Encoded:
    """An update's values as the store keeps them."""

    folds: dict[tuple[str, str], bytes | None]
    history: dict[tuple[str, str], bytes | None]
    memberships: list[tuple[Membership, bytes]]
    emits: list[tuple[str, bytes]]

    @classmethod
    def of(cls, update: AudienceUpdate) -> _Encoded:
        return cls(
            folds={key: _encode(f) if f else None for key, f in update.folds.items()},
            history={key: _encode(f) if f else None for key, f in update.history.items()},
            memberships=[(m, _encode(m)) for m in update.memberships],
            emits=[(e.message_id, _encode_event(e)) for e in update.emits],
        )


@dataclass(slots=True)
class _Evaluated:
    """A stored membership with the fields queries need beside it."""

    data: bytes
    segments: frozenset[str]
    wake_at: int | None
    order: int
    partition: int
    lease_until: int | None = None


class MemoryAudienceStores:
    """Audience versions, repair requests, folds, memberships and pending events in dicts; not
    durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._versions: dict[str, dict[int, AudienceVersion]] = {}
        self._processed = 0
        self._partitions: dict[int, int] = {}  # partition -> its cursor
        self._folds: dict[tuple[str, str], bytes] = {}
        self._history: dict[tuple[str, str], bytes] = {}
        self._profiles: dict[str, _Evaluated] = {}
        self._members: dict[str, set[str]] = {}  # segment id -> profile ids
        self._emits: dict[str, bytes] = {}  # message id -> event, in commit order
        self._jobs: dict[str, str] = {}
        self._repairs: dict[str, int] = {}

    # -- AudienceCatalog -------------------------------------------------------------------------

    def save(self, version: AudienceVersion) -> None:
        expected = Segment if version.kind == "segment" else ComputedTrait
        if not isinstance(version.definition, expected):
            raise ValidationError(
                f"audience {version.id!r} version {version.version} is a {version.kind} but its"
                f" definition is a {type(version.definition).__name__}",
                "kind",
            )
        _encode(version)  # refuse what the SQLite store could not hold
        stored = copy.deepcopy(version)
        with self._lock:
            self._versions.setdefault(version.id, {})[version.version] = stored

    def get(self, audience_id: str, version: int | None = None) -> AudienceVersion | None:
        with self._lock:
            numbered = self._versions.get(audience_id, {})
            if version is None and numbered:
                version = max(numbered)
            found = numbered.get(version) if version is not None else None
        return copy.deepcopy(found)

    def versions(self, audience_id: str) -> list[AudienceVersion]:
        with self._lock:
            numbered = sorted(self._versions.get(audience_id, {}).items())
        return [copy.deepcopy(v) for _, v in numbered]

    def all(self) -> list[AudienceVersion]:
        with self._lock:
            stored = [
                v
                for _, numbered in sorted(self._versions.items())
                for _, v in sorted(numbered.items())
            ]
        return [copy.deepcopy(v) for v in stored]

    def request_repair(self, audience_id: str) -> int:
        with self._lock:
            count = self._repairs.get(audience_id, 0) + 1
            self._repairs[audience_id] = count
        return count

    def repairs(self) -> dict[str, int]:
        with self._lock:
            return dict(self._repairs)

    # -- AudienceStore ---------------------------------------------------------------------------

    def processed_seq(self, partition: int | None = None) -> int:
        with self._lock:
            return self._cursor(partition)

    def _cursor(self, partition: int | None) -> int:
        if partition is None:
            return self._processed
        return self._partitions.get(partition, 0)

    def folds(
        self, identifiers: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Fold]]:
        with self._lock:
            found = [
                (key, self._folds.get(key), self._history.get(key))
                for key in identifiers
                if key in self._folds or key in self._history
            ]
        merged: dict[tuple[str, str], dict[str, Fold]] = {}
        for key, live, history in found:
            folds = _decode_folds(live) if live is not None else {}
            if history is not None:
                folds.update(_decode_folds(history))
            merged[key] = folds
        return merged

    def memberships(self, profile_ids: Collection[str]) -> dict[str, Membership]:
        with self._lock:
            found = [self._profiles[p].data for p in set(profile_ids) if p in self._profiles]
        return {m.profile_id: m for m in map(_decode_membership, found)}

    def claim_due(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Membership]:
        if limit <= 0:
            return []
        with self._lock:
            due = [
                (held.wake_at, held.order, profile_id)
                for profile_id, held in self._profiles.items()
                if _due(held, now) and (partition is None or held.partition == partition)
            ]
            claimed = [self._profiles[p] for _, _, p in heapq.nsmallest(limit, due)]
            for held in claimed:
                held.lease_until = now + lease_ms
        return [_decode_membership(held.data) for held in claimed]

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        wanted = set(partitions)
        with self._lock:
            return {h.partition for h in self._profiles.values() if _due(h, now)} & wanted

    def next_wake(self) -> int | None:
        with self._lock:
            wakes = [h.wake_at for h in self._profiles.values() if h.wake_at is not None]
        return min(wakes, default=None)

    def commit(self, update: AudienceUpdate) -> None:
        self.commit_all([update])

    def commit_all(self, updates: Sequence[AudienceUpdate]) -> None:
        # Everything is encoded before anything changes, so a failure leaves the store as it was.
        encoded = [_Encoded.of(update) for update in updates]
        with self._lock:
            # One update checks before it changes anything; of several, a later one may fail
            # after earlier ones changed the store, so the store is restored then.
            saved = self._state() if len(updates) > 1 else None
            try:
                for update, rows in zip(updates, encoded, strict=True):
                    self._apply(update, rows)
            except BaseException:
                if saved is not None:
                    self._restore(saved)
                raise

    def _apply(self, update: AudienceUpdate, rows: _Encoded) -> None:
        filed = update.partition or 0
        self._check(update)
        _replace(self._folds, rows.folds)
        _replace(self._history, rows.history)
        for membership, data in rows.memberships:
            self._put(membership, data, filed)
        for profile_id, partition in update.moves.items():
            held = self._profiles.get(profile_id)
            if held is not None and held.partition == filed:
                held.partition = partition
        # Deletions come last: a profile merged away is gone even if evaluated in the batch.
        for profile_id in update.deleted:
            self._drop(profile_id)
        for message_id, event in rows.emits:
            self._emits.setdefault(message_id, event)
        for name, at in update.progress.items():
            if at is None:
                self._jobs.pop(name, None)
            else:
                self._jobs[name] = at
        if update.after_seq is not None and update.processed_seq is not None:
            if update.partition is None:
                self._processed = update.processed_seq
            else:
                self._partitions[update.partition] = update.processed_seq

    _STATE = (
        *("_processed", "_partitions", "_folds", "_history"),
        *("_profiles", "_members", "_emits", "_jobs"),
    )

    def _state(self) -> dict[str, object]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}

    def _restore(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def _check(self, update: AudienceUpdate) -> None:
        """Refuse a batch read from a cursor or job state that has moved since."""
        if update.after_seq is not None:
            cursor = self._cursor(update.partition)
            if update.after_seq != cursor:
                raise cursor_moved("audience processor", update.after_seq, cursor, update.partition)
        for name, expected in update.expect.items():
            held = self._jobs.get(name)
            if held != expected:
                raise job_moved(name, expected, held)

    def _put(self, membership: Membership, data: bytes, partition: int) -> None:
        old = self._drop(membership.profile_id)
        segments = frozenset(membership.segments)
        self._profiles[membership.profile_id] = _Evaluated(
            data=data,
            segments=segments,
            wake_at=membership.wake_at,
            order=next(self._order) if old is None else old.order,
            partition=partition,
        )
        for segment in segments:
            self._members.setdefault(segment, set()).add(membership.profile_id)

    def _drop(self, profile_id: str) -> _Evaluated | None:
        old = self._profiles.pop(profile_id, None)
        for segment in old.segments if old else ():
            self._members[segment].discard(profile_id)
        return old

    def pending_emits(self, limit: int) -> list[Event]:
        with self._lock:
            found = list(itertools.islice(self._emits.values(), max(limit, 0)))
        return [_decode_event(data) for data in found]

    def forwarded(self, message_ids: Collection[str]) -> None:
        with self._lock:
            for message_id in message_ids:
                self._emits.pop(message_id, None)

    def members(self, segment_id: str, after_profile_id: str, limit: int) -> list[Membership]:
        with self._lock:
            page = heapq.nsmallest(
                max(limit, 0),
                (p for p in self._members.get(segment_id, ()) if p > after_profile_id),
            )
            found = [self._profiles[p].data for p in page]
        return [_decode_membership(data) for data in found]

    def count(self, segment_id: str) -> int:
        with self._lock:
            return len(self._members.get(segment_id, ()))

    def progress(self) -> dict[str, str]:
        with self._lock:
            return dict(self._jobs)


def _due(held: _Evaluated, now: int) -> bool:
    return (
        held.wake_at is not None
        and held.wake_at <= now
        and (held.lease_until is None or held.lease_until <= now)
    )


def _replace(
    rows: dict[tuple[str, str], bytes], changes: dict[tuple[str, str], bytes | None]
) -> None:
    """Store each identifier's encoded folds; None deletes them."""
    for key, data in changes.items():
        if data is None:
            rows.pop(key, None)
        else:
            rows[key] = data
