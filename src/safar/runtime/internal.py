"""Events Safar writes into its own log: journey emits, profile updates, message receipts,
webhook replies. They go through the same log as customers' events, so journeys chain and
react to deliveries, and profile updates are ordinary identify calls.

Each has a deterministic ``messageId`` (the command's idempotency key, with a suffix for
receipts), so appending it again after a crash is deduplicated by the log.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from safar.model.events import Event, iso
from safar.model.profiles import ANONYMOUS_ID, USER_ID, Identifier

#: The source every internal event is filed under.
SOURCE_ID: Final = "safar"

_encode = msgspec.json.encode


def internal_event(
    *,
    key: str,
    type: str,
    identifier: Identifier,
    timestamp: int,
    received_at: int,
    name: str | None = None,
    properties: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
) -> Event:
    """A ``track`` or ``identify`` event for the customer named by ``identifier``."""
    kind, value = identifier
    body: dict[str, Any] = {
        "type": type,
        "messageId": key,
        "timestamp": iso(timestamp),
        "context": {"library": {"name": "safar", "version": "internal"}},
    }
    user_id = value if kind == USER_ID else None
    anonymous_id = value if kind == ANONYMOUS_ID else None
    if user_id is not None:
        body["userId"] = user_id
    if anonymous_id is not None:
        body["anonymousId"] = anonymous_id
    if user_id is None and anonymous_id is None:
        # Identity resolution reads other identifier types from (context) traits.
        body["context"]["traits"] = {kind: value}
    if type == "track":
        body["event"] = name
        body["properties"] = properties or {}
    else:
        body["traits"] = dict(traits or {})
    return Event(
        source_id=SOURCE_ID,
        message_id=key,
        type=type,
        name=name if type == "track" else None,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=timestamp,
        received_at=received_at,
        body=_encode(body),
    )


def track_event(
    *, key: str, identifier: Identifier, name: str, properties: dict[str, Any], at: int
) -> Event:
    """A ``track`` event about something Safar saw happen at ``at`` (also its receipt time):
    a receipt, an open, a reply, an entry request."""
    return internal_event(
        key=key,
        type="track",
        identifier=identifier,
        timestamp=at,
        received_at=at,
        name=name,
        properties=properties,
    )
