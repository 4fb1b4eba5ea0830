"""``safar bench audiences``: recomputing segments over millions of events, and what keeping
them current costs per event.

**Recompute** (default 1M profiles, 10M events over a year, generated straight into the DuckDB
warehouse): each of ten representative segments is recomputed by Safar's SQL compiler
(:mod:`safar.runtime.segment_sql`), timed from nothing (its aggregates included), and the same
question written by hand as one DuckDB query over the same tables is timed beside it: the
floor. Both must give the same size.

**Incremental** (default 20k profiles, 200k events, the real SQLite stores): the events are
appended and folded into profiles, then the audience processor runs over them twice on copies
of the state, with no definitions (its fixed cost: reading events, the cursor) and with 50
live segments and 20 computed traits. The difference per event is the overhead of keeping
audiences current; beside it, the profile processor's own cost per event on the same events.

**Preview** (default 50k customers, 500k shop events over 90 days with anonymous visitors
merged into known customers, the real SQLite stores, a few live segments and computed traits):
a draft segment and a draft computed trait are previewed the direct way (every customer's
history read and evaluated: the baseline) and with SQL over the kept warehouse: first when it
is built, then when nothing changed, then after new events and merges. The answers must be the
same documents.

Numbers are reported, never asserted.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from safar.model.audiences import DAY_MS, ComputedTrait, Segment

NOW: Final = 1_795_000_000_000
EVENT_NAMES: Final = (
    ("Page Viewed", 50),
    ("Product Viewed", 25),
    ("Product Added", 10),
    ("Order Completed", 8),
    ("Ticket Updated", 2),
    ("Email Opened", 5),
)
CATEGORIES: Final = ("shoes", "bags", "hats", "toys", "books", "food")

#: Computed traits the recompute segments read.
RECOMPUTE_TRAITS: Final = (
    "{id: revenue_365d, compute: {event: Order Completed, kind: sum, value: properties.revenue,"
    " within: 365d}}",
    "{id: last_ticket_status, compute: {event: Ticket Updated, kind: last,"
    " value: properties.status}}",
    "{id: favourite_category, compute: {event: Product Viewed, kind: most_frequent,"
    " value: properties.category, within: 90d}}",
)
#: (name, segment, the same question in hand-written DuckDB SQL over the warehouse tables).
RECOMPUTE_SEGMENTS: Final = (
    (
        "repeat buyers, 30d window",
        "{id: repeat-buyers, name: R, where: {performed: Order Completed, at_least: 2,"
        " within: 30d, where: event.properties.revenue > 100}}",
        "SELECT count(*) FROM (SELECT i.profile_id FROM events e JOIN idents i USING (ident)"
        " WHERE e.name = 'Order Completed' AND e.ts > {now} - 30 * {day}"
        " AND CAST(json_extract(e.payload, '$.properties.revenue') AS DOUBLE) > 100"
        " GROUP BY 1 HAVING count(*) >= 2)",
    ),
    (
        "lapsed VIPs (trait, no order in 60d)",
        "{id: lapsed-vip, name: L, where: {all: [{trait: vip, eq: true},"
        " {not: {performed: Order Completed, within: 60d}}]}}",
        "SELECT count(*) FROM profiles p WHERE json_extract(p.traits, '$.vip') = 'true'"
        " AND p.profile_id NOT IN (SELECT i.profile_id FROM events e JOIN idents i USING (ident)"
        " WHERE e.name = 'Order Completed' AND e.ts > {now} - 60 * {day})",
    ),
    (
        "never ordered (all time)",
        "{id: never-ordered, name: N, where: {performed: Order Completed, at_most: 0}}",
        "SELECT count(*) FROM profiles p WHERE p.profile_id NOT IN (SELECT i.profile_id"
        " FROM events e JOIN idents i USING (ident) WHERE e.name = 'Order Completed')",
    ),
    (
        "cart abandoners, 7d",
        "{id: cart-abandoners, name: C, where: {all: [{performed: Product Added, within: 7d},"
        " {not: {performed: Order Completed, within: 7d}}]}}",
        "SELECT count(*) FROM (SELECT DISTINCT i.profile_id FROM events e JOIN idents i"
        " USING (ident) WHERE e.name = 'Product Added' AND e.ts > {now} - 7 * {day}) a"
        " WHERE a.profile_id NOT IN (SELECT i.profile_id FROM events e JOIN idents i"
        " USING (ident) WHERE e.name = 'Order Completed' AND e.ts > {now} - 7 * {day})",
    ),
    (
        "big spenders (computed sum, 365d)",
        "{id: big-spenders, name: B, where: {trait: revenue_365d, gte: 1000}}",
        "SELECT count(*) FROM (SELECT i.profile_id FROM events e JOIN idents i USING (ident)"
        " WHERE e.name = 'Order Completed' AND e.ts > {now} - 365 * {day}"
        " GROUP BY 1 HAVING sum(CAST(json_extract(e.payload, '$.properties.revenue')"
        " AS DOUBLE)) >= 1000)",
    ),
    (
        "pro plan in IR or AE (traits)",
        "{id: pro-mena, name: P, where: {all: [{trait: plan, eq: pro},"
        " {trait: country, in: [IR, AE]}]}}",
        "SELECT count(*) FROM profiles p WHERE json_extract_string(p.traits, '$.plan') = 'pro'"
        " AND json_extract_string(p.traits, '$.country') IN ('IR', 'AE')",
    ),
    (
        "open ticket (computed last value)",
        "{id: open-ticket, name: O, where: {trait: last_ticket_status, in: [open, pending]}}",
        "SELECT count(*) FROM (SELECT i.profile_id, arg_max(json_extract_string(e.payload,"
        " '$.properties.status'), {{'t': e.ts, 's': e.seq}}) AS s FROM events e JOIN idents i"
        " USING (ident) WHERE e.name = 'Ticket Updated' GROUP BY 1) WHERE s IN ('open', 'pending')",
    ),
    (
        "active browsers, 1d",
        "{id: active-browsers, name: A, where: {performed: Page Viewed, at_least: 2, within: 1d}}",
        "SELECT count(*) FROM (SELECT i.profile_id FROM events e JOIN idents i USING (ident)"
        " WHERE e.name = 'Page Viewed' AND e.ts > {now} - {day} GROUP BY 1 HAVING count(*) >= 2)",
    ),
    (
        "shoe fans (most frequent, 90d)",
        "{id: shoe-fans, name: S, where: {trait: favourite_category, eq: shoes}}",
        "SELECT count(*) FROM (SELECT profile_id, arg_min(c, {{'n': -n, 'c': c}}) AS top FROM"
        " (SELECT i.profile_id, json_extract(e.payload, '$.properties.category')::VARCHAR AS c,"
        " count(*) AS n FROM events e JOIN idents i USING (ident) WHERE e.name = 'Product Viewed'"
        " AND e.ts > {now} - 90 * {day} GROUP BY 1, 2) GROUP BY 1) WHERE top = '\"shoes\"'",
    ),
    (
        "reachable big spenders (identifier, member)",
        "{id: reachable-spenders, name: E, where: {all: [{identifier: email},"
        " {member: big-spenders}]}}",
        "SELECT count(*) FROM profiles p WHERE json_array_length(json_extract(p.identifiers,"
        " '$.email')) > 0 AND p.profile_id IN (SELECT i.profile_id FROM events e JOIN idents i"
        " USING (ident) WHERE e.name = 'Order Completed' AND e.ts > {now} - 365 * {day}"
        " GROUP BY 1 HAVING sum(CAST(json_extract(e.payload, '$.properties.revenue')"
        " AS DOUBLE)) >= 1000)",
    ),
)


@dataclass
class SegmentTiming:
    name: str
    size: int
    seconds: float
    floor_size: int
    floor_seconds: float


@dataclass
class RecomputeResult:
    profiles: int
    events: int
    generate_seconds: float
    timings: list[SegmentTiming] = field(default_factory=list)
    rss_mb: float = 0.0


@dataclass
class IncrementalResult:
    profiles: int
    events: int
    segments: int
    traits: int
    profile_us: float
    empty_us: float
    audience_us: float
    memberships: int
    fold_rows: int
    #: The same definitions over event names the stream never has.
    unread_us: float = 0.0
    #: Copying the SQLite log and profiles into the DuckDB warehouse, per second.
    sync_events_per_s: float = 0.0
    load_profiles_per_s: float = 0.0

    @property
    def overhead_us(self) -> float:
        return self.audience_us - self.empty_us


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _parse(text: str) -> Any:
    from safar.definitions import parse_audience

    return parse_audience(text)


# -- recompute ----------------------------------------------------------------------------------


def generate(con: Any, profiles: int, events: int) -> None:
    """Fill the warehouse tables with ``profiles`` customers and ``events`` events over the
    year before :data:`NOW`, deterministically (hashes of row numbers)."""
    names = " ".join(
        f"WHEN kind < {sum(w for _, w in EVENT_NAMES[: n + 1])} THEN '{name}'"
        for n, (name, _) in enumerate(EVENT_NAMES[:-1])
    )
    categories = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    con.execute(
        "INSERT INTO profiles SELECT printf('p%08d', i), json_object("
        "'vip', hash(i, 1) % 10 = 0, 'plan', CASE WHEN hash(i, 2) % 4 = 0 THEN 'pro' ELSE"
        " 'free' END, 'country', ['IR', 'AE', 'CN', 'US', 'DE'][1 + (hash(i, 3) % 5)::BIGINT]"
        ")::VARCHAR, json_object('user_id', [printf('u%d', i)], 'email', CASE WHEN"
        " hash(i, 4) % 5 = 0 THEN []::VARCHAR[] ELSE [printf('u%d@example.com', i)] END)::VARCHAR"
        f" FROM range({profiles}) t(i)"
    )
    con.execute(
        f"INSERT INTO idents SELECT printf('user_id:u%d', i), printf('p%08d', i)"
        f" FROM range({profiles}) t(i)"
    )
    con.execute(
        "INSERT INTO events WITH base AS (SELECT i AS seq,"
        f" (hash(i, 11) % {profiles})::BIGINT AS who, (hash(i, 12) % 100)::BIGINT AS kind,"
        f" (hash(i, 13) % {365 * DAY_MS})::BIGINT AS age,"
        " (hash(i, 14) % 300)::BIGINT AS revenue, (hash(i, 15) % 6)::BIGINT AS cat,"
        f" (hash(i, 16) % 3)::BIGINT AS status FROM range(1, {events} + 1) t(i)),"
        f" named AS (SELECT *, CASE {names} ELSE '{EVENT_NAMES[-1][0]}' END AS name FROM base)"
        f" SELECT seq, 'user_id:u' || who, name, {NOW} - age, json_object('type', 'track',"
        " 'event', name, 'userId', 'u' || who, 'properties', json_object('revenue', revenue,"
        f" 'category', {categories}[1 + cat], 'status', ['open', 'pending', 'resolved']"
        "[1 + status]))::VARCHAR FROM named"
    )


def run_recompute(profiles: int = 1_000_000, events: int = 10_000_000) -> RecomputeResult:
    from safar.runtime.segment_sql import SqlAudiences
    from safar.runtime.warehouse import Warehouse

    traits: list[ComputedTrait] = [_parse(text) for text in RECOMPUTE_TRAITS]
    segments: list[Segment] = [_parse(text) for _, text, _ in RECOMPUTE_SEGMENTS]
    by_id = {s.id: s for s in segments}
    with Warehouse() as warehouse:
        started = time.perf_counter()
        generate(warehouse.con, profiles, events)
        result = RecomputeResult(profiles, events, time.perf_counter() - started)
        for (name, _, floor), segment in zip(RECOMPUTE_SEGMENTS, segments, strict=True):
            needed = [by_id[m] for m in _members(segment, by_id)] + [segment]
            sql = SqlAudiences(warehouse, needed, traits)
            started = time.perf_counter()
            size = sql.sizes(NOW)[segment.id]
            seconds = time.perf_counter() - started
            query = floor.replace("{now}", str(NOW)).replace("{day}", f"{DAY_MS}::BIGINT")
            query = query.replace("{{", "{").replace("}}", "}")
            started = time.perf_counter()
            row = warehouse.con.execute(query).fetchone()
            floor_seconds = time.perf_counter() - started
            floor_size = int(row[0]) if row else -1
            result.timings.append(SegmentTiming(name, size, seconds, floor_size, floor_seconds))
        result.rss_mb = _rss_mb()
    return result


def _members(segment: Segment, by_id: dict[str, Segment]) -> list[str]:
    from safar.definitions import segment_dependencies

    found: list[str] = []
    for member in sorted(segment_dependencies(segment)):
        found += [m for m in _members(by_id[member], by_id) if m not in found]
        if member not in found:
            found.append(member)
    return found


# -- incremental --------------------------------------------------------------------------------


def live_definitions(segments: int = 50, traits: int = 20, prefix: str = "Event") -> list[Any]:
    """``traits`` computed traits and ``segments`` segments over ten event names
    (``{prefix} 0`` to ``{prefix} 9``), of every aggregate kind and condition kind, as a busy
    installation might have."""
    kinds = ("count", "sum", "last", "most_frequent", "max", "days_since", "avg", "first")
    found: list[Any] = []
    for n in range(traits):
        kind = kinds[n % len(kinds)]
        value = "" if kind in ("count", "days_since") else ", value: properties.value"
        within = "" if n % 3 == 0 else f", within: {(n % 5 + 1) * 7}d"
        compute = f"{{event: {prefix} {n % 10}, kind: {kind}{value}{within}}}"
        found.append(_parse(f"{{id: trait_{n}, compute: {compute}}}"))
    for n in range(segments):
        shape = n % 5
        event = f"{prefix} {n % 10}"
        if shape == 0:
            where = f"{{performed: {event}, at_least: {n % 3 + 1}, within: {n % 4 + 1}d}}"
        elif shape == 1:
            where = (
                f"{{all: [{{trait: tier, eq: gold}}, {{not: {{performed: {event},"
                f" within: {n % 6 + 1}d}}}}]}}"
            )
        elif shape == 2:
            where = f"{{trait: trait_{n % traits}, gte: {n % 4}}}"
        elif shape == 3:
            where = (
                f"{{performed: {event}, at_least: 1, within: 30d,"
                f" where: event.properties.value > {n * 2}}}"
            )
        else:
            where = f"{{any: [{{member: seg-{n - 1}}}, {{identifier: email}}]}}"
        found.append(_parse(f"{{id: seg-{n}, name: Segment {n}, where: {where}}}"))
    return found


def _events(profiles: int, events: int, start: int) -> list[Any]:
    out = []
    for n in range(events):
        who = (n * 7919) % profiles
        name = f"Event {n % 10}"
        timestamp = start + n * 1000
        if n < profiles:
            body: dict[str, Any] = {
                "type": "identify",
                "userId": f"u{n}",
                "traits": {"tier": "gold" if n % 4 == 0 else "silver", "email": f"u{n}@x.io"},
            }
            kind, event_name, user = "identify", None, f"u{n}"
        else:
            body = {
                "type": "track",
                "event": name,
                "userId": f"u{who}",
                "properties": {"value": n % 100},
            }
            kind, event_name, user = "track", name, f"u{who}"
        out.append(_event(n, kind, event_name, user, None, timestamp, body))
    return out


def _event(
    n: int,
    kind: str,
    name: str | None,
    user: str | None,
    anonymous: str | None,
    timestamp: int,
    body: dict[str, Any],
) -> Any:
    """Generated event ``n`` (messageId ``m<n>``), its Segment payload ``body`` completed."""
    from safar.model.events import Event, iso

    body["messageId"] = f"m{n}"
    body["timestamp"] = iso(timestamp)
    return Event(
        source_id="bench",
        message_id=f"m{n}",
        type=kind,
        name=name,
        user_id=user,
        anonymous_id=anonymous,
        timestamp=timestamp,
        received_at=timestamp,
        body=msgspec.json.encode(body),
    )


def run_incremental(
    profiles: int = 20_000, events: int = 200_000, segments: int = 50, traits: int = 20
) -> IncrementalResult:
    from safar.config import Settings
    from safar.core.identity import IdentityRules
    from safar.runtime.audience_catalog import publish
    from safar.runtime.audiences import AudienceProcessor
    from safar.runtime.profiler import ProfileProcessor
    from safar.runtime.serve import server_gc
    from safar.stores.bundle import open_stores
    from safar.testing import FakeClock

    base = Path(tempfile.mkdtemp(prefix="safar-bench-audiences-"))
    try:
        clock = FakeClock(NOW - 30 * DAY_MS)
        settings = Settings(data_dir=str(base / "empty"))
        with open_stores(settings, clock) as stores:
            batch = _events(profiles, events, clock.now_ms())
            for chunk in range(0, len(batch), 5000):
                stores.events.append(batch[chunk : chunk + 5000])
            clock.advance_to(NOW)
            profiler = ProfileProcessor(stores.events, stores.profiles, settings.identity, clock)
            with server_gc():
                started = time.perf_counter()
                while profiler.run_once(20_000):
                    pass
                profile_us = (time.perf_counter() - started) / events * 1e6
        shutil.copytree(base / "empty", base / "full")
        timings: dict[str, float] = {}
        counts = (0, 0)
        sync = (0.0, 0.0)
        shutil.copytree(base / "empty", base / "unread")
        runs: tuple[tuple[str, list[Any]], ...] = (
            ("empty", []),
            ("full", live_definitions(segments, traits)),
            ("unread", live_definitions(segments, traits, prefix="Unseen")),
        )
        for name, definitions in runs:
            with open_stores(Settings(data_dir=str(base / name)), clock) as stores:
                for definition in definitions:
                    publish(stores.audience_catalog, definition, clock.now_ms())
                processor = AudienceProcessor(
                    stores.events,
                    stores.profiles,
                    stores.delivery,
                    stores.audience_catalog,
                    stores.audiences,
                    IdentityRules(settings.identity),
                    clock,
                )
                while processor.run_jobs():  # nothing to fold yet: marks definitions ready
                    pass
                with server_gc():
                    started = time.perf_counter()
                    while processor.run_events(20_000):
                        pass
                    timings[name] = (time.perf_counter() - started) / events * 1e6
                if name == "full":
                    counts = _state_counts(Settings(data_dir=str(base / name)).database_path)
                    sync = _sync_rates(stores, settings)
        return IncrementalResult(
            profiles=profiles,
            events=events,
            segments=segments,
            traits=traits,
            profile_us=profile_us,
            empty_us=timings["empty"],
            audience_us=timings["full"],
            unread_us=timings["unread"],
            memberships=counts[0],
            fold_rows=counts[1],
            sync_events_per_s=sync[0],
            load_profiles_per_s=sync[1],
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _sync_rates(stores: Any, settings: Any) -> tuple[float, float]:
    """Events and profiles copied into a warehouse per second, from these stores."""
    from safar.core.identity import IdentityRules
    from safar.runtime.warehouse import Warehouse

    with Warehouse() as warehouse:
        started = time.perf_counter()
        events = warehouse.sync_events(stores.events, IdentityRules(settings.identity))
        events_rate = events / (time.perf_counter() - started)
        started = time.perf_counter()
        profiles = warehouse.load_profiles(stores.profiles, stores.delivery)
        return events_rate, profiles / (time.perf_counter() - started)


def _state_counts(database: Path) -> tuple[int, int]:
    import sqlite3

    con = sqlite3.connect(database)
    try:
        members = con.execute("SELECT count(*) FROM audience_members").fetchone()[0]
        folds = con.execute("SELECT count(*) FROM audience_folds").fetchone()[0]
        return int(members), int(folds)
    finally:
        con.close()


# -- preview ------------------------------------------------------------------------------------

#: The drafts previewed: the repeat buyers of the recompute part, and 30 days' revenue.
PREVIEW_SEGMENT: Final = RECOMPUTE_SEGMENTS[0][1]
PREVIEW_TRAIT: Final = (
    "{id: revenue_30d, compute: {event: Order Completed, kind: sum, value: properties.revenue,"
    " within: 30d}}"
)
#: Live beside them: the recompute part's computed traits and four of its segments.
PREVIEW_LIVE: Final = (*RECOMPUTE_TRAITS, *(text for _, text, _ in RECOMPUTE_SEGMENTS[1:5]))


#: How many events after an anonymous visit its visitor identifies themselves: past the
#: profile processor's batch more often than not, and past the events a preview run adds.
#: Ends in 5, so that an event ``n % 50 == 25`` links the visit ``n % 10 == 0``.
_LINK_LAG: Final = 3025


@dataclass
class PreviewTiming:
    """One preview: how long it took, and whether it answered as the direct path did."""

    name: str
    seconds: float
    same: bool


@dataclass
class PreviewResult:
    profiles: int
    events: int
    new_events: int
    segment_size: int
    #: Profiles evaluated: customers and anonymous visitors not merged into one.
    evaluated: int = 0
    timings: list[PreviewTiming] = field(default_factory=list)
    warehouse_mb: float = 0.0


def shop_events(
    profiles: int, events: int, end: int, *, span_ms: int = 90 * DAY_MS, first: int = 0
) -> list[Any]:
    """``events`` events of a shop over the ``span_ms`` before ``end``, deterministically: the
    first ``profiles`` (when ``first`` is 0) identify a customer each; then track events
    weighted as :data:`EVENT_NAMES`, by customers picked by a hash; one in ten by an anonymous
    visitor, one in fifty an identify call by the visitor of :data:`_LINK_LAG` events before (a
    merge, when the profile processor stored the visitor's profile in an earlier batch).
    ``first`` numbers the events (messageIds), to add more."""
    names = [name for name, weight in EVENT_NAMES for _ in range(weight)]
    out = []
    for offset in range(events):
        n = first + offset
        timestamp = end - span_ms + offset * span_ms // max(events, 1)
        who = (n * 2_654_435_761) % profiles
        user: str | None = f"u{who}"
        anonymous: str | None = None
        name: str | None = None
        if n < profiles:
            kind, user = "identify", f"u{n}"
            traits = {
                "vip": n % 10 == 0,
                "plan": "pro" if n % 4 == 0 else "free",
                "country": ("IR", "AE", "CN", "US", "DE")[n % 5],
                "email": f"u{n}@example.com",
            }
            body: dict[str, Any] = {"type": kind, "userId": user, "traits": traits}
        elif n % 50 == 25:
            # The anonymous visitor of some time ago says who they are.
            kind, anonymous = "identify", f"a{n - _LINK_LAG}"
            body = {"type": kind, "userId": user, "anonymousId": anonymous, "traits": {}}
        else:
            kind, name = "track", names[n % len(names)]
            properties = {
                "revenue": (n * 7) % 300,
                "category": CATEGORIES[n % len(CATEGORIES)],
                "status": ("open", "pending", "resolved")[n % 3],
            }
            if n % 10 == 0:
                user, anonymous = None, f"a{n}"
            body = {"type": kind, "event": name, "properties": properties}
            body.update({"userId": user} if user else {"anonymousId": anonymous})
        out.append(_event(n, kind, name, user, anonymous, timestamp, body))
    return out


def run_preview(
    profiles: int = 50_000, events: int = 500_000, new_events: int = 2000
) -> PreviewResult:
    from safar.api.audiences import preview
    from safar.config import Settings
    from safar.runtime.audience_catalog import publish
    from safar.runtime.profiler import ProfileProcessor
    from safar.runtime.warehouse_keeper import WAREHOUSE_FILE, KeptWarehouse
    from safar.stores.bundle import open_stores
    from safar.testing import FakeClock

    base = Path(tempfile.mkdtemp(prefix="safar-bench-preview-"))
    try:
        clock = FakeClock(NOW)
        settings = Settings(data_dir=str(base))
        with open_stores(settings, clock) as stores:
            profiler = ProfileProcessor(stores.events, stores.profiles, settings.identity, clock)

            def add(batch: list[Any]) -> None:
                for chunk in range(0, len(batch), 5000):
                    stores.events.append(batch[chunk : chunk + 5000])
                while profiler.run_once(20_000):
                    pass

            add(shop_events(profiles, events, NOW))
            for text in PREVIEW_LIVE:
                publish(stores.audience_catalog, _parse(text), NOW)
            versions = stores.audience_catalog.all()
            path = base / WAREHOUSE_FILE
            kept = KeptWarehouse(
                stores.events, stores.profiles, stores.delivery, settings.identity, path
            )
            drafts = {"segment": _parse(PREVIEW_SEGMENT), "trait": _parse(PREVIEW_TRAIT)}

            def timed(draft: str, warehouse: KeptWarehouse | None) -> tuple[float, bytes]:
                started = time.perf_counter()
                found = preview(
                    drafts[draft],
                    versions,
                    stores.profiles,
                    stores.events,
                    stores.delivery,
                    NOW,
                    warehouse=warehouse,
                )
                seconds = time.perf_counter() - started
                found.pop("took_ms")
                return seconds, msgspec.json.encode(found)

            result = PreviewResult(profiles, events, new_events, 0)
            direct: dict[str, bytes] = {}
            for draft in drafts:
                seconds, direct[draft] = timed(draft, None)
                result.timings.append(PreviewTiming(f"{draft}, direct (baseline)", seconds, True))
            baseline = msgspec.json.decode(direct["segment"])
            result.segment_size, result.evaluated = baseline["size"], baseline["evaluated"]
            steps = (
                ("segment", "SQL, building the warehouse"),
                ("segment", "SQL, nothing new"),
                ("trait", "SQL, nothing new"),
            )
            for draft, name in steps:
                seconds, found = timed(draft, kept)
                same = found == direct[draft]
                result.timings.append(PreviewTiming(f"{draft}, {name}", seconds, same))
            add(shop_events(profiles, new_events, NOW, span_ms=DAY_MS, first=events))
            for draft in drafts:
                seconds, found = timed(draft, kept)
                _, expected = timed(draft, None)
                name = f"{draft}, SQL, after {new_events:,} new events"
                result.timings.append(PreviewTiming(name, seconds, found == expected))
            result.warehouse_mb = path.stat().st_size / 2**20
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- report -------------------------------------------------------------------------------------


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def format_recompute(result: RecomputeResult) -> str:
    lines = [
        f"recompute: {result.profiles:,} profiles, {result.events:,} events "
        f"(generated in {result.generate_seconds:.1f} s); {machine()}",
        f"{'segment':44} {'size':>9} {'safar s':>8} {'floor s':>8} {'ratio':>6} same",
    ]
    for t in result.timings:
        ratio = t.seconds / t.floor_seconds if t.floor_seconds else float("nan")
        same = "yes" if t.size == t.floor_size else f"NO ({t.floor_size})"
        lines.append(
            f"{t.name:44} {t.size:>9,} {t.seconds:>8.2f} {t.floor_seconds:>8.2f} "
            f"{ratio:>6.1f} {same}"
        )
    lines.append(f"peak RSS {result.rss_mb:,.0f} MB")
    return "\n".join(lines)


def format_preview(result: PreviewResult) -> str:
    baseline = {t.name.split(",")[0]: t.seconds for t in result.timings if "baseline" in t.name}
    lines = [
        f"preview: {result.profiles:,} customers, {result.events:,} events on SQLite "
        f"({result.evaluated:,} profiles, repeat buyers: {result.segment_size:,}); {machine()}",
        f"{'preview':52} {'s':>7} {'x faster':>9} same",
    ]
    for t in result.timings:
        speedup = baseline[t.name.split(",")[0]] / t.seconds if t.seconds else float("nan")
        same = "yes" if t.same else "NO"
        lines.append(f"{t.name:52} {t.seconds:>7.2f} {speedup:>9.1f} {same}")
    lines.append(f"warehouse file {result.warehouse_mb:,.0f} MB")
    return "\n".join(lines)


def format_incremental(result: IncrementalResult) -> str:
    return "\n".join(
        [
            f"incremental: {result.events:,} events, {result.profiles:,} profiles, "
            f"{result.segments} segments, {result.traits} computed traits; {machine()}",
            f"profile processor        {result.profile_us:6.1f} us/event",
            f"audiences, no definitions {result.empty_us:5.1f} us/event",
            f"audiences, all live      {result.audience_us:6.1f} us/event",
            f"overhead of audiences    {result.overhead_us:6.1f} us/event "
            f"({result.overhead_us / result.profile_us:.2f}x the profile processor)",
            f"same definitions, events none reads {result.unread_us:5.1f} us/event",
            f"worker (profiles + audiences): "
            f"{1e6 / (result.profile_us + result.audience_us):,.0f} events/s",
            f"state: {result.memberships:,} memberships, {result.fold_rows:,} fold rows",
            f"warehouse sync from SQLite: {result.sync_events_per_s:,.0f} events/s, "
            f"{result.load_profiles_per_s:,.0f} profiles/s",
        ]
    )
