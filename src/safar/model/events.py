"""Events as the log stores them.

Times are integers: milliseconds since the Unix epoch, UTC. ``body`` holds the event's JSON object
exactly as the client sent it (Segment spec fields and any others); the normalized columns beside it
(``message_id``, ``timestamp``, ``received_at`` …) are what Safar decided, and win over the body.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import msgspec

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

EVENT_TYPES: Final = frozenset({"track", "identify", "page", "screen", "group", "alias"})


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One validated event. ``seq`` is 0 until the log assigns it on append."""

    source_id: str
    message_id: str
    type: str
    name: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: int
    received_at: int
    body: bytes
    seq: int = 0

    def payload(self, *, times: bool = True) -> dict[str, Any]:
        """The event as a Segment-shaped JSON object, with Safar's normalized fields applied;
        without ``timestamp`` and ``receivedAt`` when not ``times`` (for a reader known not to
        look at them: formatting them was 3% of the audience processor's time)."""
        try:
            data: dict[str, Any] = msgspec.json.decode(self.body)
        except RecursionError:
            # Nested too deep to read, taken before ingestion limited nesting: read as carrying
            # nothing beyond its name and the fields below, rather than stopping its readers.
            named = "event" if self.type == "track" else "name"
            data = {} if self.name is None else {named: self.name}
        data.pop("writeKey", None)
        data["type"] = self.type
        data["messageId"] = self.message_id
        if times:
            data["timestamp"] = iso(self.timestamp)
            data["receivedAt"] = iso(self.received_at)
        if self.user_id is not None:
            data["userId"] = self.user_id
        if self.anonymous_id is not None:
            data["anonymousId"] = self.anonymous_id
        return data


class AppendResult(msgspec.Struct, frozen=True):
    """What :meth:`safar.ports.EventLog.append` did: how many events it stored and skipped."""

    appended: int
    duplicates: int
    last_seq: int


_EPOCH_DATE: Final = date(1970, 1, 1)
#: ``YYYY-MM-DDTHH:MM:`` by minute since the epoch, for :func:`iso`; emptied when full.
_MINUTES: dict[int, str] = {}
_MINUTES_KEPT: Final = 100_000


def iso(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, e.g. ``2026-11-23T15:20:50.123Z``.

    The text up to the minute is cached: every event handed to a condition or a template is
    formatted twice (``timestamp``, ``receivedAt``), and building a ``datetime`` for each was a
    tenth of the audience processor's time."""
    minute, rest = divmod(ms, 60_000)
    head = _MINUTES.get(minute)
    if head is None:
        if len(_MINUTES) >= _MINUTES_KEPT:
            _MINUTES.clear()
        day, hour_minute = divmod(minute, 1440)
        hour, minute_of_hour = divmod(hour_minute, 60)
        date_text = (_EPOCH_DATE + timedelta(days=day)).isoformat()
        head = _MINUTES[minute] = f"{date_text}T{hour:02d}:{minute_of_hour:02d}:"
    seconds, millis = divmod(rest, 1000)
    return "%s%02d.%03dZ" % (head, seconds, millis)  # noqa: UP031 (faster than an f-string here)


def parse_time(value: str) -> int:
    """Parse an ISO 8601 timestamp into milliseconds since the epoch. Naive times count as UTC.

    Raises :class:`ValueError` for anything that is not an ISO 8601 date-time.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Integer arithmetic: float seconds * 1000 is off by one millisecond for some times.
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
