"""``/v1/segments`` and ``/v1/computed-traits``: audience definitions and their lifecycle, a
segment's members (paged, or exported whole as CSV or JSONL), and previews of drafts.

A definition is sent as its file, YAML, or the same document as JSON; it is read and validated
as ``safar validate`` does, and also against what is live: ``member:`` may name a published
segment, and may not close a cycle through one. Then it is stored as a draft or published
through :mod:`safar.runtime.audience_catalog`. Problems come back as a 400 naming the line and
field of each, as for journeys.

Sizes and members are what the audience processor last committed. A published segment is
``computing`` until the processor has evaluated it for every customer and folded the history of
the aggregates it reads (its jobs in :meth:`~safar.ports.AudienceStore.progress`), then
``ready``; a computed trait is ``ready`` once its history is folded.

A preview evaluates a draft from scratch over every customer's stored history, beside the live
segments and computed traits; it stores nothing. It is answered with SQL over a columnar copy of
the stores kept up to date between previews (:mod:`safar.runtime.preview`, ADR 13); ``limit``
evaluates only the first customers, reading their histories directly
(:mod:`safar.runtime.batch`).
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from safar.api.auth import ApiKeyAuth
from safar.api.profiles import parse_limit, profile_document
from safar.api.requests import (
    YAML_TYPES,
    iso_or_none,
    media_type,
    problems_response,
    query_flag,
    read_body,
    text_body,
)
from safar.core.aggregates import is_number
from safar.core.recompute import Result
from safar.core.segments import reads_of
from safar.definitions import DefinitionError, Problem, topological_order, validate_audiences
from safar.definitions.audiences import (
    Audience,
    AudienceKind,
    audience_from_node,
    audience_kind,
    segment_dependencies,
    walk,
)
from safar.definitions.validate import line_of
from safar.definitions.yamlsource import line_map, load
from safar.errors import Conflict, NotFound, ValidationError
from safar.model.audiences import (
    AudienceVersion,
    ComputedTrait,
    MemberCondition,
    Membership,
    Segment,
)
from safar.model.events import iso
from safar.model.profiles import Profile
from safar.ports import (
    AudienceCatalog,
    AudienceStore,
    Clock,
    DeliveryStore,
    EventLog,
    ProfileReader,
)
from safar.runtime import audience_catalog
from safar.runtime.audiences import complete_folds, fingerprint, live_definitions
from safar.runtime.batch import evaluate
from safar.runtime.preview import member_results, segment_figures, trait_figures
from safar.runtime.warehouse_keeper import KeptWarehouse

State = Literal["computing", "ready"]
ExportFormat = Literal["csv", "jsonl"]
#: Columns of an export, in order; JSONL rows also carry every ``identifiers``.
EXPORT_COLUMNS: Final = ("profile_id", "since", "user_id", "email", "phone", "anonymous_id")
#: Memberships read per page by an export.
EXPORT_PAGE: Final = 1000
DEFAULT_SAMPLE: Final = 10
MAX_SAMPLE: Final = 100
#: Most distinct text values a computed trait preview lists.
TOP_VALUES: Final = 10
#: How the processor marks a job finished (``scan:<id>`` = ``<fingerprint>:done``).
_DONE: Final = "done"
_MEDIA: Final = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@dataclass(frozen=True)
class Kind:
    """One of the two kinds of audience definition, as the API names it."""

    kind: AudienceKind
    noun: str
    path: str

    def other(self) -> Kind:
        return TRAIT if self is SEGMENT else SEGMENT


SEGMENT: Final = Kind("segment", "segment", "/v1/segments")
TRAIT: Final = Kind("computed_trait", "computed trait", "/v1/computed-traits")


# -- Checks against what is live ----------------------------------------------------------------


def problems_with_live(
    definitions: Sequence[Audience],
    lines: Mapping[str, Mapping[str, int]],
    versions: Collection[AudienceVersion],
) -> list[Problem]:
    """Everything :func:`~safar.definitions.validate_audiences` finds in ``definitions``, with
    ``member:`` allowed to name the published segments among ``versions``, and the ``member:``
    cycles they would close through published segments; [] when they may be published."""
    segments, _ = live_definitions(versions)
    replaced = {d.id for d in definitions}
    live = [s for s in segments if s.id not in replaced]
    problems = validate_audiences(definitions, lines, known_segments=[s.id for s in live])
    problems += _live_cycles(definitions, live, lines)
    return sorted(problems, key=lambda problem: (problem.file, problem.line))


def _live_cycles(
    definitions: Sequence[Audience],
    live: Sequence[Segment],
    lines: Mapping[str, Mapping[str, int]],
) -> list[Problem]:
    """Cycles of ``member:`` references passing through a live segment, each reported once at
    the first new segment's ``member:`` that enters it (cycles among the new definitions alone
    are :func:`validate_audiences`'s)."""
    new = {d.id: d for d in definitions if isinstance(d, Segment)}
    needs = {s.id: segment_dependencies(s) for s in live}
    needs.update({key: segment_dependencies(s) for key, s in new.items()})
    found: list[Problem] = []
    reported: set[frozenset[str]] = set()
    for segment in new.values():
        for at, _, condition in walk(segment.where):
            if not isinstance(condition, MemberCondition):
                continue
            path = _path(needs, condition.segment, segment.id)
            if path is None or all(step in new for step in path):
                continue
            cycle = [segment.id, *path[:-1]]
            if frozenset(cycle) in reported:
                continue
            reported.add(frozenset(cycle))
            field = f"{at}.member"
            shown = " -> ".join(repr(key) for key in [*cycle, segment.id])
            published = ", ".join(repr(key) for key in cycle if key not in new)
            message = (
                f"segments would refer to each other in a cycle through member: {shown}"
                f" ({published} published)"
            )
            line = line_of(lines.get(segment.origin or "", {}), field, condition.line)
            found.append(Problem(segment.origin or "<segment>", line, field, message))
    return found


def _path(needs: Mapping[str, Collection[str]], start: str, target: str) -> list[str] | None:
    """The shortest chain of ``member:`` references from ``start`` to ``target`` (both
    included), or None."""
    came_from: dict[str, str | None] = {start: None}
    todo = [start]
    while todo:
        following: list[str] = []
        for node in todo:
            if node == target:
                chain = [node]
                while (previous := came_from[chain[-1]]) is not None:
                    chain.append(previous)
                return chain[::-1]
            for step in sorted(needs.get(node, ())):
                if step not in came_from:
                    came_from[step] = node
                    following.append(step)
        todo = following
    return None


def check_kinds(catalog: AudienceCatalog, definitions: Sequence[Audience]) -> None:
    """Conflict when a definition's id is held by the other kind (before anything is saved)."""
    for definition in definitions:
        versions = catalog.versions(definition.id)
        if versions and versions[-1].kind != audience_catalog.kind_of(definition):
            held = versions[-1].kind.replace("_", " ")
            raise Conflict(f"{definition.id!r} is already a {held}; give this one another id")


def dependents(versions: Collection[AudienceVersion], segment_id: str) -> list[str]:
    """The live segments that name ``segment_id`` with ``member:``."""
    segments, _ = live_definitions(versions)
    return sorted(s.id for s in segments if segment_id in segment_dependencies(s))


def save_checked(
    catalog: AudienceCatalog,
    definitions: Sequence[Audience],
    lines: Mapping[str, Mapping[str, int]],
    now: int,
    *,
    publish: bool = True,
) -> tuple[list[Problem], list[tuple[AudienceVersion, bool]]]:
    """Check ``definitions`` together against what is live, then publish them (or save them as
    drafts): the problems found (nothing is saved then), else each version saved and whether
    it changed anything. Conflict, before anything is saved, for an id of the other kind."""
    check_kinds(catalog, definitions)
    problems = problems_with_live(definitions, lines, catalog.all())
    if problems:
        return problems, []
    saved = [
        audience_catalog.publish(catalog, d, now)
        if publish
        else (audience_catalog.save_draft(catalog, d, now), True)
        for d in definitions
    ]
    return [], saved


def archive_checked(catalog: AudienceCatalog, audience_id: str) -> AudienceVersion:
    """Archive the live version (see :func:`safar.runtime.audience_catalog.archive`), unless
    live segments name it with ``member:`` (Conflict: they would never match again)."""
    using = dependents(catalog.all(), audience_id)
    if using:
        raise Conflict(
            f"segment {audience_id!r} is named with member: by {', '.join(using)};"
            " archive or change those first"
        )
    return audience_catalog.archive(catalog, audience_id)


def versions_of(catalog: AudienceCatalog, kind: Kind, audience_id: str) -> list[AudienceVersion]:
    """Every version of ``audience_id``, which must be of ``kind``; NotFound otherwise."""
    versions = catalog.versions(audience_id)
    if not versions:
        raise NotFound(f"no {kind.noun} {audience_id!r}")
    if versions[-1].kind != kind.kind:
        other = kind.other()
        raise NotFound(
            f"{audience_id!r} is a {other.noun}, not a {kind.noun}; see {other.path}/{audience_id}"
        )
    return versions


def require_live_segment(catalog: AudienceCatalog, segment_id: str) -> None:
    """NotFound unless ``segment_id`` is a segment; Conflict unless it is published (only then
    are memberships kept)."""
    versions = versions_of(catalog, SEGMENT, segment_id)
    if not any(v.status == "published" for v in versions):
        raise Conflict(
            f"segment {segment_id!r} is not published (version {versions[-1].version} is"
            f" {versions[-1].status}): nobody's membership is kept"
        )


# -- Where the processor stands -----------------------------------------------------------------


def audience_state(
    definition: Audience,
    segments: Mapping[str, Segment],
    traits: Mapping[str, ComputedTrait],
    progress: Mapping[str, str],
) -> State:
    """``ready`` when the audience processor's jobs for a live ``definition`` are done (see the
    module docstring), else ``computing``. ``segments`` and ``traits``: the live ones by id;
    ``progress``: :meth:`~safar.ports.AudienceStore.progress`."""
    if isinstance(definition, ComputedTrait):
        key = definition.aggregate.key
        return "ready" if complete_folds(progress, [key]) else "computing"
    return "ready" if _segment_ready(definition, segments, traits, progress, set()) else "computing"


def _segment_ready(
    segment: Segment,
    segments: Mapping[str, Segment],
    traits: Mapping[str, ComputedTrait],
    progress: Mapping[str, str],
    seen: set[str],
) -> bool:
    seen.add(segment.id)
    if progress.get(f"scan:{segment.id}") != f"{fingerprint(segment)}:{_DONE}":
        return False
    reads = reads_of(segment.where)
    keys = reads.keys({name: trait.aggregate for name, trait in traits.items()})
    members = reads.members
    if len(set(complete_folds(progress, keys).values())) < len(keys):
        return False
    return all(
        _segment_ready(segments[m], segments, traits, progress, seen)
        for m in members
        if m in segments and m not in seen
    )


# -- Members and exports ------------------------------------------------------------------------


def member_pages(
    store: AudienceStore,
    profiles: ProfileReader,
    segment_id: str,
    *,
    after: str = "",
    page: int = EXPORT_PAGE,
) -> Iterator[list[tuple[Membership, Profile | None]]]:
    """A segment's members page by page, ascending by profile id, each with their current
    profile (None if it is gone: merged away since the processor last saw them)."""
    while found := store.members(segment_id, after, page):
        current = profiles.find_many({m.identifier for m in found})
        yield [(m, current.get(m.identifier)) for m in found]
        if len(found) < page:
            return
        after = found[-1].profile_id


def member_document(
    segment_id: str, membership: Membership, profile: Profile | None
) -> dict[str, Any]:
    """One member: their profile id, identifiers and since when they are in."""
    if profile is None:
        kind, value = membership.identifier
        return {
            "profile_id": membership.profile_id,
            "identifiers": {kind: [value]},
            "since": iso_or_none(membership.segments.get(segment_id)),
        }
    return {
        "profile_id": profile.id,
        "identifiers": profile.identifiers,
        "since": iso_or_none(membership.segments.get(segment_id)),
    }


def _first(identifiers: Mapping[str, Sequence[str]], kind: str) -> str | None:
    values = identifiers.get(kind)
    return values[0] if values else None


def export_format(text: str) -> ExportFormat:
    """``csv`` or ``jsonl``; ValidationError naming ``format`` otherwise."""
    if text == "csv":
        return "csv"
    if text == "jsonl":
        return "jsonl"
    raise ValidationError(f"must be csv or jsonl, got {text!r}", "format")


def export_chunks(
    store: AudienceStore,
    profiles: ProfileReader,
    segment_id: str,
    format: ExportFormat,
    *,
    page: int = EXPORT_PAGE,
) -> Iterator[str]:
    """Every member of a segment as CSV (with a header) or JSONL, a page of rows at a time:
    :data:`EXPORT_COLUMNS`, each identifier type's first value, and in JSONL ``identifiers``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if format == "csv":
        writer.writerow(EXPORT_COLUMNS)
    for found in member_pages(store, profiles, segment_id, page=page):
        for membership, profile in found:
            member = member_document(segment_id, membership, profile)
            identifiers: dict[str, list[str]] = member["identifiers"]
            row = {
                "profile_id": member["profile_id"],
                "since": member["since"],
                **{kind: _first(identifiers, kind) for kind in EXPORT_COLUMNS[2:]},
            }
            if format == "csv":
                writer.writerow([row[column] for column in EXPORT_COLUMNS])
            else:
                row["identifiers"] = identifiers
                buffer.write(msgspec.json.encode(row).decode() + "\n")
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


# -- Previews -----------------------------------------------------------------------------------


def preview(
    definition: Audience,
    versions: Collection[AudienceVersion],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    now: int,
    *,
    limit: int | None = None,
    sample: int = DEFAULT_SAMPLE,
    warehouse: KeptWarehouse | None = None,
) -> dict[str, Any]:
    """What a draft would be now, evaluated over the first ``limit`` customers (all when None),
    with ``evaluated`` (how many) and ``took_ms``.

    A segment is evaluated with the live segments (the draft replacing the live one of its id)
    and computed traits: its ``size`` and a ``sample`` of members' profiles, with the computed
    traits and segments the preview found. A computed trait gives a ``summary`` (``count`` of
    customers with a value; ``min``/``max`` of the numbers; the ``top`` text values with their
    counts) and a ``sample`` of customers with a value.

    Over every customer and with a ``warehouse``, the figures come from SQL over it, brought up
    to date first (:mod:`safar.runtime.preview`, ADR 13); otherwise each customer's history is
    read and evaluated directly (:mod:`safar.runtime.batch`). Both give the same answer.
    """
    started = time.monotonic()
    if warehouse is not None and limit is None:
        found = _preview_with_sql(
            definition, versions, profiles, events, delivery, now, sample, warehouse
        )
    else:
        found = _preview_directly(
            definition, versions, profiles, events, delivery, now, sample, limit
        )
    return {**found, "took_ms": _since(started)}


def _draft_among_live(
    segment: Segment, versions: Collection[AudienceVersion]
) -> tuple[list[Segment], list[ComputedTrait]]:
    """The live segments with the draft in place of the one of its id, members first, and the
    live computed traits."""
    segments, traits = live_definitions(versions)
    return topological_order([*(s for s in segments if s.id != segment.id), segment]), traits


def _preview_directly(
    definition: Audience,
    versions: Collection[AudienceVersion],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    now: int,
    sample: int,
    limit: int | None,
) -> dict[str, Any]:
    tally: _SegmentTally | _TraitTally
    if isinstance(definition, Segment):
        ordered, traits = _draft_among_live(definition, versions)
        tally = _SegmentTally(definition.id, sample, profiles.processed_seq())
        found = evaluate(ordered, traits, profiles, events, delivery, now, limit=limit)
    else:
        tally = _TraitTally(definition.id, sample)
        found = evaluate([], [definition], profiles, events, None, now, limit=limit)
    evaluated = 0
    for profile, result in found:
        evaluated += 1
        tally.add(profile, result)
    return {**tally.document(), "evaluated": evaluated}


def _preview_with_sql(
    definition: Audience,
    versions: Collection[AudienceVersion],
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    now: int,
    sample: int,
    warehouse: KeptWarehouse,
) -> dict[str, Any]:
    if isinstance(definition, ComputedTrait):
        with warehouse.current() as kept:
            values = trait_figures(kept, definition, now, sample, TOP_VALUES)
        shown = [
            {"profile_id": pid, "identifiers": identifiers, "value": value}
            for pid, identifiers, value in values.sample
        ]
        summary = _trait_summary(values.count, values.minimum, values.maximum, values.top)
        return {"summary": summary, "sample": shown, "evaluated": values.evaluated}
    ordered, traits = _draft_among_live(definition, versions)
    processed = profiles.processed_seq()
    with warehouse.current() as kept:
        figures = segment_figures(kept, ordered, traits, definition.id, now, sample)
    members = member_results(figures.sample, profiles, events, delivery, ordered, traits, now)
    return {
        "size": figures.size,
        "sample": [
            _sample_document(profile, result, processed)
            for profile, result in members
            if definition.id in result.segments
        ],
        "evaluated": figures.evaluated,
    }


def _sample_document(profile: Profile, result: Result, processed_seq: int) -> dict[str, Any]:
    """A member in a preview: their profile with the computed traits and segments found."""
    seen = msgspec.structs.replace(
        profile, traits={**profile.traits, **result.traits}, segments=sorted(result.segments)
    )
    return profile_document(seen, processed_seq)


def _trait_summary(
    count: int, low: Any, high: Any, top: Sequence[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "count": count,
        "min": low,
        "max": high,
        "top": [{"value": value, "count": times} for value, times in top],
    }


@dataclass
class _SegmentTally:
    segment_id: str
    sample: int
    processed_seq: int
    size: int = 0
    shown: list[dict[str, Any]] = field(default_factory=list)

    def add(self, profile: Profile, result: Result) -> None:
        if self.segment_id not in result.segments:
            return
        self.size += 1
        if len(self.shown) < self.sample:
            self.shown.append(_sample_document(profile, result, self.processed_seq))

    def document(self) -> dict[str, Any]:
        return {"size": self.size, "sample": self.shown}


@dataclass
class _TraitTally:
    trait_id: str
    sample: int
    present: int = 0
    numbers: list[float] = field(default_factory=list)
    texts: dict[str, int] = field(default_factory=dict)
    shown: list[dict[str, Any]] = field(default_factory=list)

    def add(self, profile: Profile, result: Result) -> None:
        value = result.traits.get(self.trait_id)
        if value is None:
            return
        self.present += 1
        if is_number(value):
            self.numbers.append(value)
        elif isinstance(value, str):
            self.texts[value] = self.texts.get(value, 0) + 1
        if len(self.shown) < self.sample:
            self.shown.append(
                {"profile_id": profile.id, "identifiers": profile.identifiers, "value": value}
            )

    def document(self) -> dict[str, Any]:
        top = sorted(self.texts.items(), key=lambda item: (-item[1], item[0]))[:TOP_VALUES]
        low, high = min(self.numbers, default=None), max(self.numbers, default=None)
        return {"summary": _trait_summary(self.present, low, high, top), "sample": self.shown}


def _since(started: float) -> int:
    # A duration for people to read, not a time in the data: the OS's clock is the right one.
    return round((time.monotonic() - started) * 1000)


# -- Documents ----------------------------------------------------------------------------------


def version_document(version: AudienceVersion) -> dict[str, Any]:
    """One stored version with its definition, as the API renders it."""
    definition = msgspec.to_builtins(version.definition)
    definition.pop("origin", None)
    return {
        "id": version.id,
        "kind": version.kind,
        "version": version.version,
        "status": version.status,
        "created_at": iso(version.created_at),
        "published_at": iso_or_none(version.published_at),
        "definition": definition,
    }


@dataclass
class Live:
    """What the list and detail documents need to know about the processor, read once."""

    segments: dict[str, Segment]
    traits: dict[str, ComputedTrait]
    progress: dict[str, str]

    @classmethod
    def read(cls, versions: Collection[AudienceVersion], store: AudienceStore) -> Live:
        segments, traits = live_definitions(versions)
        return cls({s.id: s for s in segments}, {t.id: t for t in traits}, store.progress())

    def status(self, versions: Sequence[AudienceVersion], store: AudienceStore) -> dict[str, Any]:
        """``live_version``, and for a live audience its ``state`` (and a segment's ``size``);
        null for what is not published."""
        live = [v for v in versions if v.status == "published"]
        found: dict[str, Any] = {"live_version": live[-1].version if live else None}
        definition = live[-1].definition if live else None
        found["state"] = (
            audience_state(definition, self.segments, self.traits, self.progress)
            if definition is not None
            else None
        )
        if versions[-1].kind == "segment":
            found["size"] = store.count(versions[-1].id) if live else None
        return found


def summary_document(
    versions: Sequence[AudienceVersion], live: Live, store: AudienceStore
) -> dict[str, Any]:
    """A segment or computed trait in a list: its newest version, and where the live one is."""
    newest = versions[-1]
    return {
        "id": newest.id,
        "kind": newest.kind,
        "name": newest.definition.name,
        "version": newest.version,
        "status": newest.status,
        "published_at": iso_or_none(newest.published_at),
        **live.status(versions, store),
    }


# -- Endpoints ----------------------------------------------------------------------------------


class AudienceEndpoints:
    """The endpoints of one kind (segments or computed traits). Store work runs in threads: the
    stores block."""

    def __init__(
        self,
        kind: Kind,
        *,
        catalog: AudienceCatalog,
        store: AudienceStore,
        profiles: ProfileReader,
        events: EventLog,
        delivery: DeliveryStore | None,
        clock: Clock,
        lock: threading.Lock,
        on_change: Callable[[], None] = lambda: None,
        warehouse: KeptWarehouse | None = None,
    ) -> None:
        self.kind = kind
        self._catalog = catalog
        self._store = store
        self._profiles = profiles
        self._events = events
        self._delivery = delivery
        self._clock = clock
        # Lifecycle changes read the versions, then write one: two at once could both take the
        # same version number. The lock serializes them within this process (for both kinds:
        # they share one id space).
        self._lock = lock
        self._on_change = on_change
        self._warehouse = warehouse

    def list_all(self, request: Request) -> JSONResponse:
        """``GET /v1/segments``: each one's newest version, by id, with size and state."""
        all_versions = self._catalog.all()
        live = Live.read(all_versions, self._store)
        by_id: dict[str, list[AudienceVersion]] = {}
        for version in all_versions:
            if version.kind == self.kind.kind:
                by_id.setdefault(version.id, []).append(version)
        data = [summary_document(v, live, self._store) for _, v in sorted(by_id.items())]
        return JSONResponse({"data": data})

    def get(self, request: Request) -> JSONResponse:
        """``GET /v1/segments/{id}``: the newest definition and every version, oldest first."""
        versions = self._versions(request.path_params["id"])
        live = Live.read(self._catalog.all(), self._store)
        document = summary_document(versions, live, self._store)
        document["definition"] = version_document(versions[-1])["definition"]
        document["versions"] = [version_document(v) for v in versions]
        return JSONResponse(document)

    async def create(self, request: Request) -> Response:
        """``POST /v1/segments``: save a definition as a draft, or publish it
        (``?publish=true``)."""
        text = await self._definition_text(request)
        publish = query_flag(request, "publish")
        return await run_in_threadpool(self._create, text, publish)

    def _create(self, text: str, publish: bool) -> Response:
        try:
            definition, lines = self._read(text)
        except DefinitionError as exc:
            return problems_response(exc.problems, self.kind.noun)
        now = self._clock.now_ms()
        with self._lock:
            problems, saved = save_checked(
                self._catalog, [definition], {"": lines}, now, publish=publish
            )
        if problems:
            return problems_response(problems, self.kind.noun)
        [(version, changed)] = saved
        self._on_change()
        return JSONResponse(
            {**version_document(version), "changed": changed},
            status_code=201 if changed else 200,
            headers={"Location": f"{self.kind.path}/{definition.id}"},
        )

    def publish(self, request: Request) -> Response:
        """``POST /v1/segments/{id}/publish``: publish the current draft."""
        audience_id = request.path_params["id"]
        with self._lock:
            latest = self._versions(audience_id)[-1]
            if latest.status != "draft":
                raise Conflict(
                    f"{self.kind.noun} {audience_id!r} has no draft to publish (version"
                    f" {latest.version} is {latest.status}); POST its file to {self.kind.path}"
                    " to make one"
                )
            # What is live may have changed since the draft was saved: check again.
            problems, saved = save_checked(
                self._catalog, [latest.definition], {}, self._clock.now_ms()
            )
        if problems:
            return problems_response(problems, self.kind.noun)
        [(version, changed)] = saved
        self._on_change()
        return JSONResponse({**version_document(version), "changed": changed})

    def archive(self, request: Request) -> JSONResponse:
        """``POST /v1/segments/{id}/archive``: retire the live version."""
        audience_id = request.path_params["id"]
        with self._lock:
            self._versions(audience_id)
            version = archive_checked(self._catalog, audience_id)
        self._on_change()
        return JSONResponse(version_document(version))

    def repair(self, request: Request) -> JSONResponse:
        """``POST /v1/segments/{id}/repair``: ask the audience processor to rebuild the live
        version's state from the stored events; 202, as it does so in the background."""
        audience_id = request.path_params["id"]
        self._versions(audience_id)
        [(version, count)] = audience_catalog.repair(self._catalog, [audience_id])
        document = {**version_document(version), "repairs_requested": count}
        return JSONResponse(document, status_code=202)

    def members(self, request: Request) -> JSONResponse:
        """``GET /v1/segments/{id}/members?after=&limit=``: a page of members by profile id."""
        limit = parse_limit(request)
        after = request.query_params.get("after", "")
        segment_id = request.path_params["id"]
        require_live_segment(self._catalog, segment_id)
        # One extra member tells whether another page exists without a second query.
        pages = member_pages(self._store, self._profiles, segment_id, after=after, page=limit + 1)
        found = next(pages, [])
        data = [member_document(segment_id, m, p) for m, p in found[:limit]]
        following = found[limit - 1][0].profile_id if len(found) > limit else None
        return JSONResponse({"data": data, "next": following})

    def export(self, request: Request) -> Response:
        """``GET /v1/segments/{id}/export?format=csv|jsonl``: every member, streamed."""
        format = export_format(request.query_params.get("format", "csv"))
        segment_id = request.path_params["id"]
        require_live_segment(self._catalog, segment_id)
        chunks = export_chunks(self._store, self._profiles, segment_id, format)
        return StreamingResponse(
            chunks,
            media_type=_MEDIA[format],
            headers={"Content-Disposition": f'attachment; filename="{segment_id}.{format}"'},
        )

    async def preview(self, request: Request) -> Response:
        """``POST /v1/segments/preview?sample=&limit=``: evaluate a draft, storing nothing."""
        text = await self._definition_text(request)
        sample = parse_limit(
            request, name="sample", default=DEFAULT_SAMPLE, maximum=MAX_SAMPLE, minimum=0
        )
        limit = parse_limit(request, default=0, maximum=2**31) or None
        return await run_in_threadpool(self._preview, text, sample, limit)

    def _preview(self, text: str, sample: int, limit: int | None) -> Response:
        try:
            definition, lines = self._read(text)
        except DefinitionError as exc:
            return problems_response(exc.problems, self.kind.noun)
        versions = self._catalog.all()
        problems = problems_with_live([definition], {"": lines}, versions)
        if problems:
            return problems_response(problems, self.kind.noun)
        found = preview(
            definition,
            versions,
            self._profiles,
            self._events,
            self._delivery,
            self._clock.now_ms(),
            limit=limit,
            sample=sample,
            warehouse=self._warehouse,
        )
        return JSONResponse(found)

    # -- helpers ----------------------------------------------------------------------------

    async def _definition_text(self, request: Request) -> str:
        body = await read_body(request)
        media = media_type(request)
        if media not in YAML_TYPES and media != "application/json":
            raise ValidationError(
                f"send the {self.kind.noun} file as application/yaml, or the same document as"
                f" application/json; got {media or 'no Content-Type'}",
                "Content-Type",
            )
        return text_body(body, self.kind.noun)

    def _read(self, text: str) -> tuple[Audience, dict[str, int]]:
        root = load(text, f"<{self.kind.noun}>")
        kind = audience_kind(root)
        if kind is not None and kind != self.kind.kind:
            other = self.kind.other()
            marker = "compute" if other is TRAIT else "where"
            raise ValidationError(
                f"this is a {other.noun} (it has '{marker}'), not a {self.kind.noun}; send it to"
                f" {other.path}",
                "body",
            )
        return audience_from_node(root), line_map(root)

    def _versions(self, audience_id: str) -> list[AudienceVersion]:
        return versions_of(self._catalog, self.kind, audience_id)


def audience_routes(
    auth: ApiKeyAuth,
    *,
    catalog: AudienceCatalog,
    store: AudienceStore,
    profiles: ProfileReader,
    events: EventLog,
    delivery: DeliveryStore | None,
    clock: Clock,
    on_change: Callable[[], None] = lambda: None,
    warehouse: KeptWarehouse | None = None,
) -> list[Route]:
    """The ``/v1/segments`` and ``/v1/computed-traits`` routes: reading needs ``read``, every
    change (and previews, which can be costly) ``write``.

    ``profiles`` should be the plain profile reader (previews compute audiences themselves);
    ``delivery`` gives previews consent choices; ``on_change`` runs after every publish or
    archive (to refresh cached catalogs, such as an
    :class:`~safar.runtime.audience_view.AudienceReader`'s); ``warehouse`` answers previews
    over every customer with SQL (without it, they read every customer's history).
    """
    lock = threading.Lock()
    read, write = auth.require("read"), auth.require("write")
    routes: list[Route] = []
    for kind in (SEGMENT, TRAIT):
        api = AudienceEndpoints(
            kind,
            catalog=catalog,
            store=store,
            profiles=profiles,
            events=events,
            delivery=delivery,
            clock=clock,
            lock=lock,
            on_change=on_change,
            warehouse=warehouse,
        )
        base = kind.path
        routes += [
            Route(base, read(api.list_all), methods=["GET"]),
            Route(base, write(api.create), methods=["POST"]),
            Route(f"{base}/preview", write(api.preview), methods=["POST"]),
            Route(base + "/{id}", read(api.get), methods=["GET"]),
            Route(base + "/{id}/publish", write(api.publish), methods=["POST"]),
            Route(base + "/{id}/archive", write(api.archive), methods=["POST"]),
            Route(base + "/{id}/repair", write(api.repair), methods=["POST"]),
        ]
        if kind is SEGMENT:
            routes += [
                Route(base + "/{id}/members", read(api.members), methods=["GET"]),
                Route(base + "/{id}/export", read(api.export), methods=["GET"]),
            ]
    return routes
