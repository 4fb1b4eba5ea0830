"""Previews of draft audiences answered with SQL over a kept warehouse (ADR 13).

What a preview shows is what the direct recompute (:mod:`safar.runtime.batch`) would find over
every customer; the SQL recompute (:mod:`safar.runtime.segment_sql`) gets the same answers in
a fraction of the time. It gives the figures: a segment's size and its first members by profile
id, a computed trait's count, least and greatest numbers, most common texts and first values.
The sampled members' profiles, with every segment and computed trait they are in, are then
evaluated directly (:func:`member_results`): a hundred customers at most, and exactly the
documents the direct path shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from safar.core.recompute import History, HistoryEvent, Recompute, Result
from safar.model.audiences import ComputedTrait, Segment
from safar.model.messages import Consent
from safar.model.profiles import Identifier, Profile
from safar.ports import DeliveryStore, EventLog, ProfileReader
from safar.runtime.audiences import audience_compile
from safar.runtime.segment_sql import SqlAudiences, empty_value
from safar.runtime.warehouse import Warehouse

#: JSON types :func:`safar.core.aggregates.is_number` accepts (JSON has no NaN or infinity).
_NUMBERS: Final = "('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT')"
#: Timeline entries read per query.
_TIMELINE_PAGE: Final = 10_000
_decode = msgspec.json.decode
_decode_identifiers = msgspec.json.Decoder(dict[str, list[str]]).decode


@dataclass(frozen=True)
class SegmentFigures:
    """A draft segment over every customer: how many are in, and the first members by
    profile id, each with an identifier to find them by."""

    evaluated: int
    size: int
    sample: list[tuple[str, Identifier]]


@dataclass(frozen=True)
class TraitFigures:
    """A draft computed trait over every customer: how many have a value, the least and
    greatest numbers, the most common texts with their counts, and the first customers with
    a value (profile id, identifiers, value)."""

    evaluated: int
    count: int
    minimum: Any
    maximum: Any
    top: list[tuple[str, int]]
    sample: list[tuple[str, dict[str, list[str]], Any]]


def segment_figures(
    warehouse: Warehouse,
    segments: Sequence[Segment],
    traits: Sequence[ComputedTrait],
    segment_id: str,
    now: int,
    sample: int,
) -> SegmentFigures:
    """The segment ``segment_id``, one of ``segments`` (members first), at ``now``."""
    sql = SqlAudiences(warehouse, segments, traits)
    try:
        members = sql.segment_table(segment_id, now)
        size = int(warehouse.scalar(f"SELECT count(*) FROM {members}"))
        rows = warehouse.con.execute(
            f"SELECT p.profile_id, p.identifiers FROM profiles p JOIN {members} m"
            " ON m.profile_id = p.profile_id ORDER BY p.profile_id LIMIT ?",
            [sample],
        ).fetchall()
    finally:
        sql.release()
    shown = [(pid, _any_identifier(_decode_identifiers(ids))) for pid, ids in rows]
    return SegmentFigures(warehouse.profile_count(), size, shown)


def trait_figures(
    warehouse: Warehouse, trait: ComputedTrait, now: int, sample: int, top: int
) -> TraitFigures:
    """The computed trait at ``now``: its figures over every customer, ties (3 and 3.0, two
    texts as common) settled as a walk through the customers by profile id would."""
    sql = SqlAudiences(warehouse, [], [trait])
    values = warehouse.new_name("safar_values")
    empty = msgspec.json.encode(empty_value(trait.aggregate)).decode()
    con = warehouse.con
    try:
        aggregate = sql.trait_table(trait.id, now)
        con.execute(
            f"CREATE TEMP TABLE {values} AS SELECT pid, ids, j, json_type(j) AS kind FROM"
            f" (SELECT p.profile_id AS pid, p.identifiers AS ids, coalesce(a.j, ?) AS j"
            f" FROM profiles p LEFT JOIN {aggregate} a ON a.pid = p.profile_id)"
            " WHERE j IS NOT NULL AND json_type(j) <> 'NULL'",
            [None if empty == "null" else empty],
        )
        count = int(warehouse.scalar(f"SELECT count(*) FROM {values}"))
        numbers = f"SELECT j FROM {values} WHERE kind IN {_NUMBERS} ORDER BY CAST(j AS DOUBLE)"
        least = warehouse.scalar(f"{numbers}, pid LIMIT 1")
        greatest = warehouse.scalar(f"{numbers} DESC, pid LIMIT 1")
        texts = con.execute(
            f"SELECT json_extract_string(j, '$') AS text, count(*) AS c FROM {values}"
            " WHERE kind = 'VARCHAR' GROUP BY text ORDER BY c DESC, text LIMIT ?",
            [top],
        ).fetchall()
        first = con.execute(
            f"SELECT pid, ids, j FROM {values} ORDER BY pid LIMIT ?", [sample]
        ).fetchall()
    finally:
        con.execute(f"DROP TABLE IF EXISTS {values}")
        sql.release()
    return TraitFigures(
        evaluated=warehouse.profile_count(),
        count=count,
        minimum=None if least is None else _decode(least),
        maximum=None if greatest is None else _decode(greatest),
        top=[(text, int(c)) for text, c in texts],
        sample=[(pid, _decode_identifiers(ids), _decode(j)) for pid, ids, j in first],
    )


def member_results(
    members: Iterable[tuple[str, Identifier]],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    segments: Sequence[Segment],
    traits: Sequence[ComputedTrait],
    now: int,
) -> list[tuple[Profile, Result]]:
    """These customers (profile id, an identifier they hold) with every segment and computed
    trait, evaluated directly from their stored histories. A customer whose identifier now
    belongs to another profile (merged since the warehouse was brought up to date) is left
    out."""
    wanted = list(members)
    found = profiles.find_many({identifier for _, identifier in wanted})
    current = [
        profile
        for pid, identifier in wanted
        if (profile := found.get(identifier)) is not None and profile.id == pid
    ]
    engine = Recompute(segments, traits, audience_compile)
    return [
        (history.profile, engine.customer(history, now))
        for history in _histories(current, profiles, events, delivery)
    ]


def _histories(
    found: Sequence[Profile],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
) -> list[History]:
    """As :func:`safar.runtime.batch.histories` reads them, for these profiles."""
    seqs = {profile.id: _timeline(profiles, profile.id) for profile in found}
    wanted = {seq for listed in seqs.values() for seq in listed}
    by_seq = {event.seq: event for event in events.get(wanted)} if wanted else {}
    consents: dict[str, list[Consent]] = {}
    if delivery is not None and found:
        ids = {pid for p in found for pid in (p.id, *p.merged_from)}
        for choice in delivery.consents(ids):
            consents.setdefault(choice.profile_id, []).append(choice)
    histories = []
    for profile in found:
        history = [
            HistoryEvent(e.name, e.timestamp, e.seq, e.payload())
            for seq in sorted(seqs[profile.id])
            if (e := by_seq.get(seq)) is not None
        ]
        choices = [c for pid in (profile.id, *profile.merged_from) for c in consents.get(pid, [])]
        histories.append(History(profile, history, choices))
    return histories


def _timeline(profiles: ProfileReader, profile_id: str) -> list[int]:
    found: list[int] = []
    before: int | None = None
    while True:
        chunk = profiles.timeline(profile_id, _TIMELINE_PAGE, before)
        found.extend(chunk)
        if len(chunk) < _TIMELINE_PAGE:
            return found
        before = chunk[-1]


def _any_identifier(identifiers: dict[str, list[str]]) -> Identifier:
    kind = next(kind for kind, values in identifiers.items() if values)
    return kind, identifiers[kind][0]
