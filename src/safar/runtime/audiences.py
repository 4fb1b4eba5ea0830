"""The audience processor: keeps computed traits and segment memberships current, per event.

Per event batch (after the profile processor, never past it):

1. read the events after the processor's cursor;
2. find the aggregates each event feeds (by name, then its ``where``), and what else it may
   change: traits (identify calls), identifiers (calls linking two or more), consent
   (``Unsubscribed``, ``Consent Changed``);
3. one :meth:`~safar.ports.ProfileReader.find_many` for the customers, one
   :meth:`~safar.ports.AudienceStore.folds` for all their identifiers, one
   :meth:`~safar.ports.AudienceStore.memberships`, and consent only if a segment reads it;
4. fold the events in, and re-evaluate only the segments what happened can change
   (:class:`~safar.core.segments.AudiencePlan`);
5. one :meth:`~safar.ports.AudienceStore.commit` with the new cursor, the changed folds and
   memberships, and a ``Segment Entered`` / ``Segment Exited`` event per change; then those
   events are appended to the event log (deduplicated by message id, so a crash in between
   appends them again harmlessly).

Time: windows that expire change memberships with no event. Each membership carries the
instant of its customer's next such change (``wake_at``); due ones are claimed with a lease and
re-evaluated. Nothing ever scans every customer on a clock.

New definitions: an aggregate published when the cursor was at ``C`` (its *generation*) folds
events after ``C`` as they come, while a background job folds the history up to ``C`` page by
page (folding is order-independent, so the two may interleave). Its folds are stored under
``key@C``, so an aggregate archived and published again starts clean. A segment is evaluated
for every customer by a second job once the aggregates it reads are complete; until the job
reaches a customer, the segment is left alone for them. Both jobs commit their progress with
the state they produce (:meth:`~safar.ports.AudienceStore.progress`).

Repairs: a repair requested in the catalog starts the same jobs again for what it covers (a new
generation, folded from the log; segments evaluated for everyone again), read from the store
rather than from what the processor remembers (:mod:`~safar.runtime.audience_jobs`). A scan
also deletes the segment's stored memberships of profiles that no longer exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from safar.core import aggregates as ag
from safar.core.assignment import partition_of
from safar.core.identity import IdentityRules, Memo
from safar.core.segments import (
    AudiencePlan,
    Compile,
    CustomerFolds,
    CustomerTraits,
    Predicate,
    View,
)
from safar.model.audiences import (
    SEGMENT_ENTERED,
    SEGMENT_EXITED,
    Aggregate,
    AudienceVersion,
    ComputedTrait,
    Fold,
    Membership,
    Segment,
)
from safar.model.events import Event
from safar.model.leases import Fence
from safar.model.messages import Consent
from safar.model.profiles import ANONYMOUS_ID, USER_ID, Identifier, Profile
from safar.model.work import WorkBatch, take_ready
from safar.ports import (
    AudienceCatalog,
    AudienceStore,
    AudienceUpdate,
    Clock,
    DeliveryStore,
    EventLog,
    ProfileReader,
)
from safar.runtime.audience_cache import AudienceCache, ProfileCache
from safar.runtime.audience_jobs import (
    DONE,
    GENERATIONS,
    REPAIR_PREFIX,
    RETIRED_PREFIX,
    Generation,
    Jobs,
    complete_storage,
    is_history,
    pending_repairs,
)
from safar.runtime.collector import batch_work
from safar.runtime.internal import track_event
from safar.runtime.profiler import read_applied

log = logging.getLogger(__name__)

#: Events after which a customer's consent may have changed.
CONSENT_EVENTS: Final = frozenset({"Unsubscribed", "Consent Changed"})
DEFAULT_BATCH = 5000
TIMER_BATCH = 2000
LEASE_MS = 60_000
#: Events read per page when folding an aggregate's history.
HISTORY_PAGE = 20_000
#: Customers evaluated per page when a segment is evaluated for everyone.
SCAN_PAGE = 1000
FORWARD_PAGE = 1000
#: Under sustained load, a page of background work at least this often (else only when idle):
#: a new segment becomes ready while events keep coming.
JOBS_EVERY_MS = 1000


def audience_compile(source: str, names: tuple[str, ...]) -> Predicate:
    """Compile a CEL condition (:mod:`safar.cel`) over ``names``."""
    from safar.cel import compile_expression

    test: Predicate = compile_expression(source, names=names).test
    return test


def live_definitions(
    versions: Iterable[AudienceVersion],
) -> tuple[list[Segment], list[ComputedTrait]]:
    """The newest published version of each segment (members first) and computed trait."""
    from safar.definitions import topological_order

    newest: dict[str, AudienceVersion] = {}
    for version in versions:
        if version.status != "published":
            continue
        held = newest.get(version.id)
        if held is None or version.version > held.version:
            newest[version.id] = version
    segments = [v.definition for v in newest.values() if isinstance(v.definition, Segment)]
    traits = [v.definition for v in newest.values() if isinstance(v.definition, ComputedTrait)]
    return topological_order(segments), sorted(traits, key=lambda t: t.id)


def fingerprint(segment: Segment) -> str:
    """Names a segment's condition: a new one is evaluated for everyone again."""
    return hashlib.blake2b(msgspec.json.encode(segment.where), digest_size=8).hexdigest()


@dataclass
class _Batch:
    """The customers one batch works on, and what it will commit."""

    now: int
    update: AudienceUpdate
    profiles: dict[str, Profile] = field(default_factory=dict)
    #: Identifier -> its folds, live and history (told apart by their storage keys).
    folds: dict[Identifier, dict[str, Fold]] = field(default_factory=dict)
    #: Identifiers whose live folds, and whose history folds, the batch changed.
    changed: set[Identifier] = field(default_factory=set)
    historic: set[Identifier] = field(default_factory=set)
    memberships: dict[str, Membership] = field(default_factory=dict)
    consents: dict[str, list[Consent]] = field(default_factory=lambda: defaultdict(list))
    #: Customers arriving from another partition in this batch (ADR 12): evaluated in full,
    #: with the memberships handed over with them.
    arrivals: set[str] = field(default_factory=set)
    #: Feed items the batch handles (a partition's batch).
    items: int = 0
    #: What the cache keeps once the batch is committed (see ``_prepare``).
    remembered: dict[Identifier, dict[str, Fold]] = field(default_factory=dict)


@dataclass
class _Touch:
    """What a batch's events changed for one customer."""

    aggregates: set[str] = field(default_factory=set)
    traits: bool = False
    identifiers: bool = False
    consent: bool = False

    def nothing(self) -> bool:
        return not (self.aggregates or self.traits or self.identifiers or self.consent)

    def add(self, other: _Touch) -> None:
        """Count what ``other`` changed as well."""
        self.aggregates |= other.aggregates
        self.traits |= other.traits
        self.identifiers |= other.identifiers
        self.consent |= other.consent


class AudienceProcessor:
    """Keeps one store's audiences current. One processor per store at a time for events;
    timers are leased.

    With a work feed (ADR 12) the work is shared out: one *coordinator* (``coordinator=True``,
    in the process holding the stepper lease) gives new aggregates their generations, folds
    their history, marks scans done and forwards membership changes; a processor per
    partition (``partition=n``, in the partition's owner) handles the partition's feed
    items, timers and scans.
    """

    def __init__(
        self,
        events: EventLog,
        profiles: ProfileReader,
        delivery: DeliveryStore,
        catalog: AudienceCatalog,
        store: AudienceStore,
        rules: IdentityRules,
        clock: Clock,
        *,
        owner: str = "audiences",
        compile: Compile = audience_compile,
        partition: int | None = None,
        partitions: int = 1,
        coordinator: bool = False,
    ) -> None:
        self._events = events
        self._profiles = profiles
        self._delivery = delivery
        self._catalog = catalog
        self._store = store
        self._identities = Memo(rules)
        self._clock = clock
        self._owner = owner
        #: The lease this processor works under, sent with every commit (see
        #: :class:`~safar.model.leases.Fence`); None when it runs alone.
        self.fence: Fence | None = None
        self._compile = compile
        self._names: dict[str, str] = {}
        self.plan = AudiencePlan([], [], compile)
        self._aggregates: dict[str, Aggregate] = {}
        self._jobs = Jobs()
        self._cache = AudienceCache(store)
        self._profile_cache = ProfileCache(profiles)
        self._stamp: object = None
        #: The work-feed partition this processor keeps (None: every customer), of how many.
        self.partition = partition
        self._partitions = partitions
        self._coordinator = coordinator
        #: What a partition's commits expect of the coordinator's jobs (see :data:`GENERATIONS`).
        self._expect: dict[str, str | None] = {}
        #: The partition's cursor as last committed here (None: read it from the store).
        self.position: int | None = None
        #: Whether the last :meth:`take` stopped at an item waiting for another
        #: partition.
        self.waiting = False
        #: When background work is due even if there are events to handle.
        self._jobs_at = 0
        if not coordinator:
            # A coordinator's refresh commits: it waits for the first batch, under the lease.
            self.refresh()

    def _mine(self, profile_id: str) -> bool:
        """Whether this processor keeps the customer with this profile id."""
        return (
            self.partition is None or partition_of(profile_id, self._partitions) == self.partition
        )

    # -- the catalog ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the catalog; new aggregates and segments start their background jobs, and
        so do repairs requested since (:mod:`~safar.runtime.audience_jobs`)."""
        versions = self._catalog.all()
        requested = self._catalog.repairs()
        stored = self._store.progress() if self.partition is not None else None
        stamp = ([(v.id, v.version, v.status) for v in versions], requested, _jobs_stamp(stored))
        if stamp == self._stamp:
            return
        segments, traits = live_definitions(versions)
        self.plan = AudiencePlan(segments, traits, self._compile)
        self._aggregates = {k: c.aggregate for k, c in self.plan.aggregates.items()}
        self._names = {s.id: s.name for s in segments}
        self._stamp = stamp
        if stored is not None:
            self._take_jobs(segments, stored)
            return
        self._jobs = Jobs()
        stored = self._store.progress()
        # A coordinator's generations start where the profile processor is: no partition can be
        # past it, as nothing after it is published yet (ADR 12).
        cursor = (
            self._profiles.processed_seq() if self._coordinator else self._store.processed_seq()
        )
        for key in self.plan.aggregates:
            held = Generation.decode(stored.get(f"fold:{key}"))
            if held is None:
                # New: history up to the cursor is folded in the background, under a storage
                # key no earlier generation of it used: one archived at this same cursor may
                # have left folds behind (they are dropped only as their customers are touched).
                refold = int(stored.get(f"{RETIRED_PREFIX}{key}") or 0)
                self._jobs.set_fold(key, Generation(cursor, 0, refold))
            else:
                self._jobs.keep_fold(key, held)
        for name in stored:
            kind, _, rest = name.partition(":")
            if kind == "fold" and rest not in self.plan.aggregates:
                self._jobs.dirty[name] = None
                retired = Generation.decode(stored[name])
                if retired is not None:
                    self._jobs.dirty[f"{RETIRED_PREFIX}{rest}"] = str(retired.refold + 1)
            if kind == "scan" and rest.partition("#")[0] not in self.plan.reads:
                self._jobs.dirty[name] = None
        for segment in segments:
            print_ = fingerprint(segment)
            held_print, _, position = (stored.get(f"scan:{segment.id}") or "").partition(":")
            if held_print == print_:
                self._jobs.scans[segment.id] = (print_, position)
            else:
                self._jobs.set_scan(segment.id, print_, "")
        repairs = pending_repairs(requested, stored)
        if repairs:
            self._repair(repairs, cursor)
        if self._coordinator:
            self._coordinate(segments, stored)

    def _coordinate(self, segments: Sequence[Segment], stored: Mapping[str, str]) -> None:
        """Commit what a refresh changed at once, raising :data:`GENERATIONS` (before the
        publisher goes past the new generations), and start every partition's scan of the
        segments whose scan starts again."""
        for segment in segments:
            print_, position = self._jobs.scans[segment.id]
            if position == "" and self._jobs.scan_name(segment.id) in self._jobs.dirty:
                for n in range(self._partitions):
                    self._jobs.dirty[f"scan:{segment.id}#{n}"] = f"{print_}:"
        self._jobs.dirty[GENERATIONS] = str(int(stored.get(GENERATIONS) or 0) + 1)
        self._commit(_Batch(now=self._clock.now_ms(), update=AudienceUpdate()))

    def _take_jobs(self, segments: Sequence[Segment], stored: Mapping[str, str]) -> None:
        """A partition's jobs, as the coordinator and this partition's earlier owners left them:
        the generations the coordinator gave (an aggregate without one is not folded yet), and
        the partition's scans."""
        jobs = Jobs(scan_suffix=f"#{self.partition}")
        for key in self.plan.aggregates:
            held = Generation.decode(stored.get(f"fold:{key}"))
            if held is not None:
                jobs.keep_fold(key, held)
        for segment in segments:
            print_ = fingerprint(segment)
            held_print, _, position = (stored.get(jobs.scan_name(segment.id)) or "").partition(":")
            if held_print == print_:
                jobs.scans[segment.id] = (print_, position)
            else:
                jobs.set_scan(segment.id, print_, "")
        self._jobs = jobs
        self._expect = {GENERATIONS: stored.get(GENERATIONS)}
        # Histories completed, generations changed: what is cached may be stale.
        self._cache.forget()
        self._profile_cache.forget()

    def _repair(self, repairs: Mapping[str, int], cursor: int) -> None:
        """Start the repairs requested (audience id -> requests counted); those of audiences no
        longer live are only marked done. They commit with the next batch, so a processor
        stopped before that starts them again from the store."""
        self._jobs.repair(self.plan, repairs.keys(), cursor)
        for audience_id, count in repairs.items():
            self._jobs.dirty[REPAIR_PREFIX + audience_id] = str(count)
        # What this processor committed may not be what the store holds (the store was
        # damaged behind its back, say): the repair evaluates what the store holds.
        self._cache.forget()
        log.info("repairing audiences %s", ", ".join(sorted(repairs)))

    @property
    def busy(self) -> bool:
        """Whether background jobs (history folds, segment scans) have work left."""
        folding = self.partition is None and any(not h.complete for h in self._jobs.folds.values())
        return folding or any(pos != DONE for _, pos in self._jobs.scans.values())

    def _allowed(self, profile_id: str) -> set[str]:
        """Segments kept current for this customer: those evaluated for everyone, and those
        whose evaluation job has reached them."""
        ready = self._jobs.ready_segments()
        if len(ready) == len(self._jobs.scans):
            return ready
        found = set(ready)
        for segment_id, (_, position) in self._jobs.scans.items():
            if position and position != DONE and profile_id <= position:
                found.add(segment_id)
        return found

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A batch changes cached folds in place before it commits: if it fails anywhere, the
        cache and the pending job progress may be ahead of the store, so both are dropped."""
        if self._stamp is None:
            self.refresh()  # after a failure: job progress as the store has it
        try:
            yield
        except BaseException:
            self.forget()
            raise

    def forget(self) -> None:
        """Drop everything held in memory (caches, job progress, the cursor), to be read again
        from the store: after a failed batch, or one whose commit failed."""
        self._cache.forget()
        self._profile_cache.forget()
        self._stamp = None
        self.position = None

    # -- events -----------------------------------------------------------------------------

    @batch_work
    def run_events(self, max_events: int = DEFAULT_BATCH) -> int:
        """Handle the next batch of events; returns how many were read (0: nothing to do)."""
        with self._guard():
            return self._run_events(max_events)

    def _run_events(self, max_events: int) -> int:
        after = self._store.processed_seq()
        if not (self.plan.reads or self.plan.aggregates):
            # Nothing reads events: the cursor follows the profile processor's without reading
            # them (decoding them was most of the processor's time in that case).
            upto = min(self._profiles.processed_seq(), after + max_events)
            if upto <= after:
                return 0
            self._commit(
                _Batch(
                    now=self._clock.now_ms(),
                    update=AudienceUpdate(after_seq=after, processed_seq=upto),
                )
            )
            return upto - after
        events = read_applied(self._events, self._profiles, after, max_events)
        if not events:
            return 0
        now = self._clock.now_ms()
        update = AudienceUpdate(after_seq=after, processed_seq=events[-1].seq)
        batch = _Batch(now=now, update=update)
        self._handle(batch, events, after, events[-1].seq)
        self._commit(batch)
        return len(events)

    def cursor(self) -> int:
        """The partition's audience cursor (read from the store once, then kept)."""
        assert self.partition is not None, "only a partition has a feed cursor"
        if self.position is None:
            self.position = self._store.processed_seq(self.partition)
        return self.position

    def take(self, batches: Sequence[WorkBatch]) -> _Batch | None:
        """The batch for the partition's next feed items (ADR 12), of ``batches`` (read from the
        feed after :meth:`cursor`), computed but not committed: the caller commits it with other
        partitions' (:meth:`~safar.ports.AudienceStore.commit_all`), then calls
        :meth:`committed`, or :meth:`forget` when the commit failed. None when there is nothing
        to do, or only items waiting for another partition (see :attr:`waiting`).

        A customer the profile processor has since moved to another partition (a merge after
        the item was published) only has the event folded here: the other partition evaluates
        them in full at the item that waits for this one's handover, which re-files their
        memberships there."""
        with self._guard():
            return self._take(batches)

    def _take(self, batches: Sequence[WorkBatch]) -> _Batch | None:
        after = self.cursor()
        items, upto = take_ready(batches, self._store.processed_seq)
        self.waiting = upto <= after and bool(batches)
        if upto <= after:
            return None
        update = AudienceUpdate(after_seq=after, processed_seq=upto)
        batch = _Batch(now=self._clock.now_ms(), update=update, items=len(items))
        for item in items:
            if item.handover is not None:
                for pid in (item.profile_id, *item.moves):
                    update.moves[pid] = item.handover
            if item.waits:
                batch.arrivals.add(item.profile_id)
        if update.moves or batch.arrivals:
            # A customer leaving or arriving: what is cached of them may be another
            # partition's state now.
            self._cache.forget()
            self._profile_cache.forget()
        if self.plan.reads or self.plan.aggregates:
            events = self._events.get([item.seq for item in items if not item.is_handover])
            self._handle(batch, events, after, upto)
        self._prepare(batch)
        return batch

    def committed(self, batch: _Batch) -> None:
        """Note that ``batch`` (from :meth:`take`) is committed."""
        self._remember(batch)
        self.position = batch.update.processed_seq

    def _handle(self, batch: _Batch, events: Sequence[Event], after: int, upto: int) -> None:
        # What happened to each identifier events name first (in order of first mention), and
        # the events that feed aggregates, to fold once the customers' folds are loaded.
        by_head: dict[Identifier, _Touch] = {}
        feeding: list[tuple[Event, Identifier, list[tuple[str, Any]]]] = []
        for event in events:
            extracted = self._identities.extract(event)
            if not extracted.identifiers:
                continue
            head = extracted.identifiers[0]
            touch = by_head.get(head)
            if touch is None:
                touch = by_head[head] = _Touch()
            fed = self._feeds(event, batch.now)
            if fed:
                feeding.append((event, head, fed))
                for key, _ in fed:
                    touch.aggregates.add(key)
            # An event naming two identifiers may merge profiles (see _evaluate).
            if len(extracted.identifiers) > 1 or event.type == "alias":
                touch.traits = touch.identifiers = True
            elif extracted.traits:
                touch.traits = True
            if event.name in CONSENT_EVENTS:
                touch.consent = True
        # Customers who gained or lost identifiers by merges and moves, with or without an
        # event of their own here, are evaluated in full.
        reshaped = self._profiles.reshaped(after, upto)
        if not by_head and not reshaped:
            return
        dirty = [head for head, touch in by_head.items() if touch.traits or touch.identifiers]
        self._profile_cache.drop(dirty, reshaped)
        profiles = self._profile_cache.find_many(by_head.keys())
        revisit = self._revisit(batch, reshaped) if self.plan.reads else []
        touches: dict[str, _Touch | None] = {pid: None for pid in revisit}
        # Customers now kept by another partition: their events here are folded, not evaluated.
        away: dict[str, Profile] = {}
        for head, touch in by_head.items():
            profile = profiles.get(head)
            if profile is None:
                continue
            if not self._mine(profile.id):
                away[profile.id] = profile
                continue
            batch.profiles[profile.id] = profile
            if profile.id in batch.arrivals:
                touches[profile.id] = None
            elif profile.id not in touches:
                touches[profile.id] = touch
                continue
            held = touches[profile.id]
            if held is not None:  # None: evaluated in full anyway
                held.add(touch)
        # Customers already evaluated whose events no definition reads: nothing to do.
        quiet = {pid for pid, touch in touches.items() if touch is not None and touch.nothing()}
        for pid in self._cache.memberships(quiet).keys() if quiet else ():
            del touches[pid]
        self._load(batch, [batch.profiles[pid] for pid in touches])
        self._load_folds(batch, away.values())
        for event, head, fed in feeding:
            # Only into folds loaded above (the customer's): a fold not loaded would replace
            # the stored one.
            found = profiles.get(head)
            if found is not None and (found.id in touches or found.id in away):
                self._fold(batch, head, event, fed)
        for pid, changed in touches.items():
            self._evaluate(batch, batch.profiles[pid], changed)

    def _revisit(self, batch: _Batch, profile_ids: Sequence[str]) -> list[str]:
        """:meth:`_current` for the memberships of these profiles."""
        if not profile_ids:
            return []
        return self._current(batch, self._cache.memberships(profile_ids).values())

    def _current(
        self, batch: _Batch, memberships: Iterable[Membership], *, filed_here: bool = False
    ) -> list[str]:
        """Put the current profiles of these memberships' customers (found by their
        identifiers) into the batch and return their ids. A membership whose identifier now
        belongs to no profile, or to another one (merged into it, or moved there), is deleted:
        the current profile is evaluated in its place.

        A partition (ADR 12) acts only on its own: it evaluates current profiles it keeps,
        and deletes a membership it keeps (``filed_here``: known to be filed under it), except
        one merged into a customer of another partition, which the handover re-files there."""
        held = list(memberships)
        current = self._profiles.find_many({m.identifier for m in held})
        found = []
        for membership in held:
            profile = current.get(membership.identifier)
            keeps = profile is not None and self._mine(profile.id)
            if profile is None or profile.id != membership.profile_id:
                handed_over = (
                    profile is not None
                    and not keeps
                    and membership.profile_id in profile.merged_from
                )
                if (filed_here or self._mine(membership.profile_id)) and not handed_over:
                    batch.update.deleted.append(membership.profile_id)
            if profile is not None and keeps:
                batch.profiles[profile.id] = profile
                found.append(profile.id)
        return found

    def _feeds(self, event: Event, now: int) -> list[tuple[str, Any]]:
        """(aggregate key, value) for each aggregate this event feeds."""
        candidates = self.plan.fed_by(event.name)
        if not candidates:
            return []
        payload: dict[str, Any] | None = None
        fed: list[tuple[str, Any]] = []
        generations = self._jobs.generations()
        for compiled in candidates:
            # Up to its generation an aggregate's events are the history job's (and one without
            # a generation yet is not folded: the coordinator has not started it).
            generation = generations.get(compiled.key)
            if generation is None or event.seq <= generation:
                continue
            aggregate = compiled.aggregate
            if not ag.alive(aggregate, event.timestamp, now):
                continue
            if payload is None:
                payload = event.payload(times=event.name in self.plan.timed_events)
            if compiled.where is not None and not compiled.where({"event": payload}):
                continue
            usable, value = ag.extract(aggregate, payload)
            if usable:
                fed.append((compiled.key, value))
        return fed

    def _fold(
        self, batch: _Batch, head: Identifier, event: Event, fed: list[tuple[str, Any]]
    ) -> None:
        folds = batch.folds.setdefault(head, {})
        for key, value in fed:
            storage = self._jobs.storage_key(key)
            # Not setdefault, which would build a Fold for nothing each time (110 ns against 30).
            fold = folds.get(storage)
            if fold is None:
                fold = folds[storage] = Fold()
            aggregate = self.plan.aggregates[key].aggregate
            if ag.add(fold, aggregate, event.timestamp, event.seq, value, batch.now):
                batch.changed.add(head)

    def _load(self, batch: _Batch, profiles: Iterable[Profile]) -> None:
        """The folds, memberships and (when read) consents of customers to evaluate. A
        partition leaves out the memberships of profiles merged in from another partition until
        they arrive with the customer (ADR 12)."""
        pids: set[str] = set()
        listed = list(profiles)
        for profile in listed:
            pids.add(profile.id)
            if self.partition is None or profile.id in batch.arrivals:
                pids.update(profile.merged_from)
            else:
                pids.update(old for old in profile.merged_from if self._mine(old))
        self._load_folds(batch, listed)
        batch.memberships.update(self._cache.memberships(pids))
        if any(reads.consent for reads in self.plan.reads.values()):
            for choice in self._delivery.consents(pids):
                batch.consents[choice.profile_id].append(choice)

    def _load_folds(self, batch: _Batch, profiles: Iterable[Profile]) -> None:
        identifiers: set[Identifier] = set()
        add = identifiers.add
        for profile in profiles:
            for kind, values in profile.identifiers.items():
                for value in values:
                    add((kind, value))
        if identifiers:
            batch.folds.update(self._cache.folds(identifiers))

    # -- evaluating -------------------------------------------------------------------------

    def _evaluate(
        self, batch: _Batch, profile: Profile, touch: _Touch | None, *, store: bool = False
    ) -> None:
        """Re-evaluate a customer (all their allowed segments when ``touch`` is None) and record
        the membership and its changes; ``store`` stores it even when unchanged (releasing a
        timer's lease)."""
        now = batch.now
        memberships = batch.memberships
        held = memberships.get(profile.id)
        merged = any(old in memberships for old in profile.merged_from)
        allowed = self._allowed(profile.id)
        if touch is None or held is None or touch.identifiers or merged:
            # New to us, or maybe merged: profiles joining pool their folds, so anything
            # may change.
            touched = allowed
        else:
            touched = allowed & self.plan.touched(
                touch.aggregates, touch.traits, touch.identifiers, touch.consent
            )
            if not touched and not store:
                # Nothing a segment reads changed: neither the memberships nor the time of
                # their next change can have.
                return
        before: dict[str, int] = dict(held.segments) if held is not None else {}
        for old in profile.merged_from:
            gone = memberships.pop(old, None)
            if gone is not None:
                for sid, since in gone.segments.items():
                    before[sid] = min(since, before.get(sid, since))
                batch.update.deleted.append(old)
        combined = self._combined(batch, profile)
        traits = CustomerTraits(profile.traits, self.plan.traits, combined, now)
        consents = [
            c for pid in (profile.id, *profile.merged_from) for c in batch.consents.get(pid, ())
        ]
        view = View(profile=profile, traits=traits, folds=combined, consents=consents, now=now)
        after = self.plan.evaluate(view, set(before), touched) if touched else set(before)
        after &= self.plan.ids
        wake = self.plan.wake_at(combined, now, view)
        identifier = _identifier(profile)
        if (
            held is not None
            and not (store or merged)
            and held.wake_at == wake
            and held.identifier == identifier
            and held.segments.keys() == after
        ):
            # Unchanged (most evaluations): the held membership stands, and nothing is stored.
            return
        membership = Membership(
            profile_id=profile.id,
            identifier=identifier,
            segments={sid: before.get(sid, now) for sid in after},
            wake_at=wake,
            evaluated_at=now,
        )
        batch.update.memberships.append(membership)
        batch.memberships[profile.id] = membership
        for sid in sorted(after - before.keys()):
            batch.update.emits.append(self._change(SEGMENT_ENTERED, sid, profile, identifier, now))
        for sid in sorted(before.keys() - after):
            if sid in self._names:
                change = self._change(SEGMENT_EXITED, sid, profile, identifier, now)
                batch.update.emits.append(change)

    def _combined(self, batch: _Batch, profile: Profile) -> CustomerFolds:
        """The customer's folds of complete aggregates (one still folding its history would
        give a partial answer)."""
        return customer_folds(profile, batch.folds, self._jobs.complete_storage(), self._aggregates)

    def _change(
        self, name: str, segment_id: str, profile: Profile, identifier: Identifier, now: int
    ) -> Event:
        direction = "in" if name == SEGMENT_ENTERED else "out"
        digest = hashlib.blake2b(
            f"{segment_id}|{profile.id}|{direction}|{now}".encode(), digest_size=16
        ).hexdigest()
        properties: dict[str, Any] = {
            "segment_id": segment_id,
            "segment_name": self._names.get(segment_id, segment_id),
            "profile_id": profile.id,
        }
        return track_event(
            key=f"seg_{digest}", identifier=identifier, name=name, properties=properties, at=now
        )

    def _commit(self, batch: _Batch) -> None:
        self._prepare(batch)
        self._store.commit(batch.update)
        self._remember(batch)

    def _prepare(self, batch: _Batch) -> None:
        """Complete ``batch.update`` for its commit, and what the cache keeps after it."""
        update = batch.update
        # Storage key -> (a history part?, its aggregate), for the current generations.
        current: dict[str, tuple[bool, Aggregate]] = {}
        for key, compiled in self.plan.aggregates.items():
            if key in self._jobs.folds:
                current[self._jobs.storage_key(key)] = (False, compiled.aggregate)
                current[self._jobs.history_key(key)] = (True, compiled.aggregate)
        remembered: dict[Identifier, dict[str, Fold]] = {}
        for identifier in batch.changed | batch.historic:
            # The live and the history part, each rewritten only if the batch changed it.
            rewrite = (identifier in batch.changed, identifier in batch.historic)
            parts: tuple[dict[str, Fold], dict[str, Fold]] = ({}, {})
            held = batch.folds.get(identifier, {})
            for storage, fold in held.items():
                found = current.get(storage)
                historic = is_history(storage) if found is None else found[0]
                if rewrite[historic]:
                    if found is None:
                        continue  # an archived aggregate's, or an older generation's
                    ag.expire(fold, found[1], batch.now)
                    if ag.empty(fold):
                        continue
                parts[historic][storage] = fold
            if rewrite[False]:
                update.folds[identifier] = parts[False]
            if rewrite[True]:
                update.history[identifier] = parts[True]
            kept = len(parts[False]) + len(parts[True]) == len(held)
            remembered[identifier] = held if kept else {**parts[False], **parts[True]}
        batch.remembered = remembered
        update.progress = self._jobs.take()
        update.fence = self.fence
        if self.partition is not None:
            update.partition = self.partition
            update.expect = dict(self._expect)

    def _remember(self, batch: _Batch) -> None:
        """Keep in the cache what ``batch`` committed (the memberships it left alone are there
        already: they were read through the cache)."""
        update = batch.update
        self._cache.committed(batch.remembered, update.memberships, update.deleted)

    # -- timers -----------------------------------------------------------------------------

    @batch_work
    def run_timers(self, limit: int = TIMER_BATCH) -> int:
        """Re-evaluate customers whose windows changed something by now; returns how many."""
        with self._guard():
            return self._run_timers(limit)

    def _run_timers(self, limit: int) -> int:
        now = self._clock.now_ms()
        claimed = self._store.claim_due(now, limit, self._owner, LEASE_MS, self.partition)
        if not claimed:
            return 0
        batch = _Batch(now=now, update=AudienceUpdate())
        self._current(batch, claimed, filed_here=True)
        self._load(batch, batch.profiles.values())
        for profile in batch.profiles.values():
            self._evaluate(batch, profile, None, store=True)
        self._commit(batch)
        return len(claimed)

    def next_wake(self) -> int | None:
        """When the next timer is due, or None."""
        return self._store.next_wake()

    # -- background jobs ----------------------------------------------------------------------

    def run_jobs(self) -> int:
        """One page of background work: an aggregate's history, else a segment's scan.
        Returns how much was done (0: nothing left)."""
        with self._guard():
            return self._run_jobs()

    def run_background(self, idle: bool) -> int:
        """:meth:`run_jobs` when ``idle`` (nothing else was done), and otherwise at least every
        :data:`JOBS_EVERY_MS`, so that background work is not starved by a steady load."""
        now = self._clock.now_ms()
        if not idle and now < self._jobs_at:
            return 0
        self._jobs_at = now + JOBS_EVERY_MS
        return self.run_jobs()

    def _run_jobs(self) -> int:
        if self.partition is None and any(not h.complete for h in self._jobs.folds.values()):
            return self._fold_histories()
        if self._coordinator:
            return self._mark_scans()
        # Every segment whose scan can go on and stands where the first one does, in one pass
        # over the profiles (publishing many at once reads the profiles once).
        group: list[str] = []
        position = ""
        for segment in self.plan.segments:
            _, at = self._jobs.scans[segment.id]
            if at == DONE or not self._ready_to_scan(segment.id):
                continue
            if not group:
                position = at
            if at == position:
                group.append(segment.id)
        return self._scan(group, position) if group else 0

    def _ready_to_scan(self, segment_id: str) -> bool:
        reads = self.plan.reads[segment_id]
        if not all(self._jobs.complete(k) for k in reads.keys(self.plan.traits)):
            return False
        return all(self._jobs.scans.get(m, ("", DONE))[1] == DONE for m in reads.members)

    def _mark_scans(self) -> int:
        """Mark done the scans every partition has finished; returns how many."""
        waiting = [s.id for s in self.plan.segments if self._jobs.scans[s.id][1] != DONE]
        if not waiting:
            return 0
        stored = self._store.progress()
        marked = 0
        for segment_id in waiting:
            print_, _ = self._jobs.scans[segment_id]
            done = f"{print_}:{DONE}"
            if all(stored.get(f"scan:{segment_id}#{n}") == done for n in range(self._partitions)):
                self._jobs.set_scan(segment_id, print_, DONE)
                marked += 1
        if marked:
            self._commit(_Batch(now=self._clock.now_ms(), update=AudienceUpdate()))
        return marked

    def _fold_histories(self) -> int:
        """One page of the log folded into every aggregate whose history is still being folded
        (one pass for all of them: publishing or repairing many at once reads the log once)."""
        pending = {k: g for k, g in sorted(self._jobs.folds.items()) if not g.complete}
        start = min(held.upto for held in pending.values())
        asked = min(HISTORY_PAGE, max(held.generation for held in pending.values()) - start)
        read = self._events.read(start, asked)
        by_name: dict[str, list[tuple[str, Generation]]] = defaultdict(list)
        for key, held in pending.items():
            by_name[self.plan.aggregates[key].aggregate.event].append((key, held))
        now = self._clock.now_ms()
        batch = _Batch(now=now, update=AudienceUpdate())
        matched: list[tuple[Event, Identifier, str, Any]] = []
        for event in read:
            # Each aggregate only between where its job got to and its generation.
            wanting = [
                (key, held)
                for key, held in by_name.get(event.name or "", ())
                if held.upto < event.seq <= held.generation
            ]
            head: Identifier | None = None
            payload: dict[str, Any] | None = None
            for key, _ in wanting:
                compiled = self.plan.aggregates[key]
                aggregate = compiled.aggregate
                if not ag.alive(aggregate, event.timestamp, now):
                    continue
                if head is None:
                    identifiers = self._identities.extract(event).identifiers
                    if not identifiers:
                        break
                    head, payload = identifiers[0], event.payload()
                assert payload is not None
                if compiled.where is not None and not compiled.where({"event": payload}):
                    continue
                usable, value = ag.extract(aggregate, payload)
                if usable:
                    matched.append((event, head, key, value))
        if matched:
            batch.folds.update(self._cache.folds({head for _, head, _, _ in matched}))
            for event, head, key, value in matched:
                storage = self._jobs.history_key(key)
                folds = batch.folds.setdefault(head, {})
                fold = folds.get(storage)
                if fold is None:
                    fold = folds[storage] = Fold()
                aggregate = self.plan.aggregates[key].aggregate
                if ag.add(fold, aggregate, event.timestamp, event.seq, value, now):
                    batch.historic.add(head)
        # Past a generation, or at the end of the log (nothing read), that history is complete.
        last = read[-1].seq if read else start
        for key, held in pending.items():
            done = not read or last >= held.generation
            upto = held.generation if done else max(held.upto, last)
            self._jobs.set_fold(key, held._replace(upto=upto))
        self._commit(batch)
        return max(1, len(read))

    def _scan(self, segment_ids: Sequence[str], position: str) -> int:
        """The next page of these segments' scans, which all stand at ``position``: of the
        partition's profiles only, for a partition (the store passes over the others)."""
        shard = None if self.partition is None else (self.partition, self._partitions)
        profiles = self._profiles.scan(position, SCAN_PAGE, shard)
        now = self._clock.now_ms()
        batch = _Batch(now=now, update=AudienceUpdate())
        # The jobs' position moves first, so the evaluation below includes these segments.
        last = profiles[-1].id if profiles else DONE
        for segment_id in segment_ids:
            self._jobs.set_scan(segment_id, self._jobs.scans[segment_id][0], last)
        end = len(profiles) < SCAN_PAGE
        for profile in profiles:
            batch.profiles[profile.id] = profile
        scanned = {profile.id for profile in profiles}
        # A stray member of several of the segments is one stray.
        strays = {
            stray.profile_id: stray
            for segment_id in segment_ids
            for stray in self._strays(segment_id, position, None if end else last, scanned)
        }
        if strays:
            self._current(batch, strays.values())
        if batch.profiles:
            self._load(batch, batch.profiles.values())
            for profile in list(batch.profiles.values()):
                self._evaluate(batch, profile, None)
        if end:
            for segment_id in segment_ids:
                self._jobs.set_scan(segment_id, self._jobs.scans[segment_id][0], DONE)
        self._commit(batch)
        return max(1, len(profiles))

    def _strays(
        self, segment_id: str, after: str, upto: str | None, scanned: Collection[str]
    ) -> list[Membership]:
        """The segment's stored members with profile ids in ``(after, upto]`` (to the end when
        ``upto`` is None) that are not among the ``scanned`` profiles: no such profile exists
        any more (merged away, or never did, the store being damaged). :meth:`_current` deletes
        them and evaluates their customers' current profiles."""
        found: list[Membership] = []
        while page := self._store.members(segment_id, after, SCAN_PAGE):
            for membership in page:
                if upto is not None and membership.profile_id > upto:
                    return found
                if membership.profile_id not in scanned and self._mine(membership.profile_id):
                    found.append(membership)
            if len(page) < SCAN_PAGE:
                break
            after = page[-1].profile_id
        return found

    # -- forwarding ---------------------------------------------------------------------------

    def forward(self, limit: int = FORWARD_PAGE) -> int:
        """Append pending membership changes to the event log; returns how many."""
        pending = self._store.pending_emits(limit)
        if not pending:
            return 0
        self._events.append(pending)
        self._store.forwarded([e.message_id for e in pending])
        return len(pending)

    @batch_work
    def step(self) -> int:
        """One turn: events, due timers, a page of background work, forwarding. A coordinator's:
        a page of background work and forwarding (partitions do the rest)."""
        if self._coordinator:
            return self.run_jobs() + self.forward()
        done = self.run_events()
        done += self.run_timers()
        done += self.run_background(idle=not done)
        done += self.forward()
        return done


def customer_folds(
    profile: Profile,
    folds: Mapping[Identifier, Mapping[str, Fold]],
    storage: Mapping[str, str],
    aggregates: Mapping[str, Aggregate],
) -> CustomerFolds:
    """A customer's folds by aggregate key, from the folds of their identifiers. ``storage``
    maps the keys folds are stored under to aggregate keys; folds under other keys (archived
    aggregates, incomplete ones, older generations) are left out."""
    parts: dict[str, list[Fold]] = defaultdict(list)
    for kind, values in profile.identifiers.items():
        for value in values:
            for stored, fold in folds.get((kind, value), {}).items():
                key = storage.get(stored)
                if key is not None:
                    parts[key].append(fold)
    return CustomerFolds(parts, aggregates)


def complete_folds(progress: Mapping[str, str], keys: Iterable[str]) -> dict[str, str]:
    """Storage key -> aggregate key, live and history, for the aggregates among ``keys`` whose
    history is complete (as :meth:`AudienceStore.progress` says)."""
    held = {key: Generation.decode(progress.get(f"fold:{key}")) for key in keys}
    return complete_storage({key: g for key, g in held.items() if g is not None})


def _jobs_stamp(progress: Mapping[str, str] | None) -> object:
    """What a partition's jobs depend on in the coordinator's progress: the generations count
    and which histories are complete (None when not read)."""
    if progress is None:
        return None
    complete = sorted(
        name
        for name, value in progress.items()
        if name.startswith("fold:") and (held := Generation.decode(value)) and held.complete
    )
    return progress.get(GENERATIONS), complete


def _identifier(profile: Profile) -> Identifier:
    """The identifier membership events name the customer by: their user id, else an
    anonymous id, else any."""
    for kind in (USER_ID, ANONYMOUS_ID):
        values = profile.identifiers.get(kind)
        if values:
            return kind, values[0]
    for kind, values in sorted(profile.identifiers.items()):
        if values:
            return kind, values[0]
    raise ValueError(f"profile {profile.id} has no identifiers")
