"""The profile processor: folds the event log into unified profiles, one batch at a time.

Per batch, and whatever its size:

1. read the next events after ``store.processed_seq()``;
2. extract each event's identifiers (:mod:`safar.core.identity`) and the *edge* it brings (its
   identifier set, when it has two or more);
3. one :meth:`~safar.ports.ProfileStore.load` of the batch's identifiers and edges that the
   processor does not already know to be stored (:mod:`safar.runtime.known`);
4. edges the store does not have (or has with a later stamp) and identifiers it has never seen
   form groups with the clusters they touch (:mod:`safar.core.batch`). Edges between
   identifiers already in one profile are just stored (they cannot change any profile); new
   identifiers linked to nothing known (a new person) become a new profile; the other groups
   are recomputed by :func:`safar.core.regroup.regroup` after one
   :meth:`~safar.ports.ProfileStore.load_clusters`, which also reads the profiles that receive
   traits;
5. only if identifiers moved between profiles, one
   :meth:`~safar.ports.ProfileStore.trait_writes` to replay the affected profiles' traits;
6. one atomic :meth:`~safar.ports.ProfileStore.apply` with the new ``processed_seq``; where a
   core is free, on a thread of its own while the next batch is computed (ADR 16).

The common event (a known person, identifiers already together, no new edge) costs a timeline
row, a widening of its identifiers' first/last seen times and, for identify calls, trait writes.

Because a cluster's profiles are always the replay of its stored edges in stamp order, and traits
are last-write-wins by stamp, the profiles (as sets of identifiers) and their traits depend only
on the set of events processed, not on their order or on how they were batched. Profile ids and
merge records do depend on the order: they say what happened.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from safar.config import IdentitySettings
from safar.core import traits as trait_rules
from safar.core.batch import (
    Group,
    Scanned,
    groups,
    new_edges,
    one_new_profile,
    scan,
    within_profiles,
)
from safar.core.identity import MAX_TRAIT_NAME_CHARS, IdentityRules
from safar.core.regroup import regroup
from safar.errors import SafarError
from safar.model.events import Event
from safar.model.leases import Fence
from safar.model.profiles import (
    ClusterView,
    Edge,
    Identifier,
    IdentityView,
    Placement,
    ProfileState,
    ProfileUpdate,
    StampedValue,
    TraitWrite,
)
from safar.ports import Clock, EventLog, ProfileReader, ProfileStore
from safar.runtime.collector import batch_work
from safar.runtime.known import KnownState

log = logging.getLogger(__name__)

DEFAULT_BATCH = 5000
#: Batch cap for :meth:`ProfileProcessor.run`. A batch holds only what the log has, so a high cap
#: adds no latency when processing keeps up, and when it lags, bigger batches cost less per
#: event (each commit's random page writes are shared by more events).
RUN_BATCH = 20_000
#: Events whose profile :attr:`ProfileProcessor.routes` remembers before forgetting them all.
ROUTES_LIMIT = 200_000
#: What :attr:`ProfileProcessor.routes` remembers of an event: its profile id and its name.
Route = tuple[str, str]


def time_ordered_id(clock: Clock) -> Callable[[], str]:
    """New profile ids: 12 hex digits of milliseconds, then 20 random hex digits.

    Ids made later sort later, so stores append new profiles to the end of their indexes
    instead of dirtying a random page per profile (random UUIDs cost about that much).
    The random part need not be secret, only unique: it comes from a generator seeded by the
    operating system (once per process, again in a forked child), not from a system call per
    id, which was a twelfth of the time of a batch of new people.
    """

    def new_id() -> str:
        return f"{clock.now_ms():012x}{_ID_RANDOM.getrandbits(80):020x}"

    return new_id


_ID_RANDOM: Final = random.Random(secrets.randbits(128))
os.register_at_fork(after_in_child=lambda: _ID_RANDOM.seed(secrets.randbits(128)))


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def read_applied(events: EventLog, profiles: ProfileReader, after: int, limit: int) -> list[Event]:
    """Up to ``limit`` events after ``after`` that the profile processor has already applied:
    what the processors downstream of it (audiences, journeys, the feed publisher) read, so
    they always see current profiles."""
    ready = profiles.processed_seq()
    if ready <= after:
        return []
    return events.read(after, min(limit, ready - after))


class ProfileProcessor:
    """Folds the event log into the profile store. One processor per store at a time.

    ``new_id`` names new profiles (:func:`time_ordered_id` by default; tests pass a counter).
    """

    def __init__(
        self,
        event_log: EventLog,
        store: ProfileStore,
        settings: IdentitySettings,
        clock: Clock,
        new_id: Callable[[], str] | None = None,
        *,
        pipelined: bool | None = None,
    ) -> None:
        self._log = event_log
        self._store = store
        self._rules = IdentityRules(settings)
        self._clock = clock
        self._new_id = new_id or time_ordered_id(clock)
        self._known = KnownState()
        #: Event seq -> the profile it was attributed to and the event's name (``""`` for
        #: none), for the events of recent batches, once :meth:`keep_routes` is called: the
        #: feed publisher running beside the processor routes them without a query, or without
        #: reading them again when it has them all (a hint: the store stays the authority, and
        #: merges since are looked up again). None without a publisher: it was a seventh of
        #: the processor's time.
        self.routes: dict[int, Route] | None = None
        #: The lease this processor works under, sent with every update (see
        #: :class:`~safar.model.leases.Fence`); None when it runs alone.
        self.fence: Fence | None = None
        #: Applies each update on a thread of its own while the next batch is computed (ADR
        #: 16): as ``pipelined`` says, else on as many cores as the store's ``pipeline_cores``.
        if pipelined is None:
            cores = store.pipeline_cores
            pipelined = cores is not None and available_cores() >= cores
        self._applier = _Applier(store) if pipelined else None

    @property
    def pipelined(self) -> bool:
        """Whether updates are applied on a thread of their own (ADR 16)."""
        return self._applier is not None

    @batch_work
    def run_once(self, max_events: int = DEFAULT_BATCH) -> int:
        """Process the next batch of up to ``max_events``; returns how many events it held.

        Pipelined, the batch is applied in the background: it is in the store once the next
        call returns, or :meth:`settle` does. A failed apply is raised by the call after it."""
        applier = self._applier
        after = self._store.processed_seq() if applier is None else self._position(applier)
        events = self._log.read(after, max_events)
        if not events:
            self.settle()
            return 0
        try:
            update, scanned = self._update(after, events)
            update.fence = self.fence
            if applier is None:
                self._store.apply(update)
            else:
                # One update in flight at a time: this one goes once the one before is in.
                applier.wait()
                applier.start(update)
        except BaseException:
            self._known.forget()
            raise
        # Before the store has it, when pipelined: the next batch is computed as if it had
        # (it is, or the next call raises and starts again from the store).
        self._known.applied(update)
        if self.routes is not None:
            self._route(self.routes, update, scanned)
        return len(events)

    def settle(self) -> None:
        """Wait until the update in flight (pipelined) is in the store; raises if it failed."""
        if self._applier is not None:
            self._applier.wait()

    def _position(self, applier: _Applier) -> int:
        """Where the next batch starts: after the update in flight, else at the store's
        ``processed_seq``. Reading the store means the batch must see all it holds: what the
        processor remembers is valid only at its own position (:class:`KnownState`)."""
        flying = applier.flying
        if flying is not None and self._known.seq == flying:
            return flying
        self.settle()
        return self._store.processed_seq()

    def keep_routes(self) -> dict[int, Route]:
        """Remember from now on the profile of each event processed (:attr:`routes`), for a
        feed publisher beside the processor; returns them."""
        if self.routes is None:
            self.routes = {}
        return self.routes

    def _route(self, routes: dict[int, Route], update: ProfileUpdate, scanned: Scanned) -> None:
        """Remember each event's profile as of this batch."""
        if len(routes) > ROUTES_LIMIT:
            routes.clear()
        placements = update.placements
        for event, identifiers, _ in scanned.events:
            placed = placements.get(identifiers[0]) or self._known.placement(identifiers[0])
            if placed is not None:
                routes[event.seq] = (placed.profile_id, event.name or "")

    def run(
        self, stop: threading.Event, idle_wait: float = 0.05, *, max_events: int = RUN_BATCH
    ) -> None:
        """Process batches of up to ``max_events`` until ``stop`` is set, waiting on it for
        ``idle_wait`` s when there is nothing to do.

        Retryable errors (a busy or failing store) are logged and retried after the same wait;
        others propagate.
        """
        while not stop.is_set():
            try:
                done = self.run_once(max_events)
            except SafarError as exc:
                if not exc.retryable:
                    raise
                log.warning("profile processing failed, will retry: %s", exc)
                done = 0
            if done == 0:
                stop.wait(idle_wait)
        self.settle()

    def _update(self, after: int, events: Sequence[Event]) -> tuple[ProfileUpdate, Scanned]:
        scanned = scan(events, self._rules, self._known.edge_keys, self._known.pairs)
        update = ProfileUpdate(
            after_seq=after,
            processed_seq=events[-1].seq,
            seen=scanned.seen,
            timeline=[(identifiers[0], event.seq) for event, identifiers, _ in scanned.events],
        )
        if scanned.events:
            view, unknown = self._known.load(
                self._store, after, scanned.seen.keys(), scanned.edges.keys()
            )
            step = _Step(
                self._store,
                self.settle,
                self._rules,
                self._new_id,
                self._clock,
                scanned,
                view,
                update,
                self._known.states,
            )
            step.run(unknown)
        return update, scanned


class _Step:
    """Turns one scanned batch and what the store holds into the batch's update."""

    def __init__(
        self,
        store: ProfileStore,
        settle: Callable[[], None],
        rules: IdentityRules,
        new_id: Callable[[], str],
        clock: Clock,
        scanned: Scanned,
        view: IdentityView,
        update: ProfileUpdate,
        known_states: Callable[[Collection[str]], dict[str, ProfileState] | None],
    ) -> None:
        self.known_states = known_states
        self.store = store
        #: Called before reading clusters (and so before trait writes, read only after
        #: regrouping them), which the update in flight may change; the placements and edges it
        #: writes are remembered (KnownState), so ``load`` needs no wait.
        self.settle = settle
        self.rules = rules
        self.new_id = new_id
        self.clock = clock
        self.scanned = scanned
        self.view = view
        self.update = update
        self.states: dict[str, ProfileState] = {}
        self.changed: set[str] = set()
        self.recompute: dict[str, tuple[Identifier, ...]] = {}

    def run(self, unknown: list[Identifier]) -> None:
        """Compute the update; ``unknown``: the batch's identifiers the store has never placed."""
        view, update = self.view, self.update
        regroups: list[Group] = []
        for group in groups(new_edges(self.scanned, view), unknown, view.placements):
            if within_profiles(group, view):
                cluster_id = group.clusters[0]
                update.edges.extend((cluster_id, edge) for edge in group.edges)
            elif (not group.clusters and not group.edges) or one_new_profile(group, self.rules):
                self._create(group.nodes, group.edges)
            else:
                regroups.append(group)
        touched = {cid for group in regroups for cid in group.clusters}
        wanted: set[str] = set()
        for _, identifiers, traits in self.scanned.events:
            placement = view.placements.get(identifiers[0])
            if traits and placement is not None and placement.cluster_id not in touched:
                wanted.add(placement.profile_id)
        # The states of profiles only receiving traits are usually known (this processor wrote
        # them): the store is read only for regroups and profiles not known.
        known = None if touched else self.known_states(wanted)
        if known is not None:
            loaded = ClusterView(clusters={}, profiles=known)
        else:
            self.settle()
            loaded = self.store.load_clusters(touched, wanted)
        self.states.update(loaded.profiles)
        now = self.clock.now_ms()
        for group in regroups:
            self._regroup(group, loaded, now)
        if self.recompute:
            self._replay_traits()
        self._write_traits()
        update.profiles = [self.states[pid] for pid in sorted(self.changed)]

    def _create(self, nodes: list[Identifier], edges: list[Edge]) -> None:
        """New identifiers that form one new profile, in a new cluster."""
        pid = self.new_id()
        for node in nodes:
            self.update.placements[node] = Placement(pid, pid)
        self.update.edges.extend((pid, edge) for edge in edges)
        self.states[pid] = ProfileState(id=pid)
        self.changed.add(pid)

    def _regroup(self, group: Group, loaded: ClusterView, now: int) -> None:
        clusters = [loaded.clusters[cid] for cid in group.clusters if cid in loaded.clusters]
        result = regroup(
            clusters, loaded.profiles, group.nodes, group.edges, self.rules, self.new_id, now
        )
        update = self.update
        update.placements.update(result.placements)
        update.edges.extend((result.cluster_id, edge) for edge in result.edges)
        update.deleted_profiles.extend(result.deleted)
        update.merges.extend(result.merges)
        self.states.update(result.profiles)
        self.changed.update(result.profiles)
        self.recompute.update(result.recompute)

    def _replay_traits(self) -> None:
        """Rebuild the traits of profiles identifiers moved in or out of, from their writes."""
        owner = {i: pid for pid, cell in self.recompute.items() for i in cell}
        writes: dict[str, list[TraitWrite]] = {pid: [] for pid in self.recompute}
        for w in self.store.trait_writes(owner.keys()):
            writes[owner[w.identifier]].append(w)
        for pid, found in writes.items():
            self.states[pid].traits = trait_rules.replay(found)

    def _write_traits(self) -> None:
        placements, stored = self.update.placements, self.view.placements
        writes = self.update.trait_writes
        for event, identifiers, traits in self.scanned.events:
            if not traits:
                continue
            head = identifiers[0]
            pid = (placements.get(head) or stored[head]).profile_id
            state = self.states.get(pid)
            if state is None:
                state = self.states[pid] = ProfileState(id=pid)
            ts, mid = event.timestamp, event.message_id
            for key, value in traits.items():
                if "\x00" in key or len(key) > MAX_TRAIT_NAME_CHARS:
                    # Names no trait any store can keep (PostgreSQL text refuses NUL, SQLite's
                    # JSON functions cut it short; PostgreSQL's index refuses a long one): left
                    # out, as blocked identifiers are.
                    continue
                writes.append(
                    TraitWrite(
                        identifier=head,
                        key=key,
                        value=value,
                        timestamp=ts,
                        message_id=mid,
                        seq=event.seq,
                    )
                )
                if trait_rules.write(state.traits, key, StampedValue(value, ts, mid)):
                    self.changed.add(pid)


class _Applier:
    """Applies one update at a time on a thread of its own (ADR 16)."""

    def __init__(self, store: ProfileStore) -> None:
        self._store = store
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[None] | None = None
        #: The ``processed_seq`` of the update in flight, if any.
        self.flying: int | None = None

    def start(self, update: ProfileUpdate) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="safar-profile-apply")
        self._future = self._pool.submit(self._store.apply, update, background=True)
        self.flying = update.processed_seq

    def wait(self) -> None:
        """Wait for the update in flight; raises what its apply raised."""
        future, self._future, self.flying = self._future, None, None
        if future is not None:
            future.result()
