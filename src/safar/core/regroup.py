"""Recompute one cluster after new edges reached it, and say what changed.

A cluster's profiles are always :func:`~safar.core.partition.partition` of its stored edges. When
a batch brings edges that are new (or earlier than the stored copy) to one or more clusters and
to identifiers never seen before, they form one group: the group's cells are recomputed from all
of its edges and compared with the profiles it had. Usually cells only merge; when a late event
is earlier than the edges that decided a join, an identifier can move between profiles instead.

Profile ids stay stable: each new cell keeps the id of an old profile in it, preferring the
profile that holds the cell's highest-priority identifier type (the known user's profile absorbs
the anonymous one, and a user's profile keeps its id even when a move takes most of its anonymous
ids elsewhere), then the one holding most of the cell's identifiers, then the smallest id. Each
old id goes to at most one cell; cells left without one get a new id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from safar.core import traits as trait_rules
from safar.core.identity import IdentityRules
from safar.core.partition import Link, partition
from safar.model.profiles import (
    Cluster,
    Edge,
    Identifier,
    MergeRecord,
    Placement,
    ProfileState,
    ref,
)


class Regrouped(NamedTuple):
    """What recomputing a group changes."""

    cluster_id: str
    #: Profile id of every identifier in the group.
    profile_of: dict[Identifier, str]
    #: Identifiers that are new or changed profile or cluster.
    placements: dict[Identifier, Placement]
    #: Edges to store: new ones, re-stamped ones and those of clusters joined into this one.
    edges: list[Edge]
    #: Profiles created or changed. Traits are final unless the id is also in ``recompute``.
    profiles: dict[str, ProfileState]
    #: Profiles whose traits must be replayed from the trait writes of these identifiers,
    #: because identifiers moved in or out of them.
    recompute: dict[str, tuple[Identifier, ...]]
    deleted: list[str]
    merges: list[MergeRecord]


def regroup(
    clusters: Iterable[Cluster],
    profiles: Mapping[str, ProfileState],
    new_nodes: Iterable[Identifier],
    new_edges: Iterable[Edge],
    rules: IdentityRules,
    new_id: Callable[[], str],
    now: int,
) -> Regrouped:
    """Recompute the group made of ``clusters``, ``new_nodes`` and ``new_edges``.

    ``profiles`` holds the state of every profile in ``clusters``; ``new_edges`` may repeat
    stored edges, and only those earlier than the stored copy count.
    """
    old_profile: dict[Identifier, str] = {}
    old_cluster: dict[Identifier, str] = {}
    edges: dict[str, Edge] = {}
    edge_cluster: dict[str, str] = {}
    cluster_ids: list[str] = []
    for cluster in clusters:
        cluster_ids.append(cluster.id)
        for node, profile_id in cluster.members.items():
            old_profile[node] = profile_id
            old_cluster[node] = cluster.id
        for edge in cluster.edges:
            edges[edge.key] = edge
            edge_cluster[edge.key] = cluster.id
    changed: list[Edge] = []
    for edge in new_edges:
        stored = edges.get(edge.key)
        if stored is None or (edge.timestamp, edge.message_id) < (
            stored.timestamp,
            stored.message_id,
        ):
            edges[edge.key] = edge
            edge_cluster.pop(edge.key, None)
            changed.append(edge)
    nodes = [*old_profile, *(n for n in new_nodes if n not in old_profile)]
    result = partition(nodes, edges.values(), rules)

    old_members: dict[str, set[Identifier]] = {}
    for node, profile_id in old_profile.items():
        old_members.setdefault(profile_id, set()).add(node)
    ids = _assign_ids(result.cells, old_profile, rules, new_id)
    cluster_id = min(cluster_ids) if cluster_ids else min(ids)
    profile_of = {node: pid for cell, pid in zip(result.cells, ids, strict=True) for node in cell}
    dissolved = sorted(set(old_members) - set(ids))

    placements: dict[Identifier, Placement] = {}
    for node, pid in profile_of.items():
        if old_profile.get(node) != pid or old_cluster.get(node) != cluster_id:
            placements[node] = Placement(pid, cluster_id)
    to_store = [e for key, e in edges.items() if edge_cluster.get(key) != cluster_id]

    first_link = _first_links(result.links, profile_of, old_profile)
    changed_profiles: dict[str, ProfileState] = {}
    recompute: dict[str, tuple[Identifier, ...]] = {}
    merges: list[MergeRecord] = []
    for cell, pid in zip(result.cells, ids, strict=True):
        members = set(cell)
        contributors = sorted({old_profile[n] for n in cell if n in old_profile})
        others = [q for q in contributors if q != pid]
        is_old = pid in old_members
        lost = is_old and not old_members[pid] <= members
        if is_old and not others and not lost:
            continue
        state = profiles.get(pid) if is_old else None
        merged_from = list(state.merged_from) if state else []
        for other in others:
            link = first_link.get((pid, other))
            moved = old_members[other] & members
            if other in dissolved and moved == old_members[other]:
                reason = _linked(link)
                for gone in (other, *_merged_from(profiles, other)):
                    if gone not in merged_from:
                        merged_from.append(gone)
            else:
                refs = ", ".join(ref(n) for n in sorted(moved))
                reason = f"moved {refs}: {_linked(link)}"
            merges.append(
                MergeRecord(
                    into=pid,
                    other=other,
                    reason=reason,
                    refused=False,
                    message_id=link.message_id if link else "",
                    at=now,
                )
            )
        if all(old_members[q] <= members for q in contributors):
            combined = trait_rules.combine(
                profiles[q].traits for q in contributors if q in profiles
            )
        else:
            combined = {}
            recompute[pid] = cell
        changed_profiles[pid] = ProfileState(id=pid, traits=combined, merged_from=merged_from)

    if changed:
        start = min((e.timestamp, e.message_id) for e in changed)
        # The replay before the earliest changed edge is the one done before, whose refusals
        # are already recorded.
        for refusal in result.refusals:
            if (refusal.timestamp, refusal.message_id) < start:
                continue
            merges.append(
                MergeRecord(
                    into=profile_of[refusal.kept],
                    other=profile_of[refusal.refused],
                    reason=(
                        f"refused: a profile may hold at most {refusal.limit} {refusal.kind}"
                        f" (linking {ref(refusal.kept)} with {ref(refusal.refused)})"
                    ),
                    refused=True,
                    message_id=refusal.message_id,
                    at=now,
                )
            )
    return Regrouped(
        cluster_id=cluster_id,
        profile_of=profile_of,
        placements=placements,
        edges=to_store,
        profiles=changed_profiles,
        recompute=recompute,
        deleted=dissolved,
        merges=merges,
    )


def _assign_ids(
    cells: list[tuple[Identifier, ...]],
    old_profile: Mapping[Identifier, str],
    rules: IdentityRules,
    new_id: Callable[[], str],
) -> list[str]:
    """A profile id per cell: see the module docstring."""
    candidates: list[tuple[int, int, str, int]] = []
    for index, cell in enumerate(cells):
        best: dict[str, list[int]] = {}  # old id -> [rank of its best identifier, -count]
        for node in cell:  # cells are in priority order, so the first hit is the best
            pid = old_profile.get(node)
            if pid is None:
                continue
            entry = best.get(pid)
            if entry is None:
                best[pid] = [rules.rank(node[0]), -1]
            else:
                entry[1] -= 1
        candidates.extend((rank, count, pid, index) for pid, (rank, count) in best.items())
    candidates.sort()
    ids: list[str | None] = [None] * len(cells)
    taken: set[str] = set()
    for _, _, pid, index in candidates:
        if ids[index] is None and pid not in taken:
            ids[index] = pid
            taken.add(pid)
    return [pid if pid is not None else new_id() for pid in ids]


def _first_links(
    links: list[Link], profile_of: Mapping[Identifier, str], old_profile: Mapping[Identifier, str]
) -> dict[tuple[str, str], Link]:
    """For (profile, old profile joined into it), the first link that explains the join."""
    first: dict[tuple[str, str], Link] = {}
    for link in links:
        kept = old_profile.get(link.kept)
        joined = old_profile.get(link.joined)
        if kept == joined:
            continue
        pid = profile_of[link.kept]
        for old in (kept, joined):
            if old is not None:
                first.setdefault((pid, old), link)
    return first


def _merged_from(profiles: Mapping[str, ProfileState], profile_id: str) -> list[str]:
    state = profiles.get(profile_id)
    return state.merged_from if state else []


def _linked(link: Link | None) -> str:
    if link is None:
        return "linked by an earlier event"
    return f"linked {ref(link.kept)} with {ref(link.joined)}"
