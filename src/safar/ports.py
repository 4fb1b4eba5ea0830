"""Every port Safar's core and runtime talk through, with its contract. Adapters live in
``safar.stores`` (memory, SQLite; PostgreSQL later) and must not restate these contracts.

All times are milliseconds since the Unix epoch, UTC, taken from a :class:`Clock` passed in.
Adapters raise :class:`safar.errors.StoreError` (``from`` the driver error) when the backend fails.
The contract test suites in ``tests/contract/`` run against every adapter.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, Protocol

import msgspec

from safar.model.audiences import AudienceVersion, Fold, Membership
from safar.model.events import AppendResult, Event
from safar.model.journeys import JourneyVersion
from safar.model.keys import ApiKey, Source
from safar.model.leases import Fence
from safar.model.messages import Consent, Decision, InboxItem, Receipt, RenderedMessage, SentRecord
from safar.model.profiles import (
    ClusterView,
    Identifier,
    IdentityView,
    MergeRecord,
    Profile,
    ProfileUpdate,
    TraitChange,
    TraitWrite,
)
from safar.model.runs import EntryRecord, Instance, OutboxEntry, Visit
from safar.model.work import WorkBatch, WorkItem


class Clock(Protocol):
    """Where time comes from. The core never reads the OS clock; tests pass a fake one."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch, UTC. Never goes backwards within one clock."""
        ...


class EventLog(Protocol):
    """The append-only, durable log of every event, ordered by ``seq``.

    - ``append`` is atomic: all the given events are stored, or none (it raises). It returns only
      after the events are durably committed: once it returns, a process crash loses none of them.
    - Deduplication: an event whose ``(source_id, message_id)`` was appended before, within the
      dedupe window (``dedupe_window_ms``, at least 24 h, surviving restarts), or earlier in the
      same call, is skipped and counted in ``AppendResult.duplicates``. It is never an error.
    - ``seq`` is assigned by the log: strictly increasing, gap-free within one append.
    - Readers see only committed events, in ``seq`` order.
    """

    def append(self, events: Sequence[Event]) -> AppendResult:
        """Store ``events`` (their ``seq`` is ignored), skipping duplicates; see the class."""
        ...

    def read(self, after_seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with ``seq > after_seq``, ascending by ``seq``."""
        ...

    def get(self, seqs: Collection[int]) -> list[Event]:
        """The events with these ``seq`` numbers, ascending; unknown numbers are left out."""
        ...

    def seen(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these ``(source_id, message_id)`` keys an append now would skip as
        duplicates: those appended within the dedupe window."""
        ...

    def last_seq(self) -> int:
        """The highest committed ``seq``, or 0 when the log is empty."""
        ...

    def count(self) -> int:
        """How many events the log holds."""
        ...


class KeyStore(Protocol):
    """Sources with their write keys, and management API keys.

    Secrets are returned only when created; API keys are stored as hashes. Lookups of unknown
    keys return ``None``, never raise.
    """

    def create_source(self, name: str) -> Source:
        """Create a source with a new random write key."""
        ...

    def source_by_write_key(self, write_key: str) -> Source | None:
        """The source owning ``write_key``, or None."""
        ...

    def list_sources(self) -> list[Source]:
        """Every source, oldest first."""
        ...

    def create_api_key(self, name: str, scope: str) -> tuple[ApiKey, str]:
        """Create an API key with ``scope`` (read, write or admin); returns it and its secret."""
        ...

    def api_key_by_secret(self, secret: str) -> ApiKey | None:
        """The API key whose secret this is, or None."""
        ...


class ProfileReader(Protocol):
    """The read side of the profile store, as the management API sees it.

    What it returns reflects events up to ``processed_seq()``; processing may lag the event log.
    A profile is found by any identifier it holds, including identifiers of profiles merged into it.
    Each event is attributed to the profile holding its highest-priority identifier. Unknown
    profile ids give empty lists, never errors.
    """

    def processed_seq(self) -> int:
        """The ``seq`` of the last event the profile processor has applied (0 before any)."""
        ...

    def find(self, identifier: Identifier) -> Profile | None:
        """The profile holding ``identifier`` (normalized), or None.

        ``identifiers`` lists types and values sorted; ``first_seen`` / ``last_seen`` are the
        earliest and latest timestamps of events carrying any of them.
        """
        ...

    def scan(
        self, after_id: str, limit: int, partition: tuple[int, int] | None = None
    ) -> list[Profile]:
        """Up to ``limit`` profiles with ids above ``after_id``, ascending by id (for walking
        every profile in pages, e.g. a scheduled journey entry). With ``partition`` ``(n,
        P)``, only the profiles of work-feed partition ``n`` of ``P``
        (:func:`~safar.core.assignment.partition_of` of their id): the others are passed over
        without being loaded. Fewer than ``limit`` only when no more follow (a profile merged
        away while the page is read is passed over, and the walk goes on)."""
        ...

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        """:meth:`find` for many identifiers in a few queries; unknown ones are left out.

        Identifiers of one profile map to equal :class:`Profile` values.
        """
        ...

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        """Seqs of the profile's events across merged identities, newest first.

        Only seqs below ``before_seq`` when it is given (for paging).
        """
        ...

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        """The profile's trait writes, newest first by ``(timestamp, message_id)``, then key.

        Every write is listed, including one that set a value the trait already had.
        """
        ...

    def reshaped(self, after_seq: int, upto_seq: int) -> list[str]:
        """Profiles whose identifiers changed (merged into another, received identifiers,
        lost some to a move) in the batches whose ``processed_seq`` lies in ``(after_seq,
        upto_seq]``, sorted; merged-away ids included. For processors that keep per-profile
        state and must revisit a profile that changed without an event of its own."""
        ...

    def merges(self, profile_id: str) -> list[MergeRecord]:
        """Merges done into, and refused for, this profile, oldest first.

        Records naming the profile (as ``into`` or ``other``) or a profile merged into it.
        """
        ...


class ProfileStore(ProfileReader, Protocol):
    """The profile processor's state: identifiers, the edges linking them, profiles, history.

    Only the processor writes (one at a time); readers may run meanwhile and see the state from
    before or after each :meth:`apply`, never part of one. Identifiers are grouped in clusters
    (identifiers linked by events, ignoring merge limits); see :mod:`safar.model.profiles`.

    - ``load`` and ``load_clusters`` read what one batch needs in a few queries, never one per
      identifier; ``trait_writes`` is needed only when identifiers move between profiles.
    - ``apply`` stores one batch's :class:`~safar.model.profiles.ProfileUpdate` atomically with
      the new ``processed_seq``. It raises :class:`~safar.errors.StoreError` and changes nothing
      if ``update.after_seq`` is not the current ``processed_seq()`` (another processor got there
      first), if ``update.fence`` is set and does not hold (see :class:`LeaseStore`), or if it
      names in ``seen``, ``timeline`` or ``trait_writes`` an identifier placed
      neither before nor by the update. Placements, edges (by key) and profiles are upserted;
      ``seen`` only widens an identifier's first/last seen times; a timeline row (identifier,
      seq), a trait write (identifier, timestamp, message_id, key) or a merge record (into,
      other, message_id, refused) already stored is skipped, so re-applying history is harmless.
    - Timelines and trait writes belong to identifiers: a profile's are those of the
      identifiers it holds now, so moving an identifier moves its history.

    ``pipeline_cores`` is the fewest cores on which the processor should apply each update on
    a thread of its own while it computes the next batch (ADR 16), or None for never: it pays
    when ``apply`` spends its time in a few calls that let go of the GIL, and then only if that
    time does not come out of another process's. An adapter that names a number, or is run
    pipelined in tests, must allow reads on other threads while an ``apply`` runs.
    """

    pipeline_cores: int | None

    def load(self, identifiers: Collection[Identifier], edge_keys: Collection[str]) -> IdentityView:
        """Where each known identifier is placed, and the stamps of the known edges among keys."""
        ...

    def load_clusters(
        self, cluster_ids: Collection[str], profile_ids: Collection[str]
    ) -> ClusterView:
        """These clusters in full, and the states of their profiles and of ``profile_ids``.

        Unknown ids are left out. A cluster's edges come in no particular order (identity
        resolution replays them in stamp order).
        """
        ...

    def trait_writes(self, identifiers: Collection[Identifier]) -> list[TraitWrite]:
        """Every trait write filed under these identifiers, in no particular order."""
        ...

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        """Store one batch's changes and its ``processed_seq`` atomically (see the class).

        ``background``: called on a thread of its own while another computes (ADR 16), so
        better done in a few calls that let go of the GIL than in many that take it back."""
        ...


class JourneyStore(Protocol):
    """Journey definitions, every version of each, with their lifecycle status.

    A version is identified by ``(journey_id, version)``; ``save`` inserts or replaces it whole.
    Lists are ordered by journey id, then version ascending.
    """

    def save(self, version: JourneyVersion) -> None:
        """Insert or replace this version."""
        ...

    def get(self, journey_id: str, version: int | None = None) -> JourneyVersion | None:
        """That version, or the highest version when ``version`` is None; None when unknown."""
        ...

    def versions(self, journey_id: str) -> list[JourneyVersion]:
        """Every version of one journey (empty when unknown)."""
        ...

    def all(self) -> list[JourneyVersion]:
        """Every version of every journey."""
        ...


class JourneyUpdate(msgspec.Struct, kw_only=True):
    """What one runtime batch changes, committed by :meth:`RunStore.commit` in one transaction."""

    #: The ``processed_seq`` this batch read events after, or None for a batch of timers and
    #: replies only (the cursor does not move).
    after_seq: int | None = None
    processed_seq: int | None = None
    #: Instances created or changed: stored whole. Their ``wake_at`` is their timer.
    instances: list[Instance] = msgspec.field(default_factory=list)
    entries: list[EntryRecord] = msgspec.field(default_factory=list)
    outbox: list[OutboxEntry] = msgspec.field(default_factory=list)
    visits: list[Visit] = msgspec.field(default_factory=list)
    #: Journey id -> the cron instant of its schedule handled last (upserted).
    schedule_ticks: dict[str, int] = msgspec.field(default_factory=dict)
    #: The lease this batch was computed under (see :class:`LeaseStore`).
    fence: Fence | None = None
    #: The work-feed partition (ADR 12) whose cursor this batch moves and under which its
    #: instances are filed; None without a feed (the installation's single cursor).
    partition: int | None = None
    #: A handover: profile id -> the partition its active instances filed under ``partition``
    #: move to (after this batch's instances are stored).
    moves: dict[str, int] = msgspec.field(default_factory=dict)


class RunStore(Protocol):
    """Journey instances, their timers, the per-(journey, profile) entry records, and the outbox
    they write into. Written by the journey runtime; its timers are claimed with leases.

    - ``commit`` is atomic. With ``after_seq`` set it raises :class:`~safar.errors.StoreError`
      and changes nothing unless ``after_seq == processed_seq(partition)``, then sets that
      cursor to ``processed_seq``; with ``fence`` set, likewise unless the fence holds (see
      :class:`LeaseStore`). Instances and entry records are upserted (by id, and by (journey_id,
      profile_id)); an outbox entry whose key is already stored (pending or delivered) is
      skipped, so re-committing a batch never duplicates a command. Visits are appended.
    - Cursors: one without a partition (``None``) and one per work-feed partition, each 0 until
      first set, each moved only by commits naming it.
    - Every instance is filed under a partition: the one of the commit that last stored it (0
      for a commit without one), or the one a later ``moves`` sent it to.
    - A timer is an instance with ``status == "active"`` and ``wake_at`` set. ``claim_timers``
      returns instances whose ``wake_at <= now`` and whose lease is free or expired (only those
      filed under ``partition`` when it is given), and leases them to ``owner`` until ``now +
      lease_ms``; committing the instance releases its lease.
    """

    def processed_seq(self, partition: int | None = None) -> int:
        """The ``seq`` of the last event the journey runtime has handled, in ``partition`` of
        the work feed or, for None, without one (0 before any)."""
        ...

    def load(
        self, profile_ids: Collection[str], partition: int | None = None
    ) -> tuple[list[Instance], list[EntryRecord]]:
        """Active instances of these profiles (only those filed under ``partition`` when it is
        given), and their entry records, in two queries."""
        ...

    def load_filed(
        self, wanted: Mapping[int, Collection[str]]
    ) -> dict[int, tuple[list[Instance], list[EntryRecord]]]:
        """For each partition of ``wanted``, what :meth:`load` (its profile ids, it) returns,
        from one consistent read."""
        ...

    def instances(self, instance_ids: Collection[str]) -> list[Instance]:
        """These instances, whatever their status; unknown ids are left out."""
        ...

    def claim_timers(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Instance]:
        """Up to ``limit`` due timers, earliest first, leased to ``owner`` (see the class)."""
        ...

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        """Those of ``partitions`` for which :meth:`claim_timers` would now return something;
        claims nothing."""
        ...

    def commit(self, update: JourneyUpdate) -> None:
        """Store one batch's changes atomically (see the class)."""
        ...

    def commit_all(self, updates: Sequence[JourneyUpdate]) -> None:
        """:meth:`commit` each update, in order, in one transaction: if any check fails,
        nothing of any of them is stored."""
        ...

    def schedule_ticks(self) -> dict[str, int]:
        """Journey id -> the cron instant its scheduled entry last ran for."""
        ...

    def next_wake(self) -> int | None:
        """The earliest ``wake_at`` of an active instance (leased or not), or None."""
        ...

    def history(self, profile_id: str, limit: int) -> tuple[list[Instance], list[Visit]]:
        """The profile's instances (any status, newest entry first, at most ``limit``) and their
        visits in order."""
        ...


class Settlement(msgspec.Struct, kw_only=True):
    """How a dispatcher settles one claimed outbox entry, with what to record beside it.

    ``status``: ``done`` (delivered, or decided not to deliver), ``retry`` (try again at
    ``due``; ``attempts`` and ``error`` are stored), ``dead`` (no more attempts: a dead letter).
    """

    key: str
    status: Literal["done", "retry", "dead"]
    due: int | None = None
    error: str | None = None
    decision: Decision | None = None
    sent: SentRecord | None = None

    def __post_init__(self) -> None:
        # The error is a provider's words (a webhook target's reply body, say), which may hold
        # NUL; PostgreSQL refuses it in text, and the settlement would fail every time.
        if self.error is not None and "\x00" in self.error:
            self.error = self.error.replace("\x00", "\ufffd")


class Outbox(Protocol):
    """Commands waiting for delivery (written by :meth:`RunStore.commit`), claimed with leases.

    - ``claim`` returns entries with ``due <= now`` that are pending and not leased (or whose
      lease expired), earliest due first, and leases them to ``owner`` until ``now + lease_ms``.
      An entry is delivered at least once: after a crash its lease expires and it is claimed
      again, marked ``reclaimed``. Its ``attempts`` counts earlier ``retry`` settlements.
    - ``settle`` stores the settlements, their decisions and sent records in one transaction.
      Settling a key that is not pending (already settled) changes nothing for that key.
    """

    def claim(self, now: int, limit: int, owner: str, lease_ms: int) -> list[OutboxEntry]:
        """Up to ``limit`` due entries, leased to ``owner`` (see the class)."""
        ...

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record the outcome of claimed entries atomically (see the class)."""
        ...

    def pending(self) -> int:
        """How many entries wait for delivery (due or not)."""
        ...

    def next_due(self) -> int | None:
        """The earliest ``due`` of a pending entry (leased or not), or None."""
        ...

    def dead(self, limit: int) -> list[OutboxEntry]:
        """Dead letters, newest first."""
        ...


class DeliveryStore(Protocol):
    """What the policy gate reads and the management API shows: sends, decisions, consent, inbox.

    Sends and decisions are written by :meth:`Outbox.settle`. Per profile lists are newest
    first. ``set_consent`` keeps the latest choice per (profile, channel, category) by ``at``.
    Inbox items are added idempotently by id.
    """

    def sends(self, profile_ids: Collection[str], since: int) -> list[SentRecord]:
        """Messages handed to a channel for these profiles at or after ``since``."""
        ...

    def decisions(self, profile_id: str, limit: int) -> list[Decision]:
        """The profile's decisions, newest first."""
        ...

    def consents(self, profile_ids: Collection[str]) -> list[Consent]:
        """The current consent choices of these profiles."""
        ...

    def set_consent(self, consent: Consent) -> None:
        """Record a choice; an older one (by ``at``) than the stored one is ignored."""
        ...

    def add_inbox(self, item: InboxItem) -> None:
        """Add an in-app message; an id already stored is skipped."""
        ...

    def inbox(self, profile_id: str, include_dismissed: bool = False) -> list[InboxItem]:
        """The profile's in-app messages, newest first."""
        ...

    def mark_inbox(self, profile_id: str, item_id: str, action: str, at: int) -> bool:
        """``read`` or ``dismiss`` an item; False when the profile has no such item."""
        ...


class AudienceCatalog(Protocol):
    """Segment and computed trait definitions, every version of each, with their status, and
    the repairs requested of each.

    A version is identified by ``(id, version)``; ``save`` inserts or replaces it whole. Lists
    are ordered by id, then version ascending.

    A repair request asks the audience processor to rebuild an audience's state from the stored
    events. The catalog only counts requests per id (atomically, so concurrent requests all
    count); the processor remembers in its own progress how many it has carried out.
    """

    def save(self, version: AudienceVersion) -> None:
        """Insert or replace this version."""
        ...

    def get(self, audience_id: str, version: int | None = None) -> AudienceVersion | None:
        """That version, or the highest version when ``version`` is None; None when unknown."""
        ...

    def versions(self, audience_id: str) -> list[AudienceVersion]:
        """Every version of one segment or computed trait (empty when unknown)."""
        ...

    def all(self) -> list[AudienceVersion]:
        """Every version of every segment and computed trait."""
        ...

    def request_repair(self, audience_id: str) -> int:
        """Count one more repair request for ``audience_id`` (whatever its versions: callers
        check that first); returns how many it has had, this one included."""
        ...

    def repairs(self) -> dict[str, int]:
        """Audience id -> how many repairs have been requested of it; ids never repaired are
        left out."""
        ...


class AudienceUpdate(msgspec.Struct, kw_only=True):
    """What one audience batch changes, committed by :meth:`AudienceStore.commit` atomically."""

    #: The ``processed_seq`` this batch read events after, or None for a batch of timers only.
    after_seq: int | None = None
    processed_seq: int | None = None
    #: Identifier -> its folds by aggregate key, replacing what is stored; an empty mapping
    #: deletes the identifier's folds.
    folds: dict[tuple[str, str], dict[str, Fold]] = msgspec.field(default_factory=dict)
    #: Memberships evaluated: stored whole (upserted by profile id). Committing one releases
    #: its timer lease.
    memberships: list[Membership] = msgspec.field(default_factory=list)
    #: Profile ids whose membership is gone (merged into another profile).
    deleted: list[str] = msgspec.field(default_factory=list)
    #: Membership-change events, kept until :meth:`AudienceStore.forwarded` says they are in
    #: the event log. One whose message id is already pending is skipped.
    emits: list[Event] = msgspec.field(default_factory=list)
    #: Job name -> its new progress (see :meth:`AudienceStore.progress`); None forgets it.
    progress: dict[str, str | None] = msgspec.field(default_factory=dict)
    #: Job name -> the progress it must have (None: none) for the batch to commit: a batch
    #: computed from job states another process has changed since is refused.
    expect: dict[str, str | None] = msgspec.field(default_factory=dict)
    #: Identifier -> its *history* folds (those a background job folds from the log) by
    #: storage key, replacing what is stored; an empty mapping deletes them. Kept apart from
    #: ``folds`` so that the job and the processors folding live events never write one row.
    history: dict[tuple[str, str], dict[str, Fold]] = msgspec.field(default_factory=dict)
    #: The lease this batch was computed under (see :class:`LeaseStore`).
    fence: Fence | None = None
    #: The work-feed partition (ADR 12) whose cursor this batch moves and under which its
    #: memberships are filed; None without a feed (the installation's single cursor).
    partition: int | None = None
    #: A handover: profile id -> the partition its membership filed under ``partition`` moves
    #: to (after this batch's memberships are stored).
    moves: dict[str, int] = msgspec.field(default_factory=dict)


class AudienceStore(Protocol):
    """What the audience processor keeps per customer: the folds of their events per aggregate
    (filed under the identifier each event is attributed to, so they move with identifiers),
    their segment memberships with a timer for the next change a window brings, and the
    membership-change events not yet in the event log.

    - ``commit`` is atomic. With ``after_seq`` set it raises :class:`~safar.errors.StoreError`
      and changes nothing unless ``after_seq == processed_seq(partition)``, then sets that
      cursor to ``processed_seq``; with ``fence`` set, likewise unless the fence holds (see
      :class:`LeaseStore`); with ``expect``, likewise unless every job named has that progress.
    - Cursors: one without a partition (``None``) and one per work-feed partition, each 0 until
      first set, each moved only by commits naming it.
    - Folds are kept in two parts per identifier, live (``folds``) and history (``history``),
      each replaced whole by a commit naming it; callers keep their storage keys apart, and
      :meth:`folds` returns both parts of an identifier in one mapping.
    - Every membership is filed under a partition: the one of the commit that last stored it (0
      for a commit without one), or the one a later ``moves`` sent it to.
    - A timer is a membership with ``wake_at`` set. ``claim_due`` returns memberships whose
      ``wake_at <= now`` and whose lease is free or expired (only those filed under
      ``partition`` when it is given), earliest first, and leases them to ``owner`` until
      ``now + lease_ms``.
    - ``members`` and ``count`` reflect the last commit.
    """

    def processed_seq(self, partition: int | None = None) -> int:
        """The ``seq`` of the last event the audience processor has handled, in ``partition``
        of the work feed or, for None, without one (0 before any)."""
        ...

    def folds(
        self, identifiers: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Fold]]:
        """The folds filed under these identifiers, live and history together by storage key;
        identifiers without any are left out."""
        ...

    def memberships(self, profile_ids: Collection[str]) -> dict[str, Membership]:
        """The stored memberships of these profiles; unknown ids are left out."""
        ...

    def claim_due(
        self, now: int, limit: int, owner: str, lease_ms: int, partition: int | None = None
    ) -> list[Membership]:
        """Up to ``limit`` memberships whose timer is due, leased to ``owner`` (see the class)."""
        ...

    def due_partitions(self, now: int, partitions: Collection[int]) -> set[int]:
        """Those of ``partitions`` for which :meth:`claim_due` would now return something;
        claims nothing."""
        ...

    def next_wake(self) -> int | None:
        """The earliest ``wake_at`` of any membership (leased or not), or None."""
        ...

    def commit(self, update: AudienceUpdate) -> None:
        """Store one batch's changes atomically (see the class)."""
        ...

    def commit_all(self, updates: Sequence[AudienceUpdate]) -> None:
        """:meth:`commit` each update, in order, in one transaction: if any check fails,
        nothing of any of them is stored."""
        ...

    def pending_emits(self, limit: int) -> list[Event]:
        """Up to ``limit`` membership-change events not yet forwarded, in commit order."""
        ...

    def forwarded(self, message_ids: Collection[str]) -> None:
        """Forget these pending events: they are in the event log."""
        ...

    def members(self, segment_id: str, after_profile_id: str, limit: int) -> list[Membership]:
        """Up to ``limit`` memberships holding ``segment_id``, with profile ids above
        ``after_profile_id``, ascending by profile id (for paging through an audience)."""
        ...

    def count(self, segment_id: str) -> int:
        """How many customers are in the segment."""
        ...

    def progress(self) -> dict[str, str]:
        """Where the processor's background jobs are (history folded in for a new aggregate,
        customers evaluated for a new segment), by job name, as committed with the state they
        produced."""
        ...


class LeaseStore(Protocol):
    """Named leases: which process does a job that only one may do at a time (the stepper of an
    installation, say), taken over when its holder stops renewing.

    - ``acquire`` takes the lease when it is free or expired, or renews it when ``owner`` holds
      it, until ``now + ttl_ms``, atomically: two processes never both hold one lease at the
      same ``now``. Times come from the callers' clocks, which must agree to well within a TTL.
    - A lease's *epoch* grows by one each time it changes hands (never on a renewal), so a
      holder can tell whether someone else held it since it last did.
    - A write computed under a lease carries a :class:`~safar.model.leases.Fence`; the stores
      that take one (profiles, runs, audiences) commit it only if the lease still has that owner
      and epoch, checked in the commit's own transaction, whether or not it has expired (an
      expired lease nobody took over is still safe to write under). Stores that live in one
      process (the in-memory ones) may skip the check: no other process can hold their lease.
    """

    def acquire(self, name: str, owner: str, now: int, ttl_ms: int) -> int | None:
        """Take or renew ``name`` for ``owner``; its epoch, or None when another holds it."""
        ...

    def release(self, name: str, owner: str) -> None:
        """Give ``name`` up at once if ``owner`` holds it; otherwise change nothing."""
        ...

    def holders(self, now: int) -> dict[str, str]:
        """Lease name -> owner, for every lease held (not expired) at ``now``."""
        ...


class WorkFeed(Protocol):
    """The partitioned feed from the profile processor to the workers that step customers
    (ADR 12): after it has folded a range of the event log into profiles, the profile processor
    publishes, for each partition, the events whose customer falls in it, in log order. It is a
    feed, not a store of record: everything in it can be published again from the event log.

    - ``partitions`` is fixed for the feed's life; items are published to ``0 <= n <
      partitions``.
    - A partition's feed is a sequence of :class:`~safar.model.work.WorkBatch` with strictly
      increasing ``upto``, and the items across its batches have strictly increasing ``seq``,
      each at most its batch's ``upto``.
    - ``publish(upto, items)`` publishes the range ``(published_seq(), upto]``: for each
      partition given items, it appends those with ``seq`` above the partition's last ``upto``
      as a batch ending at ``upto`` (nothing when none are left; an adapter may split a batch
      too big for one message into several, each but the last ending at its last item), then sets
      ``published_seq()`` to ``upto``; an ``upto`` at or below ``published_seq()`` changes
      nothing. It is durable when it returns. It may fail part way (raising
      :class:`~safar.errors.StoreError`, retryable when the backend is unreachable) and is then
      simply called again for the same or a longer range: no partition ever gets an item twice
      or out of order, even from two publishers at once.
    - ``read(n, after_seq, limit)`` returns partition ``n``'s batches with ``upto > after_seq``,
      in order, with their items above ``after_seq`` only; it stops after the batch that brings
      the item count to ``limit`` or more (so a batch is never split), and returns ``[]`` when
      there are none yet. If batches covering part of ``(after_seq, …]`` are gone (trimmed past
      ``after_seq``, or expired), it raises :class:`~safar.errors.StoreError` naming the lost
      range rather than skip it.
    - ``trim(n, upto)`` lets the feed drop partition ``n``'s batches ending at or below
      ``upto``: its owner has committed past them. Reads past ``upto`` are unchanged.
    """

    partitions: int

    def published_seq(self) -> int:
        """The log ``seq`` up to which every partition's items are published (0 before any)."""
        ...

    def publish(self, upto: int, items: Mapping[int, Sequence[WorkItem]]) -> None:
        """Publish the log range ending at ``upto`` (see the class)."""
        ...

    def read(self, partition: int, after_seq: int, limit: int) -> list[WorkBatch]:
        """Partition ``partition``'s batches past ``after_seq`` (see the class)."""
        ...

    def read_many(self, after: Mapping[int, int], limit: int) -> dict[int, list[WorkBatch]]:
        """:meth:`read` (partition, ``after[partition]``, ``limit``) for every partition of
        ``after``, at once where the backend allows."""
        ...

    def trim(self, partition: int, upto: int) -> None:
        """Drop what partition ``partition``'s owner has committed up to ``upto`` (see the
        class)."""
        ...

    def close(self) -> None:
        """Release connections; the feed is not used afterwards."""
        ...


class Channel(Protocol):
    """Delivers rendered messages of one kind (email, SMS, ...).

    ``send`` passes ``message.key`` as the idempotency key to providers that accept one. It
    raises :class:`~safar.errors.DeliveryError` (``retryable`` says whether to try again)
    when the provider refuses or cannot be reached.
    """

    name: str

    def send(self, message: RenderedMessage) -> Receipt:
        """Hand one message to the provider; returns what it said."""
        ...
