"""Partition owners: the audiences and journeys of the work-feed partitions a process holds
(ADR 12).

With a work feed configured, the stepper (under its lease, one process at a time) folds events
into profiles, coordinates audiences (generations, history, forwarding), runs schedules and
publishes every event to its customer's partition. :class:`PartitionWorker` does the rest, in as
many processes as there are workers: it holds the partitions
:class:`~safar.runtime.partitions.PartitionLeases` assigns it; for each it keeps audiences over
the next feed items (:class:`~safar.runtime.partition_audiences.PartitionAudiences`), then steps
journeys up to where audiences are, all partitions together (one read of the feed, the log,
profiles and instances, and one commit for all of them, each partition's part carrying its
fence); then the due timers of the partitions that have some, and, when idle, a page of the
partitions' segment scans. Workers joining, leaving or dying move
partitions between them within about a lease; the cursors and timers are the store's, so a
partition continues where its last owner committed.
"""

from __future__ import annotations

import threading

from safar.config import Settings
from safar.core.identity import IdentityRules
from safar.model.leases import Fence
from safar.ports import Clock, WorkFeed
from safar.runtime.audiences import AudienceProcessor
from safar.runtime.collector import batch_work
from safar.runtime.feed_gaps import GapsHandled
from safar.runtime.journeys import JourneyRuntime
from safar.runtime.partition_audiences import PartitionAudiences
from safar.runtime.partitions import PartitionLeases
from safar.runtime.plans import PlanBook
from safar.runtime.turns import attempt, run_turns
from safar.stores.bundle import Stores

#: Milliseconds between looks for due timers in a partition that had none: timers fire up to
#: this late, and an idle owner asks the store this much less often.
TIMER_POLL_MS = 50


class PartitionWorker:
    """Steps journeys for the partitions this process holds (see the module docstring)."""

    def __init__(
        self,
        stores: Stores,
        settings: Settings,
        clock: Clock,
        feed: WorkFeed,
        *,
        owner: str = "partitions",
    ) -> None:
        from safar.runtime.worker import audience_reader, load_policy

        feed = GapsHandled(feed, skip=settings.bus.skip_lost)
        self._feed = feed
        self.owner = owner
        self.reader = audience_reader(stores, clock, settings)
        rules = IdentityRules(settings.identity)
        self.audiences = PartitionAudiences(
            stores.audiences,
            lambda partition: AudienceProcessor(
                stores.events,
                stores.profiles,
                stores.delivery,
                stores.audience_catalog,
                stores.audiences,
                rules,
                clock,
                owner=owner,
                partition=partition,
                partitions=feed.partitions,
            ),
        )
        self.runtime = JourneyRuntime(
            stores.events,
            self.reader,
            stores.journeys,
            stores.runs,
            rules,
            clock,
            plans=PlanBook(default_timezone=load_policy(settings).default_timezone),
            owner=owner,
        )
        #: When to look for due timers next.
        self._timers_at = 0
        #: Seconds between trims of the feed up to the cursors committed (the feed then holds
        #: only what is still to be read); 0: never.
        self._trim_every_s = settings.bus.trim_seconds
        #: The partitions the last round held (read by the trimming thread).
        self._held: dict[int, Fence] = {}
        #: Partition -> the cursor the feed was last trimmed to (the trimming thread's own).
        self._trimmed: dict[int, int] = {}
        #: After a round that read the feed to its end: the partitions held then, and the
        #: feed's ``published_seq`` read before that round (None: not read).
        self._caught_up: tuple[set[int], int | None] | None = None
        self._runs = stores.runs
        self._memberships = stores.audiences
        self._clock = clock
        self.leases = PartitionLeases(
            stores.leases,
            owner,
            clock,
            int(settings.workers.lease_seconds * 1000),
            feed.partitions,
        )

    @batch_work
    def step_once(self) -> int:
        """One round over the partitions held now: their next feed batches, in one turn, and
        the due timers of those that have some (looked for at most every
        :data:`TIMER_POLL_MS`, in one query for all)."""
        held = self.leases.hold()
        done = self._step_feed(held)
        now = self._clock.now_ms()
        if held and now >= self._timers_at:
            due_memberships = self._memberships.due_partitions(now, held)
            done += self.audiences.run_timers(due_memberships)
            due = self._runs.due_partitions(now, held)
            for partition in sorted(due):
                self.runtime.fence = held[partition]
                done += self.runtime.run_timers(partition=partition)
            busy = due or due_memberships
            self._timers_at = now if busy else now + TIMER_POLL_MS
        if held:
            done += self.audiences.run_jobs(idle=not done)
        self._held = held
        return done

    def trim_once(self) -> int:
        """Let the feed drop what this owner has committed since the last trim, in the
        partitions the last round held; returns how many partitions were trimmed. :meth:`run`
        calls it every ``bus.trim_seconds`` from a thread of its own, so the requests (a few
        per partition) never hold up stepping."""
        trimmed = 0
        for partition, fence in sorted(self._held.items()):
            cursor = self.runtime.committed(partition, fence)
            if cursor is not None and cursor > self._trimmed.get(partition, 0):
                self._feed.trim(partition, cursor)
                self._trimmed[partition] = cursor
                trimmed += 1
        return trimmed

    def _step_feed(self, held: dict[int, Fence]) -> int:
        """The held partitions' next feed batches. Once a round has read the feed to its end,
        the next ones first ask only for the feed's ``published_seq`` (one request, not one per
        partition) and skip the reads while it has not moved since the last full round read
        it, the partitions held being the same."""
        before: int | None = None
        if self._caught_up is not None and self._caught_up[0] == held.keys():
            before = self._feed.published_seq()
            if before == self._caught_up[1]:
                return 0
        audiences = self.audiences.run(self._feed, held)
        done = audiences.done + self.runtime.run_partitions(
            self._feed, held, limits=audiences.cursors, read=audiences.read
        )
        # ``before`` was read ahead of the reads: anything published later moves it.
        idle = done == 0 and not self.runtime.waiting and not self.audiences.waiting
        self._caught_up = (set(held), before) if idle else None
        return done

    def refresh(self) -> None:
        """Re-read the journey and audience catalogs and forget cached audiences (after
        publishes)."""
        self.runtime.refresh()
        self.audiences.refresh()
        self.reader.invalidate()

    def run(self, stop: threading.Event, idle_wait: float = 0.01, refresh: float = 2.0) -> None:
        """Step rounds until ``stop`` is set; then give the partitions up so other workers take
        them at once. A failed round is retried: every batch is redone from the store."""
        import time

        refreshed = time.monotonic()
        if self._trim_every_s:

            def trim() -> None:
                while not stop.wait(self._trim_every_s):
                    attempt(self.trim_once, stop, "trimming the work feed")

            threading.Thread(target=trim, name="safar-feed-trim", daemon=True).start()

        def turn() -> int:
            nonlocal refreshed
            if time.monotonic() - refreshed > refresh:
                self.refresh()
                refreshed = time.monotonic()
            return self.step_once()

        run_turns(turn, stop, "partition stepping", idle_wait, finally_=self.leases.release_all)
