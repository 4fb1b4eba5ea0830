"""The feed publisher: routes each event the profile processor has applied to its customer's
partition of the work feed (ADR 12).

Per batch:

1. read the events after ``feed.published_seq()``, never past what the profile processor (and
   the audience processor) have applied: the partition owners then see current profiles and
   segments. When the profile processor remembers the profile and name of every event of the
   range and no merge touched those profiles (nearly always, in the process that runs both),
   the range is published from that memory alone, without reading the events again;
2. each event goes to the partition of its customer's profile id *now*
   (:func:`~safar.core.assignment.partition_of`), so an event published after a merge already
   goes to the merged customer's partition: the profile the profile processor attributed it to
   when it remembers it and no merge touched that profile since, else one
   :meth:`~safar.ports.ProfileReader.find_many` for the rest;
3. around merges and moves of identifiers (rare: :meth:`~safar.ports.ProfileReader.reshaped`
   is usually empty), the partitions that held part of a customer get a handover, and the
   customer's first item in its partition waits for them (see :class:`~safar.model.work.WorkItem`);
4. one :meth:`~safar.ports.WorkFeed.publish` of the range.

The publisher keeps no state of its own: the feed's ``published_seq`` is its cursor, and a range
published again after a crash adds nothing (the feed's contract), so it can run in whichever
process holds the profile processor's lease.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, MutableMapping, Sequence

import msgspec

from safar.core.assignment import partition_of
from safar.core.identity import IdentityRules, extract
from safar.model.events import Event
from safar.model.profiles import Identifier
from safar.model.work import WorkItem
from safar.ports import EventLog, ProfileReader, WorkFeed
from safar.runtime.collector import batch_work
from safar.runtime.profiler import Route

#: Events per published range: one message per partition per range, so bigger ranges cost
#: less per event; a range holds only what the log has, so this adds no latency.
PUBLISH_BATCH = 5000


class FeedPublisher:
    """Publishes the applied event log to the work feed, partitioned by customer."""

    def __init__(
        self,
        events: EventLog,
        profiles: ProfileReader,
        feed: WorkFeed,
        rules: IdentityRules,
        *,
        behind: Sequence[Callable[[], int]] = (),
        routes: MutableMapping[int, Route] | None = None,
    ) -> None:
        """``behind``: the cursors of other processors (the audience processor's, say) the
        feed must not get ahead of, besides the profile processor's. ``routes``: event seq ->
        its profile when the profile processor applied it and its name, for events it remembers
        (:attr:`~safar.runtime.profiler.ProfileProcessor.routes`), so that only the others
        are looked up; the publisher removes those it has routed."""
        self._events = events
        self._profiles = profiles
        self._feed = feed
        self._rules = rules
        self._behind = behind
        self._routes: MutableMapping[int, Route] = routes if routes is not None else {}

    @batch_work
    def run_once(self, max_events: int = PUBLISH_BATCH) -> int:
        """Publish the next range; returns how many events it held (0: nothing to do)."""
        after = self._feed.published_seq()
        applied = self._profiles.processed_seq()
        ready = min([applied, *(cursor() for cursor in self._behind)])
        if ready <= after:
            return 0
        upto = min(ready, after + max_events)
        reshaped = set(self._profiles.reshaped(after, applied))
        items = self._remembered(after, upto, reshaped)
        held = upto - after  # every seq of the range: remembered
        if items is None:
            events = self._events.read(after, upto - after)
            if not events:
                return 0
            upto, held = events[-1].seq, len(events)
            items = self.route(events, after, applied, reshaped)
        self._feed.publish(upto, items)
        return held

    def _remembered(
        self, after: int, upto: int, reshaped: set[str]
    ) -> dict[int, list[WorkItem]] | None:
        """The items of the range ``(after, upto]`` from the processor's routes alone, taken
        out of them; None (taking nothing) unless every seq of it is remembered and no merge
        touched its profiles."""
        routes = self._routes
        seqs = range(after + 1, upto + 1)
        if not all(seq in routes for seq in seqs):
            return None
        if reshaped and any(routes[seq][0] in reshaped for seq in seqs):
            return None
        partitions = self._feed.partitions
        by_partition: dict[int, list[WorkItem]] = defaultdict(list)
        for seq in seqs:
            pid, name = routes.pop(seq)
            by_partition[partition_of(pid, partitions)].append(WorkItem(seq, pid, name=name))
        return dict(by_partition)

    def route(
        self, events: Sequence[Event], after: int, ready: int, reshaped: set[str] | None = None
    ) -> dict[int, list[WorkItem]]:
        """The items of these events, by partition, with the handovers their merges need.
        ``reshaped``: the profiles of merges applied after ``after`` up to ``ready``, when the
        caller has them."""
        # Merges the profile processor applied in a batch that ends after ``after``: any of
        # them may have been caused by an event of this range (ranges and the processor's
        # batches need not line up), so looking too far only adds handovers that move nothing.
        if reshaped is None:
            reshaped = set(self._profiles.reshaped(after, ready))
        # Each event's profile: remembered from the profile processor unless a merge or move
        # may have changed it since (then, and for events not remembered, looked up now).
        # Taken out, not read: routes left behind would grow to the processor's limit, which
        # then forgets all of them, those not yet published too.
        pids = [
            route[0] if (route := self._routes.pop(event.seq, None)) else None for event in events
        ]
        heads: dict[int, Identifier] = {}
        for n, (event, pid) in enumerate(zip(events, pids, strict=True)):
            if pid is None or pid in reshaped:
                identifiers = extract(event, self._rules).identifiers
                if identifiers:
                    heads[n] = identifiers[0]
                pids[n] = None
        found = self._profiles.find_many(set(heads.values())) if heads else {}
        current = {profile.id: profile for profile in found.values()}
        for n, head in heads.items():
            profile = found.get(head)
            pids[n] = profile.id if profile is not None else None
        partitions = self._feed.partitions
        firsts: dict[str, int] = {}
        routed: list[tuple[int, WorkItem]] = []
        for event, pid in zip(events, pids, strict=True):
            if pid is None:
                continue  # no identifier that links to anyone: no customer to step
            firsts.setdefault(pid, event.seq)
            item = WorkItem(event.seq, pid, name=event.name or "")
            routed.append((partition_of(pid, partitions), item))
        waits: dict[int, tuple[int, ...]] = {}
        handovers: list[tuple[int, WorkItem]] = []
        for pid in sorted(reshaped & firsts.keys()):
            seq, profile = firsts[pid], current[pid]
            home = partition_of(pid, partitions)
            others = self._related(pid, reshaped)
            away = sorted({partition_of(o, partitions) for o in others} - {home})
            if not away:
                continue
            waits[seq] = tuple(away)
            moves = tuple(profile.merged_from)
            handovers.extend((p, WorkItem(seq, pid, handover=home, moves=moves)) for p in away)
        by_partition: dict[int, list[WorkItem]] = defaultdict(list)
        for partition, item in routed:
            if item.seq in waits:
                item = msgspec.structs.replace(item, waits=waits[item.seq])
            by_partition[partition].append(item)
        for partition, item in handovers:
            by_partition[partition].append(item)
        for items in by_partition.values():
            items.sort(key=lambda i: i.seq)
        return dict(by_partition)

    def _related(self, profile_id: str, reshaped: set[str]) -> set[str]:
        """The profiles that exchanged identifiers with this one in the reshaped batches (a
        profile named by an older merge of the customer's and reshaped again since only adds a
        handover that moves nothing)."""
        named = {
            pid
            for record in self._profiles.merges(profile_id)
            if not record.refused
            for pid in (record.into, record.other)
        }
        return (named & reshaped) - {profile_id}
