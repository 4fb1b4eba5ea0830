"""Journey lifecycle: draft → published → paused → stopped, and versions.

- ``publish`` stores a definition as a new version and publishes it. Customers enter the
  newest published version. Customers inside an older version either stay on it until they
  leave (``migration.mode == "stay"``, the default) or move to the mapped step of the new one
  the next time anything happens to them (``move``): a timer keeps its due time.
- ``pause`` stops entries into the journey; customers already inside go on.
- ``resume`` undoes a pause.
- ``stop`` ends the journey for good: no entries, and each customer inside leaves with
  reason ``journey stopped`` the next time anything happens to them; nothing more is sent.
"""

from __future__ import annotations

import msgspec

from safar.errors import Conflict, NotFound
from safar.model.journeys import Journey, JourneyVersion, Migration
from safar.ports import JourneyStore


def _strip(journey: Journey) -> bytes:
    """The definition without where it came from, to tell whether two versions differ."""
    return msgspec.json.encode(msgspec.structs.replace(journey, origin=None))


def save_draft(store: JourneyStore, journey: Journey, now: int) -> JourneyVersion:
    """Store ``journey`` as a draft: the existing draft is replaced, else a new version."""
    latest = store.get(journey.id)
    if latest is not None and latest.status == "draft":
        version = msgspec.structs.replace(latest, definition=journey, created_at=now)
    else:
        number = latest.version + 1 if latest else 1
        version = JourneyVersion(
            journey_id=journey.id,
            version=number,
            status="draft",
            definition=journey,
            created_at=now,
        )
    store.save(version)
    return version


def publish(
    store: JourneyStore, journey: Journey, now: int, migration: Migration | None = None
) -> tuple[JourneyVersion, bool]:
    """Publish ``journey`` as a new version (or the current draft). Returns the version and
    whether anything changed: publishing the definition already published is a no-op."""
    versions = store.versions(journey.id)
    if any(v.status == "stopped" for v in versions):
        raise Conflict(f"journey {journey.id!r} was stopped; give it a new id to run it again")
    live = [v for v in versions if v.status in ("published", "paused")]
    if live and _strip(live[-1].definition) == _strip(journey) and migration is None:
        return live[-1], False
    draft = save_draft(store, journey, now)
    published = msgspec.structs.replace(
        draft, status="published", published_at=now, migration=migration or Migration()
    )
    store.save(published)
    return published, True


def set_status(store: JourneyStore, journey_id: str, action: str, now: int) -> JourneyVersion:
    """``pause``, ``resume`` or ``stop`` a journey. Returns its newest version afterwards."""
    versions = store.versions(journey_id)
    if not versions:
        raise NotFound(f"no journey {journey_id!r}")
    live = [v for v in versions if v.status in ("published", "paused")]
    if action == "stop":
        for version in versions:
            if version.status != "draft":
                store.save(msgspec.structs.replace(version, status="stopped"))
    elif action in ("pause", "resume"):
        if not live:
            raise Conflict(f"journey {journey_id!r} is not published, so it cannot {action}")
        wanted = "paused" if action == "pause" else "published"
        store.save(msgspec.structs.replace(live[-1], status=wanted))
    else:
        raise Conflict(f"unknown action {action!r}: use pause, resume or stop")
    latest = store.get(journey_id)
    assert latest is not None
    return latest
