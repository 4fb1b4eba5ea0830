"""The journey runtime: feeds events and due timers to the pure core, in batches, and commits
each batch's new state together with its commands (the outbox) in one transaction.

Per event batch:

1. read the events after the runtime's cursor, but never past what the profile processor has
   applied (journeys see current profiles);
2. keep the events some journey may care about (entry, goal and wait-for-event names, webhook
   replies); most events are skipped without any query;
3. one :meth:`~safar.ports.ProfileReader.find_many` for their customers' profiles, one
   :meth:`~safar.ports.RunStore.load` for those profiles' active instances and entry records;
4. step every instance and entry in memory, in event order;
5. one :meth:`~safar.ports.RunStore.commit` with the new cursor.

Timers go the same way: claim the due ones with a lease, step them, commit. Because instance ids
and command keys are derived from what entered the customer, a batch redone after a crash
produces the same rows and the same keys: nothing is entered or sent twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from safar.core import journey as core
from safar.core.identity import IdentityRules, extract
from safar.core.plan import Plan
from safar.definitions.cron import next_after
from safar.model.events import Event
from safar.model.leases import Fence
from safar.model.profiles import ANONYMOUS_ID, USER_ID, Identifier, Profile
from safar.model.runs import (
    ApiEntry,
    Command,
    EntryRecord,
    EventCommand,
    EventInput,
    Input,
    Instance,
    OutboxEntry,
    SendCommand,
    TimerFired,
    WebhookReply,
)
from safar.model.work import FeedRead, WorkBatch, WorkItem, past, take_ready
from safar.ports import (
    Clock,
    EventLog,
    JourneyStore,
    JourneyUpdate,
    ProfileReader,
    RunStore,
    WorkFeed,
)
from safar.runtime.collector import batch_work
from safar.runtime.internal import track_event
from safar.runtime.plans import PlanBook
from safar.runtime.profiler import read_applied

log = logging.getLogger(__name__)

#: The event a dispatcher appends when a webhook step that waits for its response completes.
WEBHOOK_REPLY_EVENT = "Webhook Replied"
#: The event ``POST /v1/journeys/{id}/entries`` appends: entries by API go through the log like
#: everything else, so they are ordered with the customer's events and deduplicated by request.
ENTRY_REQUEST_EVENT = "Journey Entry Requested"
_SPECIAL = frozenset({WEBHOOK_REPLY_EVENT, ENTRY_REQUEST_EVENT})
DEFAULT_BATCH = 5000
#: Profiles read per page when a schedule enters customers.
SCAN_PAGE = 1000
TIMER_BATCH = 2000
TIMER_LEASE_MS = 60_000


@dataclass
class _Batch:
    """The state one batch works on, and what it will commit."""

    instances: dict[str, Instance] = field(default_factory=dict)
    by_profile: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    records: dict[tuple[str, str], EntryRecord] = field(default_factory=dict)
    update: JourneyUpdate = field(default_factory=JourneyUpdate)
    changed: set[str] = field(default_factory=set)
    changed_records: set[tuple[str, str]] = field(default_factory=set)
    #: The work-feed partition the batch steps (only instances filed under it), or None.
    partition: int | None = None
    #: Traits the batch's update steps wrote, by the profile id of the instance: the profile
    #: processor takes them in only after the batch is committed, so the batch's later steps
    #: read its profiles through them (two increments in one batch count twice).
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The stamp of the last of those writes, per profile id (see :meth:`in_order`).
    stamps: dict[str, int] = field(default_factory=dict)

    def as_written(self, profile: Profile) -> Profile:
        """``profile`` with the traits this batch wrote for it."""
        for pid in (profile.id, *profile.merged_from):
            traits = self.written.get(pid)
            if traits is not None:
                profile = core.with_traits(profile, traits)
        return profile

    def in_order(self, profile_id: str, command: Command) -> Command:
        """``command``, noted in :attr:`written` when it writes traits, and stamped after the
        batch's earlier writes for the same profile: traits are last write wins by stamp, and
        equal stamps (one ``now`` for the whole batch) would be ordered by message id."""
        if not isinstance(command, EventCommand) or not command.traits:
            return command
        last = self.stamps.get(profile_id)
        if last is not None and command.timestamp <= last:
            command = msgspec.structs.replace(command, timestamp=last + 1)
        self.stamps[profile_id] = command.timestamp
        self.written.setdefault(profile_id, {}).update(command.traits)
        return command


class JourneyRuntime:
    """Steps journeys over the event log and due timers. One runtime per store at a time for
    events; timers are leased, so several may share them."""

    def __init__(
        self,
        events: EventLog,
        profiles: ProfileReader,
        journeys: JourneyStore,
        runs: RunStore,
        rules: IdentityRules,
        clock: Clock,
        *,
        plans: PlanBook | None = None,
        owner: str = "runtime",
    ) -> None:
        self._events = events
        self._profiles = profiles
        self._journeys = journeys
        self._runs = runs
        self._rules = rules
        self._clock = clock
        self._owner = owner
        #: The lease this runtime works under, sent with every commit (see
        #: :class:`~safar.model.leases.Fence`); None when it runs alone.
        self.fence: Fence | None = None
        self.plans = plans or PlanBook()
        self.plans.refresh(journeys)
        #: Commands committed to the outbox so far (the worker wakes the dispatcher on change).
        self.queued = 0
        #: Partition -> (fence epoch, cursor) as this runtime last committed it: while it
        #: holds the partition at that epoch nobody else moves the cursor, so an idle round
        #: asks only the feed.
        self._cursors: dict[int, tuple[int | None, int]] = {}
        #: Whether the last :meth:`run_partitions` left items waiting for another partition.
        self.waiting = False
        #: With partitioned stepping (ADR 12), schedules append entry requests to the log
        #: instead of entering customers (see :meth:`_request_scheduled`).
        self.schedule_by_events = False
        #: Journey id -> the next instant its schedule is due (in memory; the store has the
        #: last tick handled).
        self._next_tick: dict[str, int] = {}

    def refresh(self) -> None:
        """Re-read the journey catalog (after a publish, pause or stop)."""
        self.plans.refresh(self._journeys)
        self._next_tick.clear()

    # -- events -----------------------------------------------------------------------------

    @batch_work
    def run_events(self, max_events: int = DEFAULT_BATCH) -> int:
        """Handle the next batch of events; returns how many were read (0: nothing to do)."""
        after = self._runs.processed_seq()
        events = read_applied(self._events, self._profiles, after, max_events)
        if not events:
            return 0
        batch = _Batch(update=JourneyUpdate(after_seq=after, processed_seq=events[-1].seq))
        wanted = [e for e in events if self._wanted(e)]
        if wanted:
            self._handle(batch, wanted)
        self._commit(batch)
        return len(events)

    def run_partitions(
        self,
        feed: WorkFeed,
        held: Mapping[int, Fence | None],
        max_items: int = DEFAULT_BATCH,
        limits: Mapping[int, int] | None = None,
        read: FeedRead | None = None,
    ) -> int:
        """Handle the next feed batch of every partition in ``held`` (partition -> the fence of
        its lease, None when running alone; ADR 12) in one turn: one read of the feed, one of
        the log, of profiles and of instances for all of them, and one commit of every
        partition's cursor and changes. Returns how many items were handled (0: nothing to do,
        or only items waiting for another partition).

        Only instances filed under a partition are stepped for its items, and an event is
        stepped for the customer it was published for (``profile_id`` of its item, with the
        customer's current traits), so two partitions holding parts of one customer around a
        merge never touch the same rows; the handover that ends it moves them.

        ``limits``: partition -> the position its items are stepped up to at most (the
        partition's audience cursor, so journeys see the segments of the events they step).
        ``read``: what the round's audiences read of the feed; a partition whose cursor is at
        or past the position that read was made after takes its batches from it (within the
        limits, they hold all it could step), the others are read from the feed.
        """
        ready = self._read_ready(feed, held, max_items, limits or {}, read or {})
        if not ready:
            return 0
        self._step_ready(ready)
        for partition in ready:
            self._cursors.pop(partition, None)
        self._commit_all([batch for _, (_, batch) in sorted(ready.items())])
        for partition, (_, batch) in ready.items():
            assert batch.update.processed_seq is not None
            self._cursors[partition] = (_epoch(held[partition]), batch.update.processed_seq)
        return sum(max(len(items), 1) for items, _ in ready.values())

    def _read_ready(
        self,
        feed: WorkFeed,
        held: Mapping[int, Fence | None],
        max_items: int,
        limits: Mapping[int, int],
        read: FeedRead,
    ) -> dict[int, tuple[list[WorkItem], _Batch]]:
        """Partition -> its items ready to step (up to the first whose waits are not met) and
        the batch that will commit them, for the held partitions that have any; notes in
        :attr:`waiting` whether some had items that must wait."""
        self.waiting = False
        if not held:
            return {}
        after = {p: self._cursor(p, fence) for p, fence in held.items()}
        found: dict[int, list[WorkBatch]] = {}
        unread: dict[int, int] = {}
        for partition, cursor in after.items():
            known = read.get(partition)
            if known is not None and known[0] <= cursor:
                found[partition] = past(known[1], cursor)
            else:
                unread[partition] = cursor
        if unread:
            found.update(feed.read_many(unread, max_items))
        ready: dict[int, tuple[list[WorkItem], _Batch]] = {}
        for partition, batches in found.items():
            items, upto = take_ready(batches, self._runs.processed_seq)
            limit = limits.get(partition)
            if limit is not None and upto > limit:
                items, upto = [i for i in items if i.seq <= limit], limit
            if upto <= after[partition]:
                self.waiting = self.waiting or bool(batches)
                continue
            update = JourneyUpdate(
                after_seq=after[partition],
                processed_seq=upto,
                partition=partition,
                fence=held[partition],
            )
            ready[partition] = (items, _Batch(update=update, partition=partition))
        return ready

    def _step_ready(self, ready: Mapping[int, tuple[list[WorkItem], _Batch]]) -> None:
        """Step the ready items of every partition into its batch, with one read of the log,
        of profiles and of instances for all of them."""
        wanted_seqs = sorted(
            item.seq
            for items, _ in ready.values()
            for item in items
            if not item.is_handover and self._may_want(item.name)
        )
        events = [e for e in self._events.get(wanted_seqs) if self._wanted(e)]
        heads, profiles = self._find(events)
        partition_of = {i.seq: p for p, (items, _) in ready.items() for i in items}
        routed = {i.seq: i.profile_id for items, _ in ready.values() for i in items}
        mine: dict[int, list[int]] = defaultdict(list)  # partition -> indexes into events
        customers: dict[int, list[Profile]] = defaultdict(list)
        for index, (event, head) in enumerate(zip(events, heads, strict=True)):
            partition = partition_of[event.seq]
            mine[partition].append(index)
            if head is not None and head in profiles:
                customers[partition].append(profiles[head])
        found = self._runs.load_filed({p: _profile_ids(customers[p]) for p in mine})
        for partition, (items, batch) in ready.items():
            if partition in found:
                self._take(batch, *found[partition])
            indexes = mine.get(partition, [])
            self._step_events(
                batch,
                [events[i] for i in indexes],
                [heads[i] for i in indexes],
                profiles,
                routed,
            )
            for item in items:
                if item.handover is not None:
                    for pid in (item.profile_id, *item.moves):
                        batch.update.moves[pid] = item.handover

    def committed(self, partition: int, fence: Fence | None) -> int | None:
        """The partition's cursor as this runtime last committed it holding ``fence``, or None
        (not committed by it at that epoch)."""
        known = self._cursors.get(partition)
        return known[1] if known is not None and known[0] == _epoch(fence) else None

    def _cursor(self, partition: int, fence: Fence | None) -> int:
        """The partition's cursor: as this runtime last committed it while holding the
        partition at the same epoch (nobody else can have moved it), else the store's."""
        known = self.committed(partition, fence)
        return known if known is not None else self._runs.processed_seq(partition)

    def _wanted(self, event: Event) -> bool:
        return event.name is not None and self._may_want(event.name)

    def _may_want(self, name: str | None) -> bool:
        """Whether an event named ``name`` (None: not known) may be :meth:`_wanted`."""
        if name is None:
            return True
        return name in self.plans.entering or name in self.plans.listening or name in _SPECIAL

    def _handle(self, batch: _Batch, events: Sequence[Event]) -> None:
        """Step ``events`` (read from the log, without a feed)."""
        heads, profiles = self._find(events)
        found = profiles.values()
        self._take(batch, *self._runs.load(_profile_ids(found), batch.partition))
        self._step_events(batch, events, heads, profiles)

    def _find(
        self, events: Sequence[Event]
    ) -> tuple[list[Identifier | None], dict[Identifier, Profile]]:
        """Each event's first identifier, and the customers they name, in one query."""
        heads: list[Identifier | None] = []
        for event in events:
            identifiers = extract(event, self._rules).identifiers
            heads.append(identifiers[0] if identifiers else None)
        return heads, self._profiles.find_many({h for h in heads if h is not None})

    def _take(self, batch: _Batch, instances: list[Instance], records: list[EntryRecord]) -> None:
        """Put loaded instances and entry records into the batch."""
        for instance in instances:
            batch.instances[instance.id] = instance
            batch.by_profile[instance.profile_id].append(instance.id)
        for record in records:
            batch.records[(record.journey_id, record.profile_id)] = record

    def _step_events(
        self,
        batch: _Batch,
        events: Sequence[Event],
        heads: Sequence[Identifier | None],
        profiles: Mapping[Identifier, Profile],
        routed: Mapping[int, str] | None = None,
    ) -> None:
        """Step ``events`` in order; with ``routed`` (seq -> the profile id its feed item
        names), each for that profile id (see :meth:`run_partitions`)."""
        now = self._clock.now_ms()
        for event, head in zip(events, heads, strict=True):
            profile = profiles.get(head) if head is not None else None
            if profile is None or head is None:
                continue
            if routed is not None:
                profile = as_published(profile, routed.get(event.seq, profile.id))
            item = EventInput(
                seq=event.seq,
                message_id=event.message_id,
                type=event.type,
                name=event.name,
                timestamp=event.timestamp,
                payload=event.payload(),
            )
            if event.name == WEBHOOK_REPLY_EVENT:
                self._reply(batch, profile, item, now)
                continue
            if event.name == ENTRY_REQUEST_EVENT:
                self._requested(batch, profile, head, item, now)
                continue
            for iid in list(self._owned(batch, profile)):
                self._step(batch, batch.instances[iid], profile, item, now)
            for plan in self.plans.entering.get(event.name or "", ()):
                self._enter(batch, plan, profile, head, item, now)

    def _owned(self, batch: _Batch, profile: Profile) -> list[str]:
        """Active instances of this customer, including those entered under profile ids that
        were since merged into it."""
        found: list[str] = []
        for pid in (profile.id, *profile.merged_from):
            found.extend(batch.by_profile.get(pid, ()))
        return [i for i in sorted(set(found)) if batch.instances[i].status == "active"]

    def _reply(self, batch: _Batch, profile: Profile, item: EventInput, now: int) -> None:
        props = item.payload.get("properties") or {}
        iid = props.get("instance_id")
        instance = batch.instances.get(iid) if isinstance(iid, str) else None
        if instance is None:
            return
        reply = WebhookReply(
            step_id=str(props.get("step_id", "")),
            ok=bool(props.get("ok")),
            response=props.get("response"),
            error=props.get("error"),
        )
        self._step(batch, instance, profile, reply, now)

    def _requested(
        self, batch: _Batch, profile: Profile, head: Identifier, item: EventInput, now: int
    ) -> None:
        props = item.payload.get("properties") or {}
        journey_id = props.get("journey_id")
        plan = self.plans.entry_plan(journey_id) if isinstance(journey_id, str) else None
        scheduled = _scheduled_entry(plan, props) if plan is not None else None
        if plan is None or not (plan.journey.entry.api or scheduled):
            log.info("entry request %s for %r ignored: not enterable", item.message_id, journey_id)
            return
        context = props.get("context")
        request = ApiEntry(
            request_id=scheduled or item.message_id,
            context=context if isinstance(context, dict) else {},
            at=item.timestamp,
        )
        self._enter(batch, plan, profile, head, request, now)

    def _enter(
        self,
        batch: _Batch,
        plan: Plan,
        profile: Profile,
        head: Identifier,
        item: EventInput | ApiEntry,
        now: int,
    ) -> core.Transition | str:
        """Enter the customer if the journey's rules allow; returns why not otherwise."""
        profile = batch.as_written(profile)
        record_key = (plan.id, profile.id)
        record = batch.records.get(record_key)
        active = sum(
            1 for iid in self._owned(batch, profile) if batch.instances[iid].journey_id == plan.id
        )
        why = core.refusal(plan, record, active, now)
        if why is not None:
            return why
        event = item if isinstance(item, EventInput) else None
        if event is not None and not core.entry_holds(plan, profile, event, now):
            return "entry condition does not hold"
        transition, record = core.enter(plan, profile, _identity(profile, head), item, record, now)
        if transition.instance.id in batch.instances:
            return "already entered by this request"
        batch.records[record_key] = record
        batch.changed_records.add(record_key)
        batch.by_profile[profile.id].append(transition.instance.id)
        self._keep(batch, transition, now)
        return transition

    def _step(
        self, batch: _Batch, instance: Instance, profile: Profile, item: Input, now: int
    ) -> None:
        plan = self.plans.get(instance.journey_id, instance.version)
        if plan is None:
            return
        profile = batch.as_written(profile)
        if self.plans.stopped(instance.journey_id, instance.version):
            self._keep(batch, core.leave(plan, instance, profile, "journey stopped", now), now)
            return
        successor = self.plans.successor(instance.journey_id, instance.version)
        if successor is not None:
            step = self.plans.moved_step(instance.journey_id, instance.step)
            if step not in successor.steps:
                reason = f"step {instance.step!r} is not in version {successor.version}"
                self._keep(batch, core.leave(plan, instance, profile, reason, now), now)
                return
            plan = successor
            instance = msgspec.structs.replace(instance, version=plan.version, step=step)
        transition = core.advance(plan, instance, profile, item, now)
        if transition.changed:
            self._keep(batch, transition, now)

    def _keep(self, batch: _Batch, transition: core.Transition, now: int) -> None:
        instance = transition.instance
        batch.instances[instance.id] = instance
        batch.changed.add(instance.id)
        batch.update.visits.extend(transition.visits)
        pid = instance.profile_id
        batch.update.outbox.extend(
            _outbox(batch.in_order(pid, command), pid, now) for command in transition.commands
        )

    def _commit(self, batch: _Batch) -> None:
        batch.update.fence = self.fence
        self._commit_all([batch])

    def _commit_all(self, batches: Sequence[_Batch]) -> None:
        for batch in batches:
            batch.update.instances = [batch.instances[i] for i in sorted(batch.changed)]
            batch.update.entries = [batch.records[k] for k in sorted(batch.changed_records)]
        self._runs.commit_all([batch.update for batch in batches])
        self.queued += sum(len(batch.update.outbox) for batch in batches)

    # -- timers -----------------------------------------------------------------------------

    @batch_work
    def run_timers(self, limit: int = TIMER_BATCH, partition: int | None = None) -> int:
        """Step instances whose timer is due (those filed under ``partition`` of the work feed
        when given); returns how many."""
        now = self._clock.now_ms()
        claimed = self._runs.claim_timers(now, limit, self._owner, TIMER_LEASE_MS, partition)
        if not claimed:
            return 0
        batch = _Batch(update=JourneyUpdate(partition=partition), partition=partition)
        profiles = self._profiles.find_many({i.identifier for i in claimed})
        for instance in claimed:
            batch.instances[instance.id] = instance
        for instance in claimed:
            profile = profiles.get(instance.identifier) or _unknown(instance)
            due = instance.wake_at if instance.wake_at is not None else now
            self._step(batch, instance, profile, TimerFired(due=due), now)
        self._commit(batch)
        return len(claimed)

    # -- scheduled entries ------------------------------------------------------------------

    @batch_work
    def run_schedules(self) -> int:
        """Enter customers into journeys whose cron schedule came due; returns how many
        profiles were looked at. A schedule missed while Safar was down runs once, for its
        latest due instant."""
        now = self._clock.now_ms()
        plans = [p for p in self.plans.scheduled() if self._next_tick.get(p.id, 0) <= now]
        if not plans:
            return 0
        ticks = self._runs.schedule_ticks()
        seen = 0
        for plan in plans:
            expr = plan.journey.entry.schedule or ""
            last = ticks.get(plan.id, self.plans.published_at.get(plan.id, now))
            tick = latest_tick(expr, last, now)
            if tick is not None:
                seen += self._enter_scheduled(plan, tick, now)
                last = tick
            self._next_tick[plan.id] = next_after(expr, last)
        return seen

    def _request_scheduled(
        self, plan: Plan, request: ApiEntry, profiles: Sequence[Profile], now: int
    ) -> None:
        """With partitioned stepping, a schedule enters nobody itself: it appends an entry
        request for each customer it selects, which the customer's partition handles in order
        with their events (message ids per customer and tick: appending again is harmless)."""
        requests = []
        for profile in profiles:
            head = _first_identifier(profile)
            if head is None or not core.entry_holds(plan, profile, None, now):
                continue
            requests.append(
                track_event(
                    key=f"{request.request_id}:{profile.id}",
                    identifier=_identity(profile, head),
                    name=ENTRY_REQUEST_EVENT,
                    properties={"journey_id": plan.id, "schedule": request.request_id},
                    at=request.at,
                )
            )
        if requests:
            self._events.append(requests)

    def next_schedule(self) -> int | None:
        """When the next scheduled entry is due, as known since the last :meth:`run_schedules`."""
        return min(self._next_tick.values(), default=None)

    def _enter_scheduled(self, plan: Plan, tick: int, now: int) -> int:
        """Every profile for which the entry condition holds enters, page by page. Redoing a
        tick after a crash gives the same instance ids and keys, so nothing happens twice."""
        request = ApiEntry(request_id=f"schedule:{plan.id}:{tick}", at=tick)
        after, seen = "", 0
        while profiles := self._profiles.scan(after, SCAN_PAGE):
            if self.schedule_by_events:
                self._request_scheduled(plan, request, profiles, now)
                after, seen = profiles[-1].id, seen + len(profiles)
                continue
            batch = _Batch()
            self._take(batch, *self._runs.load(_profile_ids(profiles)))
            for profile in profiles:
                head = _first_identifier(profile)
                if head is not None and core.entry_holds(plan, profile, None, now):
                    self._enter(batch, plan, profile, head, request, now)
            self._commit(batch)
            after, seen = profiles[-1].id, seen + len(profiles)
        self._runs.commit(JourneyUpdate(schedule_ticks={plan.id: tick}, fence=self.fence))
        return seen


def _scheduled_entry(plan: Plan, props: Mapping[str, object]) -> str | None:
    """The request id of a scheduled entry request for a journey entered on a schedule."""
    request = props.get("schedule")
    if isinstance(request, str) and plan.journey.entry.schedule:
        return request
    return None


def _identity(profile: Profile, head: Identifier) -> Identifier:
    """The identifier an instance is filed under: the customer's user id when known, else their
    anonymous id, else what the entering event named them by."""
    for kind in (USER_ID, ANONYMOUS_ID):
        values = profile.identifiers.get(kind)
        if values:
            return (kind, values[0])
    return head


def latest_tick(expr: str, last: int, now: int) -> int | None:
    """The latest instant of the cron schedule after ``last`` and at or before ``now``."""
    tick = next_after(expr, last)
    if tick > now:
        return None
    for _ in range(100_000):  # a minutely schedule missed for two months
        following = next_after(expr, tick)
        if following > now:
            break
        tick = following
    return tick


def _first_identifier(profile: Profile) -> Identifier | None:
    for kind in sorted(profile.identifiers):
        values = profile.identifiers[kind]
        if values:
            return (kind, values[0])
    return None


def _unknown(instance: Instance) -> Profile:
    """A stand-in for a profile that is gone (erased): conditions see no traits."""
    return Profile(
        id=instance.profile_id,
        identifiers={instance.identifier[0]: [instance.identifier[1]]},
        traits={},
        first_seen=0,
        last_seen=0,
    )


def _outbox(command: Command, profile_id: str, now: int) -> OutboxEntry:
    key = command.message.key if isinstance(command, SendCommand) else command.key
    return OutboxEntry(key=key, command=command, profile_id=profile_id, due=now)


def as_published(profile: Profile, profile_id: str) -> Profile:
    """``profile`` (the customer now) as the profile ``profile_id`` a feed item was published
    for, when a merge has since made it part of ``profile``: its instances and entry records
    are still that id's, in that id's partition, until the handover moves them."""
    if profile_id == profile.id:
        return profile
    merged = [profile.id, *(pid for pid in profile.merged_from if pid != profile_id)]
    return msgspec.structs.replace(profile, id=profile_id, merged_from=merged)


def _profile_ids(profiles: Iterable[Profile]) -> set[str]:
    """The ids whose instances are these customers': their own and those merged into them."""
    ids: set[str] = set()
    for profile in profiles:
        ids.add(profile.id)
        ids.update(profile.merged_from)
    return ids


def _epoch(fence: Fence | None) -> int | None:
    return fence.epoch if fence is not None else None
