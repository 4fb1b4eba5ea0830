"""The feed publisher: routes each event the profile processor has applied to its customer's
partition of the work feed (ADR 12).

Per batch:

1. read the events after ``feed.published_seq()``, never past what the profile processor (and
   the audience processor) have applied: the partition owners then see current profiles and
   segments;
2. one :meth:`~safar.ports.ProfileReader.find_many` for their customers: each event goes to the
   partition of its customer's profile id *now* (:func:`~safar.core.assignment.partition_of`),
   so an event published after a merge already goes to the merged customer's partition;
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
from collections.abc import Callable, Sequence

from safar.core.assignment import partition_of
from safar.core.identity import IdentityRules, extract
from safar.model.events import Event
from safar.model.profiles import Identifier, Profile
from safar.model.work import WorkItem
from safar.ports import EventLog, ProfileReader, WorkFeed

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
    ) -> None:
        """``behind``: the cursors of other processors (the audience processor's, say) the
        feed must not get ahead of, besides the profile processor's."""
        self._events = events
        self._profiles = profiles
        self._feed = feed
        self._rules = rules
        self._behind = behind

    def run_once(self, max_events: int = PUBLISH_BATCH) -> int:
        """Publish the next range; returns how many events it held (0: nothing to do)."""
        after = self._feed.published_seq()
        ready = min([self._profiles.processed_seq(), *(cursor() for cursor in self._behind)])
        if ready <= after:
            return 0
        events = self._events.read(after, min(max_events, ready - after))
        if not events:
            return 0
        items = self.route(events, after, self._profiles.processed_seq())
        self._feed.publish(events[-1].seq, items)
        return len(events)

    def route(self, events: Sequence[Event], after: int, ready: int) -> dict[int, list[WorkItem]]:
        """The items of these events, by partition, with the handovers their merges need."""
        heads: list[Identifier | None] = []
        for event in events:
            identifiers = extract(event, self._rules).identifiers
            heads.append(identifiers[0] if identifiers else None)
        found = self._profiles.find_many({h for h in heads if h is not None})
        partitions = self._feed.partitions
        firsts: dict[str, tuple[int, Profile]] = {}
        routed: list[tuple[int, WorkItem]] = []
        for event, head in zip(events, heads, strict=True):
            profile = found.get(head) if head is not None else None
            if profile is None:
                continue  # no identifier that links to anyone: no customer to step
            firsts.setdefault(profile.id, (event.seq, profile))
            routed.append((partition_of(profile.id, partitions), WorkItem(event.seq, profile.id)))
        # Merges the profile processor applied in a batch that ends after ``after``: any of
        # them may have been caused by an event of this range (ranges and the processor's
        # batches need not line up), so looking too far only adds handovers that move nothing.
        reshaped = set(self._profiles.reshaped(after, ready))
        waits: dict[int, tuple[int, ...]] = {}
        handovers: list[tuple[int, WorkItem]] = []
        for pid in sorted(reshaped & firsts.keys()):
            seq, profile = firsts[pid]
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
                item = WorkItem(item.seq, item.profile_id, waits=waits[item.seq])
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
