"""Segment and computed trait lifecycle: draft → published → archived, and versions.

- ``publish`` stores a definition as a new version and publishes it; the older published
  version is archived. A segment published with a new condition is evaluated for every customer
  again in the background, and its members enter and exit as the new condition says.
- ``archive`` retires the live version: the segment is no longer kept current, and it no
  longer appears in profiles (no ``Segment Exited`` events are sent for it).
- ``repair`` asks the audience processor to rebuild a live one's state from the stored events
  (:mod:`safar.runtime.audience_jobs`): it picks the request up at its next refresh.
- Kinds share one id space: a computed trait and a segment never have the same id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from safar.errors import Conflict, NotFound
from safar.model.audiences import AudienceVersion, ComputedTrait, Definition, Segment
from safar.ports import AudienceCatalog


def kind_of(definition: Definition) -> Literal["segment", "computed_trait"]:
    return "segment" if isinstance(definition, Segment) else "computed_trait"


def _strip(definition: Definition) -> bytes:
    """The definition without where it came from, to tell whether two versions differ."""
    if isinstance(definition, Segment | ComputedTrait):
        definition = msgspec.structs.replace(definition, origin=None)
    return msgspec.json.encode(definition)


def _check_kind(catalog: AudienceCatalog, definition: Definition) -> list[AudienceVersion]:
    versions = catalog.versions(definition.id)
    kind = kind_of(definition)
    if versions and versions[-1].kind != kind:
        held = versions[-1].kind.replace("_", " ")
        raise Conflict(f"{definition.id!r} is already a {held}; give this one another id")
    return versions


def save_draft(catalog: AudienceCatalog, definition: Definition, now: int) -> AudienceVersion:
    """Store ``definition`` as a draft: the existing draft is replaced, else a new version."""
    versions = _check_kind(catalog, definition)
    latest = versions[-1] if versions else None
    if latest is not None and latest.status == "draft":
        version = msgspec.structs.replace(latest, definition=definition, created_at=now)
    else:
        version = AudienceVersion(
            id=definition.id,
            version=latest.version + 1 if latest else 1,
            kind=kind_of(definition),
            status="draft",
            definition=definition,
            created_at=now,
        )
    catalog.save(version)
    return version


def publish(
    catalog: AudienceCatalog, definition: Definition, now: int
) -> tuple[AudienceVersion, bool]:
    """Publish ``definition`` as a new version (or the current draft). Returns the version and
    whether anything changed: publishing what is already published is a no-op."""
    versions = _check_kind(catalog, definition)
    live = [v for v in versions if v.status == "published"]
    if live and _strip(live[-1].definition) == _strip(definition):
        return live[-1], False
    draft = save_draft(catalog, definition, now)
    for old in live:
        catalog.save(msgspec.structs.replace(old, status="archived"))
    published = msgspec.structs.replace(draft, status="published", published_at=now)
    catalog.save(published)
    return published, True


def archive(catalog: AudienceCatalog, audience_id: str) -> AudienceVersion:
    """Retire the live version of a segment or computed trait; returns it."""
    versions = catalog.versions(audience_id)
    if not versions:
        raise NotFound(f"no segment or computed trait {audience_id!r}")
    live = [v for v in versions if v.status == "published"]
    if not live:
        raise Conflict(f"{audience_id!r} is not published")
    for version in live:
        catalog.save(msgspec.structs.replace(version, status="archived"))
    return msgspec.structs.replace(live[-1], status="archived")


def repairable(catalog: AudienceCatalog, audience_id: str) -> AudienceVersion:
    """The live version of ``audience_id``, which a repair would rebuild. NotFound for an
    unknown id, Conflict for one not published (nothing is kept for it, so nothing to repair)."""
    versions = catalog.versions(audience_id)
    if not versions:
        raise NotFound(f"no segment or computed trait {audience_id!r}")
    live = [v for v in versions if v.status == "published"]
    if not live:
        latest = versions[-1]
        raise Conflict(
            f"{audience_id!r} is not published (version {latest.version} is {latest.status}):"
            " only published segments and computed traits are kept, and can be repaired"
        )
    return live[-1]


def repair(
    catalog: AudienceCatalog, audience_ids: Sequence[str]
) -> list[tuple[AudienceVersion, int]]:
    """Request a repair of each of ``audience_ids``: each one's live version and how many
    repairs it has had requested. Every id is checked (:func:`repairable`) before any request
    is recorded."""
    live = [repairable(catalog, audience_id) for audience_id in dict.fromkeys(audience_ids)]
    return [(version, catalog.request_repair(version.id)) for version in live]


def published_ids(catalog: AudienceCatalog) -> list[str]:
    """The ids of every published segment and computed trait, sorted."""
    return sorted({v.id for v in catalog.all() if v.status == "published"})
