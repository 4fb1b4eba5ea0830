"""Which identifiers belong to the same person: the partition of a cluster into profiles.

Every event that carries two or more identifiers links them: an *edge*. Linking respects the merge
rules (like Segment Unify): a profile may hold at most ``limits[type]`` values of a type (by
default one ``user_id``), and a link that would break a limit is refused, never done silently.

Greedy linking in arrival order would make the result depend on arrival order: with
``E1 = {anonymous a, user u1}`` and ``E2 = {anonymous a, user u2}``, whichever came first would get
``a``. So the result is defined as a pure function of the *set* of events instead: the distinct
edges (one per distinct identifier set, stamped with the earliest ``(timestamp, message_id)``
that carried it) are replayed in stamp order, and each edge greedily joins the cells of its
identifiers, highest priority first, refusing a join that would exceed a limit. The same edges in
any order give the same cells, refusals and links.

Within an edge, the cell of its highest-priority identifier absorbs the others one at a time in
priority order; a refused identifier stays in its own cell (and may still be joined by a later
edge). Cells only ever grow, and a union's per-type counts only grow with its parts, so two cells
refused once stay apart for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from safar.core.identity import IdentityRules
from safar.model.profiles import Edge, Identifier


class Link(NamedTuple):
    """Edge ``(timestamp, message_id)`` joined the cell of ``kept`` with the cell of ``joined``."""

    timestamp: int
    message_id: str
    kept: Identifier
    joined: Identifier


class Refusal(NamedTuple):
    """Joining the cells of ``kept`` and ``refused`` would give a cell more than ``limit``
    values of ``kind``."""

    timestamp: int
    message_id: str
    kept: Identifier
    refused: Identifier
    kind: str
    limit: int


class Partition(NamedTuple):
    """The cells (each in priority order; cells ordered by their smallest identifier) and what
    the replay did, in replay order."""

    cells: list[tuple[Identifier, ...]]
    links: list[Link]
    refusals: list[Refusal]


def partition(
    nodes: Iterable[Identifier], edges: Iterable[Edge], rules: IdentityRules
) -> Partition:
    """Replay ``edges`` in stamp order over ``nodes`` (every identifier edges mention is added)."""
    limits = rules.limits
    parent: dict[Identifier, Identifier] = {}
    size: dict[Identifier, int] = {}
    # Per cell root, how many values of each *limited* type the cell holds.
    counts: dict[Identifier, dict[str, int]] = {}

    def add(node: Identifier) -> None:
        if node not in parent:
            parent[node] = node
            size[node] = 1
            counts[node] = {node[0]: 1} if node[0] in limits else {}

    def find(node: Identifier) -> Identifier:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node in nodes:
        add(node)
    links: list[Link] = []
    refusals: list[Refusal] = []
    for edge in sorted(edges, key=lambda e: (e.timestamp, e.message_id, e.key)):
        ordered = sorted(edge.identifiers, key=rules.sort_key)
        for node in ordered:
            add(node)
        head = ordered[0]
        root = find(head)
        for node in ordered[1:]:
            other = find(node)
            if other == root:
                continue
            broken = _broken_limit(counts[root], counts[other], limits)
            if broken is not None:
                kind, limit = broken
                refusals.append(Refusal(edge.timestamp, edge.message_id, head, node, kind, limit))
                continue
            if size[root] < size[other]:
                root, other = other, root
            parent[other] = root
            size[root] += size.pop(other)
            merged = counts[root]
            for kind, n in counts.pop(other).items():
                merged[kind] = merged.get(kind, 0) + n
            links.append(Link(edge.timestamp, edge.message_id, head, node))
    cells: dict[Identifier, list[Identifier]] = {}
    for node in parent:
        cells.setdefault(find(node), []).append(node)
    ordered_cells = [tuple(sorted(cell, key=rules.sort_key)) for cell in cells.values()]
    ordered_cells.sort(key=min)
    return Partition(ordered_cells, links, refusals)


def _broken_limit(
    a: dict[str, int], b: dict[str, int], limits: dict[str, int]
) -> tuple[str, int] | None:
    """The first limited type (by name) that joining cells with these counts would exceed."""
    for kind in sorted(b):
        limit = limits[kind]
        if a.get(kind, 0) + b[kind] > limit:
            return kind, limit
    return None
