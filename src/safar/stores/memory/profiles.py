"""In-memory :class:`safar.ports.ProfileStore`: dictionaries behind one lock.

Timelines and trait writes are filed per identifier, as in the SQLite store, so merges and moves
never rewrite them: a profile's history is the union of its identifiers' histories.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Collection

from safar.core.assignment import in_partition
from safar.core.identity import by_type
from safar.core.traits import values
from safar.errors import StoreError
from safar.model.profiles import (
    Cluster,
    ClusterView,
    Edge,
    Identifier,
    IdentityView,
    MergeRecord,
    Placement,
    Profile,
    ProfileState,
    ProfileUpdate,
    TraitChange,
    TraitWrite,
)

_MergeKey = tuple[str, str, str, bool]
_TraitKey = tuple[int, str, str]  # timestamp, message_id, key


class MemoryProfileStore:
    """Profiles in dictionaries; not durable. For tests and simulations."""

    #: Nothing to gain: applying holds the GIL throughout (tests still run it pipelined).
    pipeline_cores: int | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processed = 0
        self._placements: dict[Identifier, Placement] = {}
        self._seen: dict[Identifier, tuple[int, int]] = {}
        self._members: dict[str, set[Identifier]] = {}  # profile id -> identifiers
        self._cluster_members: dict[str, set[Identifier]] = {}
        self._edges: dict[str, tuple[str, Edge]] = {}  # key -> (cluster id, edge)
        self._cluster_edges: dict[str, set[str]] = {}
        self._profiles: dict[str, ProfileState] = {}
        self._timeline: dict[Identifier, list[int]] = {}  # ascending seqs
        self._traits: dict[Identifier, dict[_TraitKey, TraitWrite]] = {}
        self._merges: list[MergeRecord] = []
        #: (processed seq of the batch, record), for reshaped().
        self._merge_seqs: list[tuple[int, MergeRecord]] = []
        self._merge_keys: set[_MergeKey] = set()

    # -- ProfileReader ---------------------------------------------------------------------------

    def processed_seq(self) -> int:
        return self._processed

    def find(self, identifier: Identifier) -> Profile | None:
        with self._lock:
            placement = self._placements.get(identifier)
            if placement is None:
                return None
            pid = placement.profile_id
            members = self._members.get(pid, set())
            state = self._profiles.get(pid) or ProfileState(id=pid)
            seen = [self._seen[m] for m in members if m in self._seen]
            return Profile(
                id=pid,
                identifiers=by_type(members),
                traits=values(state.traits),
                first_seen=min((first for first, _ in seen), default=0),
                last_seen=max((last for _, last in seen), default=0),
                merged_from=list(state.merged_from),
            )

    def scan(
        self, after_id: str, limit: int, partition: tuple[int, int] | None = None
    ) -> list[Profile]:
        with self._lock:
            ids = sorted(
                pid
                for pid in self._members
                if pid > after_id and self._members[pid] and in_partition(pid, partition)
            )
        found: list[Profile] = []
        for pid in ids:
            if len(found) >= limit:
                break
            member = next(iter(sorted(self._members.get(pid, ()))), None)
            profile = self.find(member) if member is not None else None
            if profile is not None and profile.id == pid:
                found.append(profile)
        return found

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        found: dict[Identifier, Profile] = {}
        for identifier in identifiers:
            profile = self.find(identifier)
            if profile is not None:
                found[identifier] = profile
        return found

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        if limit <= 0:
            return []
        with self._lock:
            newest: list[int] = []
            for member in self._members.get(profile_id, ()):
                seqs = self._timeline.get(member, [])
                end = len(seqs) if before_seq is None else bisect.bisect_left(seqs, before_seq)
                newest.extend(seqs[max(0, end - limit) : end])
        return heapq.nlargest(limit, newest)

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        with self._lock:
            writes = [
                w
                for member in self._members.get(profile_id, ())
                for w in self._traits.get(member, {}).values()
            ]
        writes.sort(key=lambda w: w.key)
        writes.sort(key=lambda w: (w.timestamp, w.message_id), reverse=True)
        return [
            TraitChange(
                key=w.key, value=w.value, timestamp=w.timestamp, message_id=w.message_id, seq=w.seq
            )
            for w in writes[: max(limit, 0)]
        ]

    def reshaped(self, after_seq: int, upto_seq: int) -> list[str]:
        with self._lock:
            found = {
                pid
                for seq, m in self._merge_seqs
                if after_seq < seq <= upto_seq and not m.refused
                for pid in (m.into, m.other)
            }
        return sorted(found)

    def merges(self, profile_id: str) -> list[MergeRecord]:
        with self._lock:
            state = self._profiles.get(profile_id)
            ids = {profile_id, *(state.merged_from if state else ())}
            return [m for m in self._merges if m.into in ids or m.other in ids]

    # -- ProfileStore ----------------------------------------------------------------------------

    def load(self, identifiers: Collection[Identifier], edge_keys: Collection[str]) -> IdentityView:
        with self._lock:
            placements = self._placements
            edges = self._edges
            return IdentityView(
                placements={i: placements[i] for i in identifiers if i in placements},
                edges={
                    k: (edges[k][1].timestamp, edges[k][1].message_id)
                    for k in edge_keys
                    if k in edges
                },
            )

    def load_clusters(
        self, cluster_ids: Collection[str], profile_ids: Collection[str]
    ) -> ClusterView:
        with self._lock:
            clusters: dict[str, Cluster] = {}
            wanted = set(profile_ids)
            for cid in cluster_ids:
                members = self._cluster_members.get(cid)
                if members is None:
                    continue
                cluster = Cluster(
                    id=cid,
                    members={m: self._placements[m].profile_id for m in members},
                    edges=[self._edges[k][1] for k in self._cluster_edges.get(cid, ())],
                )
                clusters[cid] = cluster
                wanted.update(cluster.members.values())
            profiles = {pid: _copy(self._profiles[pid]) for pid in wanted if pid in self._profiles}
            return ClusterView(clusters=clusters, profiles=profiles)

    def trait_writes(self, identifiers: Collection[Identifier]) -> list[TraitWrite]:
        with self._lock:
            return [w for i in identifiers for w in self._traits.get(i, {}).values()]

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        with self._lock:
            if update.after_seq != self._processed:
                raise StoreError(
                    f"profile update computed after seq {update.after_seq}, but the store is at"
                    f" {self._processed}: another processor is running"
                )
            self._check_placed(update)
            for identifier, placement in update.placements.items():
                self._place(identifier, placement)
            for identifier, (first, last) in update.seen.items():
                old = self._seen.get(identifier)
                self._seen[identifier] = (
                    (first, last) if old is None else (min(old[0], first), max(old[1], last))
                )
            for cid, edge in update.edges:
                self._store_edge(cid, edge)
            for pid in update.deleted_profiles:
                self._profiles.pop(pid, None)
            for state in update.profiles:
                self._profiles[state.id] = _copy(state)
            for identifier, seq in update.timeline:
                seqs = self._timeline.setdefault(identifier, [])
                if not seqs or seqs[-1] < seq:
                    seqs.append(seq)
                else:
                    at = bisect.bisect_left(seqs, seq)
                    if at == len(seqs) or seqs[at] != seq:
                        seqs.insert(at, seq)
            for w in update.trait_writes:
                self._traits.setdefault(w.identifier, {}).setdefault(
                    (w.timestamp, w.message_id, w.key), w
                )
            for record in update.merges:
                key = (record.into, record.other, record.message_id, record.refused)
                if key not in self._merge_keys:
                    self._merge_keys.add(key)
                    self._merges.append(record)
                    self._merge_seqs.append((update.processed_seq, record))
            self._processed = update.processed_seq

    def _check_placed(self, update: ProfileUpdate) -> None:
        named = {*update.seen, *(i for i, _ in update.timeline)}
        named.update(w.identifier for w in update.trait_writes)
        unplaced = {i for i in named if i not in self._placements and i not in update.placements}
        if unplaced:
            raise StoreError(f"profile update names identifiers never placed: {unplaced}")

    def _place(self, identifier: Identifier, placement: Placement) -> None:
        old = self._placements.get(identifier)
        if old is not None:
            self._members[old.profile_id].discard(identifier)
            if not self._members[old.profile_id]:
                del self._members[old.profile_id]
            self._cluster_members[old.cluster_id].discard(identifier)
            if not self._cluster_members[old.cluster_id]:
                del self._cluster_members[old.cluster_id]
        self._placements[identifier] = placement
        self._members.setdefault(placement.profile_id, set()).add(identifier)
        self._cluster_members.setdefault(placement.cluster_id, set()).add(identifier)

    def _store_edge(self, cluster_id: str, edge: Edge) -> None:
        old = self._edges.get(edge.key)
        if old is not None and old[0] != cluster_id:
            keys = self._cluster_edges[old[0]]
            keys.discard(edge.key)
            if not keys:
                del self._cluster_edges[old[0]]
        self._edges[edge.key] = (cluster_id, edge)
        self._cluster_edges.setdefault(cluster_id, set()).add(edge.key)


def _copy(state: ProfileState) -> ProfileState:
    """Neither side may change the other's copy: states are mutable."""
    return ProfileState(id=state.id, traits=dict(state.traits), merged_from=list(state.merged_from))
