"""What a batch of events brings to identity resolution, before and after one look at the store.

:func:`scan` reads the batch alone: each event's identifiers and traits, the span of times each
identifier was seen, and the distinct edges. :func:`groups` then splits what is new to the store
into independent pieces of work, and :func:`within_profiles` and :func:`one_new_profile` spot
the pieces that need no regrouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from safar.core.identity import IdentityRules, edge_key, extract, ids_only, reads_body
from safar.model.events import Event
from safar.model.profiles import Edge, Identifier, IdentityView, Placement


class Scanned(NamedTuple):
    """A batch as identity resolution sees it."""

    #: Events naming somebody, with their identifiers (highest priority first) and the traits an
    #: identify call sets (None for other calls).
    events: list[tuple[Event, tuple[Identifier, ...], dict[str, Any] | None]]
    #: Identifier -> (earliest, latest) event timestamp in the batch.
    seen: dict[Identifier, tuple[int, int]]
    #: Edge key -> the edge, stamped with its earliest event in the batch.
    edges: dict[str, Edge]


#: Memo of :func:`scan`: (user_id, anonymous_id) of events that do not read their body -> their
#: identifiers and, for two or more, their edge key.
Pairs = dict[tuple[str | None, str | None], tuple[tuple[Identifier, ...], str | None]]


def scan(
    events: Iterable[Event],
    rules: IdentityRules,
    keys: dict[tuple[Identifier, ...], str] | None = None,
    pairs: Pairs | None = None,
) -> Scanned:
    """Extract what identity resolution needs from ``events``.

    ``keys`` memoizes :func:`~safar.core.identity.edge_key` and ``pairs`` the identifiers of
    events that name only ``userId`` / ``anonymousId``; both are filled in (for the same
    ``rules``): the same people recur batch after batch, and normalizing and hashing their
    identifiers is a good part of a batch's cost.
    """
    parsed: list[tuple[Event, tuple[Identifier, ...], dict[str, Any] | None]] = []
    # Tuples replaced when they widen, not lists converted at the end: most identifiers come up
    # once a batch, and the conversion was about a seventh of the scan.
    spans: dict[Identifier, tuple[int, int]] = {}
    edges: dict[str, Edge] = {}
    if keys is None:
        keys = {}
    if pairs is None:
        pairs = {}
    key: str | None
    for event in events:
        if reads_body(event):
            identifiers, traits = extract(event, rules)
            if not identifiers:
                continue
            key = None
            if len(identifiers) > 1:
                key = keys.get(identifiers)
                if key is None:
                    key = keys[identifiers] = edge_key(identifiers)
        else:
            traits = None
            raw = (event.user_id, event.anonymous_id)
            memo = pairs.get(raw)
            if memo is None:
                found = ids_only(raw[0], raw[1], rules)
                memo = pairs[raw] = (found, edge_key(found) if len(found) > 1 else None)
            identifiers, key = memo
            if not identifiers:
                continue
        parsed.append((event, identifiers, traits))
        ts = event.timestamp
        for identifier in identifiers:
            span = spans.get(identifier)
            if span is None:
                spans[identifier] = (ts, ts)
            elif ts < span[0]:
                spans[identifier] = (ts, span[1])
            elif ts > span[1]:
                spans[identifier] = (span[0], ts)
        if key is not None:
            known = edges.get(key)
            if known is None or (ts, event.message_id) < (known.timestamp, known.message_id):
                edges[key] = Edge(
                    key=key, identifiers=identifiers, timestamp=ts, message_id=event.message_id
                )
    return Scanned(parsed, spans, edges)


class Group(NamedTuple):
    """Stored clusters, identifiers never seen before and new edges that touch each other."""

    clusters: list[str]
    nodes: list[Identifier]
    edges: list[Edge]


def new_edges(scanned: Scanned, view: IdentityView) -> list[Edge]:
    """The batch's edges the store lacks, or holds with a later stamp."""
    stored = view.edges
    return [
        edge
        for key, edge in scanned.edges.items()
        if key not in stored or (edge.timestamp, edge.message_id) < stored[key]
    ]


def groups(
    edges: Iterable[Edge], unknown: Iterable[Identifier], placements: Mapping[Identifier, Placement]
) -> list[Group]:
    """Join new edges, unknown identifiers and the clusters they touch into independent groups,
    in order of first appearance."""
    parent: dict[str | Identifier, str | Identifier] = {}

    def find(token: str | Identifier) -> str | Identifier:
        while (up := parent[token]) != token:
            parent[token] = parent[up]
            token = up
        return token

    def token(identifier: Identifier) -> str | Identifier:
        # A known identifier stands for its whole cluster.
        placement = placements.get(identifier)
        return identifier if placement is None else placement.cluster_id

    for identifier in unknown:
        parent[identifier] = identifier
    edges = list(edges)
    for edge in edges:
        tokens = [token(i) for i in edge.identifiers]
        for t in tokens:
            parent.setdefault(t, t)
        root = find(tokens[0])
        for t in tokens[1:]:
            other = find(t)
            if other != root:
                parent[other] = root
    found: dict[str | Identifier, Group] = {}
    for t in parent:
        group = found.setdefault(find(t), Group([], [], []))
        if isinstance(t, str):
            group.clusters.append(t)
        else:
            group.nodes.append(t)
    for edge in edges:
        found[find(token(edge.identifiers[0]))].edges.append(edge)
    return list(found.values())


def one_new_profile(group: Group, rules: IdentityRules) -> bool:
    """Whether the group is identifiers never seen before, linked by its edges, that no limit
    stops from sharing a profile: a new person's first events (an identify and the tracks
    after it, say), which need no regrouping.

    Replaying the edges could refuse a join only if the cells joined held more values of a type
    than its limit; when all of the group's identifiers together do not, no join is refused,
    and the edges (which connect the group) make one cell of them all."""
    if group.clusters or not group.edges:
        return False
    counts: dict[str, int] = {}
    for kind, _ in group.nodes:
        counts[kind] = counts.get(kind, 0) + 1
    return all(n <= rules.limits.get(kind, n) for kind, n in counts.items())


def within_profiles(group: Group, view: IdentityView) -> bool:
    """Whether each new edge of the group links identifiers that already share a profile.

    Such edges need storing but no regrouping, whatever their stamps: replaying an edge whose
    identifiers all lie in one cell of the final partition, at any point of the replay, only
    joins parts of that cell (which no limit can refuse), after which every later join the
    replay made is still allowed and every refusal still refused; so the replay ends with the
    same cells. This is the common case of a known person showing a new combination of their
    identifiers, or an old event arriving late.
    """
    if group.nodes:
        return False
    placements = view.placements
    for edge in group.edges:
        first = placements[edge.identifiers[0]].profile_id
        if any(placements[i].profile_id != first for i in edge.identifiers[1:]):
            return False
    return True
