"""Profiles: one per person, joined from every identifier they were seen with."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from safar.model.leases import Fence

#: Identifier types Safar always knows. External id types (e.g. ``crm_id``) are configured.
USER_ID: Final = "user_id"
ANONYMOUS_ID: Final = "anonymous_id"
EMAIL: Final = "email"
PHONE: Final = "phone"
BUILTIN_IDENTIFIER_TYPES: Final = (USER_ID, EMAIL, PHONE, ANONYMOUS_ID)

#: An identifier is a (type, value) pair, e.g. ("email", "sara@example.com"). Values are normalized.
Identifier = tuple[str, str]


def ref(identifier: Identifier) -> str:
    """The ``type:value`` form used in URLs and the CLI, e.g. ``user_id:42``."""
    return f"{identifier[0]}:{identifier[1]}"


def parse_ref(text: str) -> Identifier:
    """Split ``type:value`` (the value may itself contain ``:``). Raises ValueError if malformed."""
    kind, sep, value = text.partition(":")
    if not sep or not kind or not value:
        raise ValueError(f"expected TYPE:VALUE such as user_id:42, got {text!r}")
    return kind, value


class Profile(msgspec.Struct, kw_only=True):
    """The current, unified view of one person."""

    id: str
    identifiers: dict[str, list[str]]
    traits: dict[str, Any]
    first_seen: int
    last_seen: int
    merged_from: list[str] = msgspec.field(default_factory=list)
    #: Ids of the segments the customer is in (filled in when audiences are read with it).
    segments: list[str] = msgspec.field(default_factory=list)


class TraitChange(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a profile's trait history."""

    key: str
    value: Any
    timestamp: int
    message_id: str
    seq: int


class MergeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A merge done, a move of identifiers, or a merge refused.

    ``refused`` records carry the rule that stopped them in ``reason``.
    """

    into: str
    other: str
    reason: str
    refused: bool
    message_id: str
    at: int


# -- The profile processor's state, as the profile store keeps it -------------------------------
#
# These types cross the ProfileStore port. Users of profiles need only the types above.
# ``gc=False`` on types holding only strings, ints and tuples of them (no cycles possible): the
# processor keeps about a million of them, and every full garbage collection would walk them.


class StampedValue(msgspec.Struct, frozen=True, array_like=True):
    """A trait value with the ``(timestamp, message_id)`` of the write that set it."""

    value: Any
    timestamp: int
    message_id: str


class Placement(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Where an identifier belongs: its profile and its cluster.

    A cluster is a connected component of identifiers linked by events, ignoring merge limits; it
    holds one or more profiles and only ever grows.
    """

    profile_id: str
    cluster_id: str


class Edge(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A distinct set of identifiers seen together in one event, with the earliest
    ``(timestamp, message_id)`` that carried it. ``key`` names the set (see
    :func:`safar.core.identity.edge_key`); ``identifiers`` are in priority order."""

    key: str
    identifiers: tuple[Identifier, ...]
    timestamp: int
    message_id: str


class ProfileState(msgspec.Struct, kw_only=True):
    """A profile's stored state, minus its identifiers: traits with their stamps."""

    id: str
    traits: dict[str, StampedValue] = msgspec.field(default_factory=dict)
    merged_from: list[str] = msgspec.field(default_factory=list)


class Cluster(msgspec.Struct, kw_only=True):
    """One cluster: every identifier in it with its profile id, and every edge linking them."""

    id: str
    members: dict[Identifier, str]
    edges: list[Edge]


class TraitWrite(msgspec.Struct, frozen=True, kw_only=True):
    """One trait set by one event, filed under the identifier the event is attributed to."""

    identifier: Identifier
    key: str
    value: Any
    timestamp: int
    message_id: str
    seq: int


class IdentityView(msgspec.Struct, kw_only=True):
    """What :meth:`safar.ports.ProfileStore.load` found: known identifiers and known edges."""

    placements: dict[Identifier, Placement]
    #: Edge key -> the stored edge's ``(timestamp, message_id)``.
    edges: dict[str, tuple[int, str]]


class ClusterView(msgspec.Struct, kw_only=True):
    """What :meth:`safar.ports.ProfileStore.load_clusters` found."""

    clusters: dict[str, Cluster]
    #: The state of every profile asked for and of every profile in the clusters asked for.
    profiles: dict[str, ProfileState]


class ProfileUpdate(msgspec.Struct, kw_only=True):
    """Everything one batch of events changes, applied by the store in one transaction."""

    #: The ``processed_seq`` this update was computed from; the store refuses it otherwise.
    after_seq: int
    #: The new ``processed_seq``.
    processed_seq: int
    #: New identifiers and identifiers that moved to another profile or cluster.
    placements: dict[Identifier, Placement] = msgspec.field(default_factory=dict)
    #: Identifier -> (earliest, latest) event timestamp in this batch; widens what is stored.
    seen: dict[Identifier, tuple[int, int]] = msgspec.field(default_factory=dict)
    #: Edges to insert or overwrite, with the cluster each belongs to.
    edges: list[tuple[str, Edge]] = msgspec.field(default_factory=list)
    #: Profiles created or changed (traits, merged_from): stored as given.
    profiles: list[ProfileState] = msgspec.field(default_factory=list)
    #: Profiles merged away; none of their identifiers still points at them.
    deleted_profiles: list[str] = msgspec.field(default_factory=list)
    #: (identifier the event is attributed to, seq): one row per event.
    timeline: list[tuple[Identifier, int]] = msgspec.field(default_factory=list)
    trait_writes: list[TraitWrite] = msgspec.field(default_factory=list)
    #: Merges done, moves, and refusals. One already stored (same into, other, message_id and
    #: refused) is skipped.
    merges: list[MergeRecord] = msgspec.field(default_factory=list)
    #: The lease this batch was computed under; the store refuses it once the lease moved on.
    fence: Fence | None = None
