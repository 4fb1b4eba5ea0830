"""Audiences recomputed from the stored events: every customer's whole history, read from the
profile store (who) and the event log (what they did).

This is the slow, obviously correct path: previews of draft segments, checks of the live
audiences (``safar segments check``), and the reference the incremental processor is tested
against. It reads each customer's timeline, so its cost grows with the whole history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from safar.core.recompute import History, HistoryEvent, Recompute, Result
from safar.core.segments import Compile
from safar.model.audiences import ComputedTrait, Segment
from safar.model.messages import Consent
from safar.model.profiles import Profile
from safar.ports import DeliveryStore, EventLog, ProfileReader
from safar.runtime.audiences import audience_compile

#: Customers read per page.
PAGE = 500
#: Timeline entries read per query.
TIMELINE_PAGE = 10_000


def histories(
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None = None,
    *,
    page: int = PAGE,
) -> Iterator[History]:
    """Every customer with their events (oldest first) and, when ``delivery`` is given, their
    consent choices (under merged-away profile ids too)."""
    after = ""
    while found := profiles.scan(after, page):
        seqs: dict[str, list[int]] = {}
        for profile in found:
            seqs[profile.id] = _timeline(profiles, profile.id)
        wanted = {seq for listed in seqs.values() for seq in listed}
        by_seq = {event.seq: event for event in events.get(wanted)} if wanted else {}
        consents: dict[str, list[Consent]] = {}
        if delivery is not None:
            ids = {pid for p in found for pid in (p.id, *p.merged_from)}
            for choice in delivery.consents(ids):
                consents.setdefault(choice.profile_id, []).append(choice)
        for profile in found:
            history = [
                HistoryEvent(e.name, e.timestamp, e.seq, e.payload())
                for seq in sorted(seqs[profile.id])
                if (e := by_seq.get(seq)) is not None
            ]
            choices = [
                c for pid in (profile.id, *profile.merged_from) for c in consents.get(pid, [])
            ]
            yield History(profile, history, choices)
        after = found[-1].id


def _timeline(profiles: ProfileReader, profile_id: str) -> list[int]:
    found: list[int] = []
    before: int | None = None
    while True:
        chunk = profiles.timeline(profile_id, TIMELINE_PAGE, before)
        found.extend(chunk)
        if len(chunk) < TIMELINE_PAGE:
            return found
        before = chunk[-1]


def evaluate(
    segments: Sequence[Segment],
    traits: Sequence[ComputedTrait],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    now: int,
    *,
    limit: int | None = None,
    compile: Compile = audience_compile,
) -> Iterator[tuple[Profile, Result]]:
    """Each customer (the first ``limit``, all when None) with their segments (members
    first) and computed traits at ``now``, from scratch."""
    engine = Recompute(segments, traits, compile)
    page = PAGE if limit is None else max(1, min(PAGE, limit))
    found = histories(profiles, events, delivery, page=page)
    for history in itertools.islice(found, limit):
        yield history.profile, engine.customer(history, now)


def recompute(
    segments: Sequence[Segment],
    traits: Sequence[ComputedTrait],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    now: int,
    *,
    compile: Compile = audience_compile,
) -> dict[str, Result]:
    """Profile id -> their segments and computed traits at ``now``, from scratch."""
    found = evaluate(segments, traits, profiles, events, delivery, now, compile=compile)
    return {profile.id: result for profile, result in found}
