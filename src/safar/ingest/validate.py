"""Turning Segment-shaped JSON into validated :class:`~safar.model.events.Event` values.

No I/O and no clock (the receive time is passed in); the one random thing is the messageId given
to an event that has none.

The HTTP API and the CSV/JSONL importer both come through here, so the rules live in one place:

- ``type`` is one of :data:`~safar.model.events.EVENT_TYPES` (from the item, else the caller's
  default, e.g. the endpoint's path);
- ``userId`` or ``anonymousId`` is a non-empty string (numbers are turned into strings, as some
  SDKs send them); ``track`` needs ``event``, ``alias`` needs ``previousId``, ``group`` ``groupId``;
- ``messageId`` is at most 100 characters; a missing one gets a random uuid4 (such an event cannot
  be deduplicated when resent);
- the event time is ``timestamp``, else ``originalTimestamp``, else the receive time; when
  ``sentAt`` is known too, client clock skew is corrected as Segment does:
  ``timestamp + (receivedAt - sentAt)``.

Only the fields these rules need are decoded (into :class:`EventFields`, by msgspec in C); the
rest of the event stays as raw JSON bytes in ``Event.body``. Errors are :class:`ValidationError`
whose location names the event and the field, e.g. ``batch[3].userId``.
"""

from __future__ import annotations

import math
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import msgspec

from safar.config import IngestSettings
from safar.core.identity import MAX_IDENTIFIER_CHARS
from safar.errors import PayloadTooLarge, ValidationError
from safar.model.events import EVENT_TYPES, Event, parse_time
from safar.model.nesting import check_nesting, too_deep

MAX_MESSAGE_ID_CHARS: Final = 100

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_ONE_MS: Final = timedelta(milliseconds=1)
_TYPES_TEXT: Final = ", ".join(sorted(EVENT_TYPES))
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
# zlib picks gzip or zlib framing from the header: clients disagree on what "deflate" means.
_DEFLATE_WBITS: Final = 32 + zlib.MAX_WBITS


class EventFields(msgspec.Struct, rename="camel"):
    """The fields of one event that validation reads, decoded as sent; :func:`build_event` checks
    them."""

    type: Any = None
    user_id: Any = None
    anonymous_id: Any = None
    message_id: Any = None
    event: Any = None
    name: Any = None
    previous_id: Any = None
    group_id: Any = None
    timestamp: Any = None
    original_timestamp: Any = None
    sent_at: Any = None
    write_key: Any = None


class SplitRequest(NamedTuple):
    """A request body cut into events: the body's ``writeKey`` and ``sentAt``, and each event."""

    write_key: str | None
    sent_at: int | None
    events: list[bytes]


class _Envelope(msgspec.Struct, rename="camel"):
    # Raw items: each event's size is then a len(), and its bytes are kept as the client sent them.
    batch: list[msgspec.Raw] | None = None
    write_key: Any = None
    sent_at: Any = None
    context: Any = None
    integrations: Any = None


_MSGSPEC_TYPES: Final = {
    "array": "an array",
    "object": "an object",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}
_FIELDS_DECODER: Final = msgspec.json.Decoder(EventFields)
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)


def event_from_json(
    raw: bytes | dict[str, Any],
    *,
    source_id: str,
    received_at: int,
    sent_at: int | None,
    default_type: str | None,
    location: str,
    limits: IngestSettings,
) -> Event:
    """Validate one event (JSON bytes or an already decoded object) and build its :class:`Event`.

    ``sent_at`` is the batch's ``sentAt`` (the event's own wins); ``default_type`` is used when the
    event has no ``type``; ``location`` prefixes error locations (``batch[3]`` gives
    ``batch[3].userId``). Raises :class:`ValidationError`, or :class:`PayloadTooLarge` for an
    event over ``limits.max_event_bytes``.
    """
    body = _encode(raw, location) if isinstance(raw, dict) else raw
    fields = decode_event(body, location=location, limits=limits)
    return build_event(
        fields,
        body,
        source_id=source_id,
        received_at=received_at,
        sent_at=sent_at,
        default_type=default_type,
        location=location,
    )


def decode_event(raw: bytes, *, location: str, limits: IngestSettings) -> EventFields:
    """Check one event's size and decode the fields validation needs. The first half of
    :func:`event_from_json`, for callers that need ``writeKey`` before they know the source."""
    if len(raw) > limits.max_event_bytes:
        raise PayloadTooLarge(
            f"event is {len(raw)} bytes, over the {limits.max_event_bytes}-byte limit", location
        )
    check_nesting(raw, location)
    try:
        return _FIELDS_DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise _translate(exc, location) from None
    except msgspec.DecodeError as exc:
        raise ValidationError(f"malformed JSON: {exc}", location) from None


def build_event(
    fields: EventFields,
    body: bytes,
    *,
    source_id: str,
    received_at: int,
    sent_at: int | None,
    default_type: str | None,
    location: str,
) -> Event:
    """Apply the rules to decoded fields. The second half of :func:`event_from_json`."""
    kind = fields.type
    if kind is None:
        if default_type is None:
            raise ValidationError(f"missing; expected one of {_TYPES_TEXT}", f"{location}.type")
        kind = default_type
    elif type(kind) is not str or kind not in EVENT_TYPES:
        raise ValidationError(
            f"{_show(kind)} is not an event type; expected one of {_TYPES_TEXT}",
            f"{location}.type",
        )
    user_id = _identifier(fields.user_id, location, "userId")
    anonymous_id = _identifier(fields.anonymous_id, location, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise ValidationError(
            "missing; every event needs a userId or an anonymousId", f"{location}.userId"
        )
    message_id = _identifier(fields.message_id, location, "messageId", MAX_MESSAGE_ID_CHARS)
    if message_id is None:
        message_id = str(uuid.uuid4())
    if kind == "alias" and _identifier(fields.previous_id, location, "previousId") is None:
        raise ValidationError("missing; alias events need a previousId", f"{location}.previousId")
    if kind == "group" and _identifier(fields.group_id, location, "groupId") is None:
        raise ValidationError("missing; group events need a groupId", f"{location}.groupId")
    name = _name(kind, fields, location)
    return Event(
        source_id=source_id,
        message_id=message_id,
        type=kind,
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=_event_time(fields, received_at, sent_at, location),
        received_at=received_at,
        body=body,
    )


def split_request(body: bytes, *, batch: bool, limits: IngestSettings) -> SplitRequest:
    """Cut a request body (already through :func:`decode_body`) into raw events.

    A batch body is ``{"batch": [...], "writeKey"?, "sentAt"?, "context"?, "integrations"?}``; a
    batch-level ``context`` or ``integrations`` is merged under each event's own, as Segment does.
    Any other body is one event, carrying its own ``writeKey`` and ``sentAt``.
    """
    if len(body) > limits.max_batch_bytes:
        raise PayloadTooLarge(
            f"{len(body)} bytes, over the {limits.max_batch_bytes}-byte limit", "body"
        )
    if not batch:
        return SplitRequest(None, None, [body])
    try:
        envelope = _ENVELOPE_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        raise _translate(exc, "") from None
    except msgspec.DecodeError as exc:
        raise ValidationError(f"malformed JSON: {exc}", "body") from None
    except RecursionError:
        # Skipping over an event nested hundreds of levels deep recurses too.
        raise too_deep("body") from None
    items = envelope.batch
    if items is None:
        raise ValidationError("missing; expected an array of events", "batch")
    if len(items) > limits.max_batch_events:
        raise PayloadTooLarge(
            f"has {len(items)} events, over the limit of {limits.max_batch_events}", "batch"
        )
    write_key = envelope.write_key
    if write_key is not None and type(write_key) is not str:
        raise ValidationError("must be a string", "writeKey")
    sent_at = None if envelope.sent_at is None else _time(envelope.sent_at, "sentAt")
    if envelope.context is not None or envelope.integrations is not None:
        events = _merge_shared(items, envelope.context, envelope.integrations)
    else:
        events = [bytes(item) for item in items]
    return SplitRequest(write_key or None, sent_at, events)


def decode_body(body: bytes, content_encoding: str | None, limits: IngestSettings) -> bytes:
    """Undo ``Content-Encoding`` (gzip or deflate). The output is capped at
    ``limits.max_batch_bytes``, so a small body that inflates hugely (a gzip bomb) is refused with
    :class:`PayloadTooLarge` without being inflated in full."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = _GZIP_WBITS
    elif encoding == "deflate":
        wbits = _DEFLATE_WBITS
    else:
        raise ValidationError(
            f"{encoding!r} is not supported; send gzip or no encoding", "Content-Encoding"
        )
    cap = limits.max_batch_bytes
    parts: list[bytes] = []
    size = 0
    data = body
    try:
        # A gzip stream may hold several members back to back; each gets what is left of the cap.
        while True:
            inflater = zlib.decompressobj(wbits)
            part = inflater.decompress(data, cap - size + 1)
            size += len(part)
            if size > cap:
                raise PayloadTooLarge(f"inflates to over the {cap}-byte limit", f"{encoding} body")
            parts.append(part)
            if not inflater.eof:
                raise ValidationError("is truncated", f"{encoding} body")
            data = inflater.unused_data
            if not data:
                break
    except zlib.error as exc:
        raise ValidationError(f"cannot be inflated: {exc}", f"{encoding} body") from None
    return b"".join(parts)


def _identifier(
    value: Any, location: str, field: str, limit: int = MAX_IDENTIFIER_CHARS
) -> str | None:
    """A string id of at most ``limit`` characters, or None when absent or empty; integral and
    decimal numbers become strings."""
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int:
        text = str(value)
    elif kind is float and math.isfinite(value):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        raise ValidationError(
            f"must be a string or a number, not {_show(value)}", f"{location}.{field}"
        )
    check_id_text(text, f"{location}.{field}", limit)
    return None if not text or text.isspace() else text


def check_id_text(text: str, location: str, limit: int = MAX_IDENTIFIER_CHARS) -> None:
    """Raise :class:`ValidationError` at ``location`` unless some store can key on ``text``:
    no NUL (PostgreSQL text refuses it, and no SDK sends it), at most ``limit`` characters
    (see ``MAX_IDENTIFIER_CHARS``)."""
    if "\x00" in text:
        raise ValidationError("must not contain the NUL character (\\u0000)", location)
    if len(text) > limit:
        raise ValidationError(f"is {len(text)} characters, over the limit of {limit}", location)


def _name(kind: str, fields: EventFields, location: str) -> str | None:
    """``event`` for track (required), ``name`` for page and screen, None for other types."""
    if kind == "track":
        event = fields.event
        if type(event) is not str or not event or event.isspace():
            what = "missing" if event is None else f"must be a non-empty string, not {_show(event)}"
            raise ValidationError(f"{what}; track events need an event name", f"{location}.event")
        return str(event)
    if kind == "page" or kind == "screen":
        name = fields.name
        if name is not None and type(name) is not str:
            raise ValidationError(f"must be a string, not {_show(name)}", f"{location}.name")
        return name
    return None


def _event_time(fields: EventFields, received_at: int, sent_at: int | None, location: str) -> int:
    if fields.sent_at is not None:
        sent_at = _time(fields.sent_at, f"{location}.sentAt")
    if fields.timestamp is not None:
        stamp = _time(fields.timestamp, f"{location}.timestamp")
    elif fields.original_timestamp is not None:
        stamp = _time(fields.original_timestamp, f"{location}.originalTimestamp")
    else:
        return received_at
    # The client's clock may be off; the difference between its sentAt and our receive time is
    # the skew (plus network delay, which Segment accepts as well).
    return stamp if sent_at is None else stamp + (received_at - sent_at)


def _time(value: Any, location: str) -> int:
    """Milliseconds since the epoch from an ISO 8601 string; naive times count as UTC."""
    if type(value) is not str:
        raise ValidationError(f"must be an ISO 8601 date-time string, not {_show(value)}", location)
    try:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            # Rare spellings (surrounding blanks, a lower-case "z") go the slower, lenient way.
            return parse_time(value)
        # Timedelta arithmetic is exact (float timestamps can be off by one millisecond) and
        # faster than datetime.timestamp() for aware times.
        return (parsed - (_EPOCH if parsed.tzinfo is not None else _NAIVE_EPOCH)) // _ONE_MS
    except (ValueError, OverflowError):
        raise ValidationError(f"{_show(value)} is not an ISO 8601 date-time", location) from None


def _merge_shared(items: list[msgspec.Raw], context: Any, integrations: Any) -> list[bytes]:
    """Put a batch's shared ``context``/``integrations`` under each event's own (event keys win)."""
    shared = {"context": context, "integrations": integrations}
    for field, value in shared.items():
        if value is not None and type(value) is not dict:
            raise ValidationError("must be a JSON object", field)
    events: list[bytes] = []
    for item in items:
        event = msgspec.json.decode(item)
        if type(event) is dict:
            for field, value in shared.items():
                own = event.get(field)
                if value is not None and (own is None or type(own) is dict):
                    event[field] = value if own is None else {**value, **own}
            events.append(msgspec.json.encode(event))
        else:
            events.append(bytes(item))  # not an object: the validator reports it with its index
    return events


def _translate(exc: msgspec.ValidationError, location: str) -> ValidationError:
    """Reword msgspec's complaint (e.g. "Expected `object`, got `array` - at `$.batch`") in our
    terms, at our location (``location`` empty means the request body)."""
    text, _, path = str(exc).partition(" - at `$")
    path = path.rstrip("`")
    where = f"{location}{path}" if location else path.lstrip(".") or "body"
    expected, _, got = text.partition("`, got `")
    got = _MSGSPEC_TYPES.get(got.rstrip("`"), got.rstrip("`"))
    if expected == "Expected `object":
        return ValidationError(f"must be a JSON object, not {got}", where)
    if expected == "Expected `array | null":
        return ValidationError(f"must be an array of events, not {got}", where)
    return ValidationError(text[:1].lower() + text[1:], where)


def _encode(raw: dict[str, Any], location: str) -> bytes:
    try:
        return msgspec.json.encode(raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"cannot be written as JSON: {exc}", location) from None


def _show(value: Any) -> str:
    """A short description of a bad value for an error message (never the whole value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
