"""In-memory journey state: :class:`safar.ports.JourneyStore`, :class:`~safar.ports.RunStore`,
:class:`~safar.ports.Outbox` and :class:`~safar.ports.DeliveryStore` in one object, behind one lock
(the runtime and the dispatcher threads share it).

Mutable structs (instances, versions, outbox commands, inbox items) are kept JSON-encoded, as the
SQLite adapter keeps them: callers can change what they passed in or got back without changing
the store, and a value the SQLite store cannot hold fails here too. Ties in time are broken by
write order, as SQLite's rowids break them.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from safar.errors import ValidationError, cursor_moved
from safar.model.journeys import JourneyVersion
from safar.model.messages import Consent, Decision, InboxItem, SentRecord
from safar.model.runs import Command, EntryRecord, Instance, OutboxEntry, Visit
from safar.ports import JourneyUpdate, Settlement

_encode = msgspec.json.Encoder().encode
_decode_version = msgspec.json.Decoder(JourneyVersion).decode
_decode_instance = msgspec.json.Decoder(Instance).decode
_decode_command = msgspec.json.Decoder(Command).decode
_decode_item = msgspec.json.Decoder(InboxItem).decode


@dataclass(slots=True)
class _Held:
    """A stored instance with the fields queries need beside it."""

    data: bytes
    profile_id: str
    status: str
    entered_at: int
    order: int
    partition: int
    lease_until: int | None = None


@dataclass(slots=True)
class _Letter:
    """A stored outbox entry."""

    command: bytes | None
    profile_id: str
    status: str
    due: int
    attempts: int
    last_error: str | None
    order: int
    lease_until: int | None = None

    def entry(self, key: str, *, reclaimed: bool = False) -> OutboxEntry:
        assert self.command is not None  # only delivered entries drop their command
        return OutboxEntry(
            key=key,
            command=_decode_command(self.command),
            profile_id=self.profile_id,
            due=self.due,
            attempts=self.attempts,
            last_error=self.last_error,
            reclaimed=reclaimed,
        )


class MemoryJourneyStores:
    """Journey versions, runs, the outbox and delivery records in dicts; not durable."""

    def __init__(self) -> None:
        # Reentrant: load_filed reads through load under one hold.
        self._lock = threading.RLock()
        self._order = itertools.count()
        self._versions: dict[tuple[str, int], bytes] = {}
        self._processed = 0  # the cursor without a work-feed partition
        self._partitions: dict[int, int] = {}  # work-feed partition -> its cursor
        self._ticks: dict[str, int] = {}
        self._instances: dict[str, _Held] = {}
        self._profile_instances: dict[str, set[str]] = {}
        self._timers: dict[str, int] = {}  # active instance id -> wake_at, when set
        self._entries: dict[str, dict[str, EntryRecord]] = {}  # profile -> journey -> record
        self._visits: dict[str, list[tuple[int, Visit]]] = {}  # instance -> (order, visit)
        self._outbox: dict[str, _Letter] = {}
        self._pending: set[str] = set()
        self._dead: list[str] = []  # keys, in the order they died
        self._decisions: dict[str, list[Decision]] = {}  # oldest written first
        self._sends: dict[str, list[tuple[int, SentRecord]]] = {}
        self._consents: dict[tuple[str, str, str], Consent] = {}
        self._inbox: dict[str, tuple[int, InboxItem]] = {}  # id -> (order, item)
        self._profile_inbox: dict[str, list[str]] = {}

    # -- JourneyStore ----------------------------------------------------------------------------

    def save(self, version: JourneyVersion) -> None:
        data = _encode(version)
        with self._lock:
            self._versions[(version.journey_id, version.version)] = data

    def get(self, journey_id: str, version: int | None = None) -> JourneyVersion | None:
        with self._lock:
            if version is None:
                numbers = [v for j, v in self._versions if j == journey_id]
                if not numbers:
                    return None
                version = max(numbers)
            data = self._versions.get((journey_id, version))
        return None if data is None else _decode_version(data)

    def versions(self, journey_id: str) -> list[JourneyVersion]:
        return [v for v in self.all() if v.journey_id == journey_id]

    def all(self) -> list[JourneyVersion]:
        with self._lock:
            stored = sorted(self._versions.items())
        return [_decode_version(data) for _, data in stored]

    # -- RunStore --------------------------------------------------------------------------------

    def processed_seq(self, partition: int | None = None) -> int:
        with self._lock:
            return self._cursor(partition)

    def _cursor(self, partition: int | None) -> int:
        return self._processed if partition is None else self._partitions.get(partition, 0)

    def load(
        self, profile_ids: Collection[str], partition: int | None = None
    ) -> tuple[list[Instance], list[EntryRecord]]:
        with self._lock:
            wanted = set(profile_ids)
            held = [
                h
                for pid in wanted
                for i in self._profile_instances.get(pid, ())
                if (h := self._instances[i]).status == "active"
                and (partition is None or h.partition == partition)
            ]
            entries = [_copy_entry(e) for p in wanted for e in self._entries.get(p, {}).values()]
        return [_decode_instance(h.data) for h in held], entries

    def load_filed(
        self, wanted: Mapping[int, Collection[str]]
    ) -> dict[int, tuple[list[Instance], list[EntryRecord]]]:
        with self._lock:
            return {partition: self.load(ids, partition) for partition, ids in wanted.items()}

    def instances(self, instance_ids: Collection[str]) -> list[Instance]:
        with self._lock:
            held = [self._instances[i] for i in set(instance_ids) if i in self._instances]
        return [_decode_instance(h.data) for h in held]

    def claim_timers(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Instance]:
        if limit <= 0:
            return []
        with self._lock:
            due = [
                (wake_at, h.order, i)
                for i, wake_at in self._timers.items()
                if wake_at <= now
                and _free((h := self._instances[i]).lease_until, now)
                and (partition is None or h.partition == partition)
            ]
            claimed = [i for _, _, i in heapq.nsmallest(limit, due)]
            for i in claimed:
                self._instances[i].lease_until = now + lease_ms
            held = [self._instances[i] for i in claimed]
        return [_decode_instance(h.data) for h in held]

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        wanted = set(partitions)
        with self._lock:
            return {
                h.partition
                for i, wake_at in self._timers.items()
                if wake_at <= now
                and (h := self._instances[i]).partition in wanted
                and _free(h.lease_until, now)
            }

    def commit(self, update: JourneyUpdate) -> None:
        self.commit_all([update])

    def commit_all(self, updates: Sequence[JourneyUpdate]) -> None:
        # Everything is encoded and checked before anything changes, so a failure leaves the
        # store as it was.
        encoded = [
            (
                update,
                [(i, _encode(i)) for i in update.instances],
                [(e, _encode(e.command)) for e in update.outbox],
                [_copy_entry(e) for e in update.entries],
            )
            for update in updates
        ]
        with self._lock:
            cursors: dict[int | None, int] = {}
            for update in updates:
                if update.after_seq is None:
                    continue
                current = cursors.get(update.partition, self._cursor(update.partition))
                if update.after_seq != current:
                    raise cursor_moved(
                        "journey runtime", update.after_seq, current, update.partition
                    )
                if update.processed_seq is not None:
                    cursors[update.partition] = update.processed_seq
            for update, instances, outbox, entries in encoded:
                self._apply(update, instances, outbox, entries)

    def _apply(
        self,
        update: JourneyUpdate,
        instances: list[tuple[Instance, bytes]],
        outbox: list[tuple[OutboxEntry, bytes]],
        entries: list[EntryRecord],
    ) -> None:
        filed = 0 if update.partition is None else update.partition
        for instance, data in instances:
            self._put_instance(instance, data, filed)
        for entry in entries:
            self._entries.setdefault(entry.profile_id, {})[entry.journey_id] = entry
        for e, command in outbox:
            if e.key not in self._outbox:
                self._outbox[e.key] = _Letter(
                    command=command,
                    profile_id=e.profile_id,
                    status="pending",
                    due=e.due,
                    attempts=e.attempts,
                    last_error=e.last_error,
                    order=next(self._order),
                )
                self._pending.add(e.key)
        for visit in update.visits:
            self._visits.setdefault(visit.instance_id, []).append((next(self._order), visit))
        for profile_id, target in update.moves.items():
            self._move(profile_id, filed, target)
        if update.after_seq is not None and update.processed_seq is not None:
            if update.partition is None:
                self._processed = update.processed_seq
            else:
                self._partitions[update.partition] = update.processed_seq
        self._ticks.update(update.schedule_ticks)

    def schedule_ticks(self) -> dict[str, int]:
        with self._lock:
            return dict(self._ticks)

    def _put_instance(self, instance: Instance, data: bytes, partition: int) -> None:
        old = self._instances.get(instance.id)
        if old is not None and old.profile_id != instance.profile_id:
            self._profile_instances[old.profile_id].discard(instance.id)
        self._instances[instance.id] = _Held(
            data=data,
            profile_id=instance.profile_id,
            status=instance.status,
            entered_at=instance.entered_at,
            order=next(self._order) if old is None else old.order,
            partition=partition,
        )
        self._profile_instances.setdefault(instance.profile_id, set()).add(instance.id)
        if instance.status == "active" and instance.wake_at is not None:
            self._timers[instance.id] = instance.wake_at
        else:
            self._timers.pop(instance.id, None)

    def _move(self, profile_id: str, source: int, target: int) -> None:
        """A handover: the profile's active instances filed under ``source`` go to ``target``."""
        for i in self._profile_instances.get(profile_id, ()):
            held = self._instances[i]
            if held.status == "active" and held.partition == source:
                held.partition = target

    def next_wake(self) -> int | None:
        with self._lock:
            return min(self._timers.values(), default=None)

    def history(self, profile_id: str, limit: int) -> tuple[list[Instance], list[Visit]]:
        with self._lock:
            held_ids = self._profile_instances.get(profile_id, ())
            newest = heapq.nlargest(
                max(limit, 0),
                [(self._instances[i].entered_at, self._instances[i].order, i) for i in held_ids],
            )
            held = [self._instances[i] for _, _, i in newest]
            visits = [pair for _, _, i in newest for pair in self._visits.get(i, ())]
        visits.sort(key=lambda pair: (pair[1].at, pair[0]))
        return [_decode_instance(h.data) for h in held], [visit for _, visit in visits]

    # -- Outbox ----------------------------------------------------------------------------------

    def claim(self, now: int, limit: int, owner: str, lease_ms: int) -> list[OutboxEntry]:
        if limit <= 0:
            return []
        with self._lock:
            due = [
                (letter.due, letter.order, key)
                for key in self._pending
                if (letter := self._outbox[key]).due <= now and _free(letter.lease_until, now)
            ]
            claimed = [key for _, _, key in heapq.nsmallest(limit, due)]
            entries = []
            for key in claimed:
                letter = self._outbox[key]
                entries.append(letter.entry(key, reclaimed=letter.lease_until is not None))
                letter.lease_until = now + lease_ms
            return entries

    def settle(self, settlements: Sequence[Settlement]) -> None:
        with self._lock:
            for s in settlements:
                letter = self._outbox.get(s.key)
                if letter is None or letter.status != "pending":
                    continue  # already settled: harmless, changes nothing
                letter.lease_until = None
                if s.due is not None:
                    letter.due = s.due
                if s.error is not None:
                    letter.last_error = s.error
                if s.status == "retry":
                    letter.attempts += 1
                else:
                    letter.status = s.status
                    self._pending.discard(s.key)
                if s.status == "done":
                    letter.command = None
                elif s.status == "dead":
                    self._dead.append(s.key)
                if s.decision is not None:
                    self._decisions.setdefault(s.decision.profile_id, []).append(s.decision)
                if s.sent is not None:
                    pair = (next(self._order), s.sent)
                    self._sends.setdefault(s.sent.profile_id, []).append(pair)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def next_due(self) -> int | None:
        with self._lock:
            return min((self._outbox[key].due for key in self._pending), default=None)

    def dead(self, limit: int) -> list[OutboxEntry]:
        with self._lock:
            keys = self._dead[::-1][: max(limit, 0)]
            return [self._outbox[key].entry(key) for key in keys]

    # -- DeliveryStore ---------------------------------------------------------------------------

    def sends(self, profile_ids: Collection[str], since: int) -> list[SentRecord]:
        with self._lock:
            found = [
                pair
                for pid in set(profile_ids)
                for pair in self._sends.get(pid, ())
                if pair[1].at >= since
            ]
        found.sort(key=lambda pair: (pair[1].at, pair[0]), reverse=True)
        return [record for _, record in found]

    def decisions(self, profile_id: str, limit: int) -> list[Decision]:
        with self._lock:
            written = list(enumerate(self._decisions.get(profile_id, ())))
        newest = heapq.nlargest(max(limit, 0), written, key=lambda pair: (pair[1].at, pair[0]))
        return [decision for _, decision in newest]

    def consents(self, profile_ids: Collection[str]) -> list[Consent]:
        wanted = set(profile_ids)
        with self._lock:
            return [c for key, c in sorted(self._consents.items()) if key[0] in wanted]

    def set_consent(self, consent: Consent) -> None:
        key = (consent.profile_id, consent.channel, consent.category)
        with self._lock:
            stored = self._consents.get(key)
            if stored is None or consent.at >= stored.at:
                self._consents[key] = consent

    def add_inbox(self, item: InboxItem) -> None:
        copy = _decode_item(_encode(item))
        with self._lock:
            if item.id not in self._inbox:
                self._inbox[item.id] = (next(self._order), copy)
                self._profile_inbox.setdefault(item.profile_id, []).append(item.id)

    def inbox(self, profile_id: str, include_dismissed: bool = False) -> list[InboxItem]:
        with self._lock:
            held = [self._inbox[i] for i in self._profile_inbox.get(profile_id, ())]
            shown = [
                (item.created_at, order, _decode_item(_encode(item)))
                for order, item in held
                if include_dismissed or item.dismissed_at is None
            ]
        shown.sort(key=lambda row: row[:2], reverse=True)
        return [item for _, _, item in shown]

    def mark_inbox(self, profile_id: str, item_id: str, action: str, at: int) -> bool:
        if action not in ("read", "dismiss"):
            raise ValidationError(
                f"unknown inbox action {action!r}; use 'read' or 'dismiss'", "action"
            )
        with self._lock:
            held = self._inbox.get(item_id)
            if held is None or held[1].profile_id != profile_id:
                return False
            item = held[1]
            # The first mark's time is kept: marking again is harmless.
            if action == "read" and item.read_at is None:
                item.read_at = at
            elif action == "dismiss" and item.dismissed_at is None:
                item.dismissed_at = at
            return True


def _free(lease_until: int | None, now: int) -> bool:
    """Whether a lease ending at ``lease_until`` (None: never leased or released) is over."""
    return lease_until is None or lease_until <= now


def _copy_entry(entry: EntryRecord) -> EntryRecord:
    return msgspec.structs.replace(entry)
