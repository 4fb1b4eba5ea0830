"""Audiences: segments (who is in) and computed traits (what we know from their events).

Both are built from the same pieces. An :class:`Aggregate` folds one customer's events of one
name (and condition) into a value: a count, a sum, the last value ... over a time window or all
time. A computed trait is a named aggregate shown among the profile's traits; a segment is a
condition tree whose leaves look at traits, identifiers, consent, other segments and aggregates
(``performed``).

Windows are relative to *now*: an event with timestamp ``ts`` counts in a window of ``w`` ms
while ``now < ts + w``. That is what makes memberships change with time alone; the audience
processor keeps a timer per customer for the next such change.

Times are milliseconds since the epoch, UTC, as everywhere in Safar.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Final, Literal, get_args

import msgspec

AggregateKind = Literal[
    "count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "days_since"
]
AGGREGATE_KINDS: Final = get_args(AggregateKind)
#: Kinds that need a ``value`` path into the event; ``count`` and ``days_since`` do not.
VALUE_KINDS: Final = frozenset({"sum", "avg", "min", "max", "first", "last", "most_frequent"})
#: Kinds whose value must be a number (others ignore events without one).
NUMERIC_KINDS: Final = frozenset({"sum", "avg", "min", "max"})

Op = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "missing"]
OPS: Final = get_args(Op)
#: Operators that take no operand.
UNARY_OPS: Final = frozenset({"exists", "missing"})

DAY_MS: Final = 86_400_000

#: Event names of membership changes, appended to the event log by the audience processor.
SEGMENT_ENTERED: Final = "Segment Entered"
SEGMENT_EXITED: Final = "Segment Exited"


class Aggregate(msgspec.Struct, frozen=True, kw_only=True):
    """One customer's events named ``event`` for which ``where`` (CEL over ``event``) holds,
    folded by ``kind``; ``value`` is the path of the folded value in the event payload (e.g.
    ``properties.revenue``); ``within_ms`` the window, None for all time.

    Events without a usable value (missing, or not a number for numeric kinds) are left out of
    value kinds; ``count`` and ``days_since`` count every matching event.
    """

    event: str
    kind: AggregateKind = "count"
    where: str | None = None
    value: str | None = None
    within_ms: int | None = None

    @property
    def key(self) -> str:
        """A stable name for this aggregate's state: equal aggregates share it, wherever they
        are used (a computed trait, several segments)."""
        # Remembered: evaluating a segment reads the keys of the computed traits it compares.
        return _aggregate_key(self)


@functools.lru_cache(maxsize=10_000)
def _aggregate_key(aggregate: Aggregate) -> str:
    """:attr:`Aggregate.key`, remembered per aggregate (drafts previewed add their own)."""
    encoded = msgspec.json.encode(
        [aggregate.event, aggregate.kind, aggregate.where, aggregate.value, aggregate.within_ms]
    )
    return "ag_" + hashlib.blake2b(encoded, digest_size=10).hexdigest()


# -- Segment conditions ---------------------------------------------------------------------


class TraitCondition(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="trait"):
    """A profile trait (computed traits included) compared with ``value`` by ``op``.

    Comparisons of different types (a text with a number) are false; ``ne`` and ``not_in`` are
    true for a missing trait. ``contains`` holds for a list holding the value or a text holding
    it as a substring.
    """

    trait: str
    op: Op = "eq"
    value: Any = None
    line: int = 0


class IdentifierCondition(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="identifier"
):
    """The customer has an identifier of this type (``email``, ``phone``, ``user_id`` ...)."""

    type: str
    line: int = 0


class ConsentCondition(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="consent"):
    """The customer's choice for (channel, category): ``subscribed`` true means they opted in
    (an explicit choice), false that they opted out; customers who never chose match neither."""

    channel: str
    category: str = "marketing"
    subscribed: bool = True
    line: int = 0


class MemberCondition(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="member"):
    """The customer is a member of another segment."""

    segment: str
    line: int = 0


class PerformedCondition(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="performed"
):
    """How often the customer did something: the count of ``aggregate`` (a ``count``) compared
    by ``op`` (``gte`` for "at least", ``lte`` for "at most", ``eq`` for "exactly") with
    ``times``. "Did not do X in 60 days" is ``lte 0``."""

    aggregate: Aggregate
    op: Literal["gte", "lte", "eq"] = "gte"
    times: int = 1
    line: int = 0


class ProfileCondition(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="profile"):
    """A CEL condition over ``profile`` (``traits``, ``identifiers``, ``segments``) and
    ``now``, for what the structured leaves do not say."""

    where: str
    line: int = 0


class AllOf(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="all"):
    conditions: tuple[Condition, ...]
    line: int = 0


class AnyOf(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="any"):
    conditions: tuple[Condition, ...]
    line: int = 0


class Not(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="not"):
    condition: Condition
    line: int = 0


Condition = (
    TraitCondition
    | IdentifierCondition
    | ConsentCondition
    | MemberCondition
    | PerformedCondition
    | ProfileCondition
    | AllOf
    | AnyOf
    | Not
)


class Segment(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="segment"):
    """Who is in an audience: the customers for whom ``where`` holds, now."""

    id: str
    name: str
    where: Condition
    description: str | None = None
    #: Where to send this segment's entries and exits (a signed webhook), if anywhere.
    webhook: str | None = None
    origin: str | None = None


class ComputedTrait(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="computed_trait"
):
    """A trait computed from events: ``aggregate``'s value, shown as trait ``id``."""

    id: str
    aggregate: Aggregate
    name: str | None = None
    description: str | None = None
    origin: str | None = None


Definition = Segment | ComputedTrait
Status = Literal["draft", "published", "archived"]


class AudienceVersion(msgspec.Struct, kw_only=True):
    """One stored version of a segment or computed trait, with its lifecycle status.

    Only ``published`` versions are live (the newest published one per id); ``archived`` ones
    are kept for history. Kinds share one id space so a trait and a segment never collide in
    ``profile.traits`` / ``profile.segments`` confusingly.
    """

    id: str
    version: int
    kind: Literal["segment", "computed_trait"]
    status: Status
    definition: Definition
    created_at: int
    published_at: int | None = None


# -- Per-customer state ---------------------------------------------------------------------


class Fold(msgspec.Struct, kw_only=True, array_like=True):
    """One aggregate's state for one identifier (events attributed to it).

    Windowed aggregates keep their ``entries`` (timestamp, seq, value) still inside the window,
    so that expiring them needs no history; all-time ones keep a summary: ``n`` events,
    ``total`` of values, ``low``/``high`` values, ``first``/``last`` as (timestamp, seq, value),
    ``counts`` of each value (JSON-encoded) for ``most_frequent``.
    """

    entries: list[tuple[int, int, Any]] = msgspec.field(default_factory=list)
    n: int = 0
    total: float = 0
    low: Any = None
    high: Any = None
    first: tuple[int, int, Any] | None = None
    last: tuple[int, int, Any] | None = None
    counts: dict[str, int] = msgspec.field(default_factory=dict)


class Membership(msgspec.Struct, kw_only=True):
    """A customer's segments, as the audience processor last evaluated them.

    ``segments`` maps segment id to when they entered; ``identifier`` finds their current
    profile (after merges); ``wake_at`` is when a window changes something, or None.
    """

    profile_id: str
    identifier: tuple[str, str]
    segments: dict[str, int] = msgspec.field(default_factory=dict)
    wake_at: int | None = None
    evaluated_at: int = 0
