"""The Segment-compatible HTTP tracking API: ``/v1/batch``, ``/v1/track`` … and analytics.js's
short paths (``/v1/t``, ``/v1/b`` …), so existing SDKs work by pointing them at Safar.

A request is all or nothing: it is authenticated (write key), decoded, every event validated and
rate-limited, and only then handed to the :class:`~safar.ingest.writer.IngestWriter`; ``200
{"success": true}`` is sent after the events are durably committed. Any failure answers
``{"success": false, "error": "..."}`` with 400 (invalid, too large), 401 (write key), 429 (rate
limit, with ``Retry-After``) or 5xx (storage; retry), and stores nothing.

CORS is answered here, per route, so the routes can be mounted into any app whatever its own CORS
policy: browsers may post from any origin (write keys, not cookies, authenticate).
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

import msgspec
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from safar.config import IngestSettings
from safar.errors import AuthError, PayloadTooLarge, RateLimited, SafarError, ValidationError
from safar.ingest.ratelimit import RateLimiter
from safar.ingest.validate import (
    build_event,
    decode_body,
    decode_event,
    event_from_json,
    split_request,
)
from safar.ingest.writer import IngestWriter
from safar.model.events import Event
from safar.model.keys import Source
from safar.ports import Clock, KeyStore

_log = logging.getLogger(__name__)

#: Paths taking ``{"batch": [...]}``. ``/v1/b`` is analytics.js's batching path.
BATCH_PATHS: Final = ("/v1/batch", "/v1/import", "/v1/b")
#: Paths taking one event, with the type they imply.
SINGLE_PATHS: Final = {
    **{f"/v1/{kind}": kind for kind in ("track", "identify", "page", "screen", "group", "alias")},
    **{
        f"/v1/{kind[0]}": kind for kind in ("track", "identify", "page", "screen", "group", "alias")
    },
}
#: analytics.js posts its own delivery metrics here; accepted and dropped, as they are not events.
METRICS_PATH: Final = "/v1/m"

_OK: Final = b'{"success":true}'
_JSON_BYTES: Final = b"application/json"
_CORS_ALLOWED_HEADERS: Final = "authorization, content-type, content-encoding"
_SOURCE_CACHE_MS: Final = 60_000
_NO_KEY: Final = "no write key; send it as the HTTP Basic auth user name or as writeKey in the body"


def ingest_routes(
    *, keys: KeyStore, writer: IngestWriter, clock: Clock, settings: IngestSettings
) -> list[BaseRoute]:
    """The tracking API's routes, CORS included. The caller starts and closes ``writer``."""
    api = _IngestApi(keys=keys, writer=writer, clock=clock, settings=settings)
    methods = ["POST", "OPTIONS"]
    # Plain ASGI endpoints rather than Starlette's Request/Response: on the hot path their
    # per-request overhead was a large share of the API process's time.
    routes: list[BaseRoute] = [
        Route(path, _Endpoint(api.receive, None), methods=methods) for path in BATCH_PATHS
    ]
    routes += [
        Route(path, _Endpoint(api.receive, kind), methods=methods)
        for path, kind in SINGLE_PATHS.items()
    ]
    routes.append(Route(METRICS_PATH, _Endpoint(api.metrics, None), methods=methods))
    return routes


class _Headers:
    """The few request headers the tracking API reads, from the ASGI scope (names lower-case)."""

    __slots__ = ("authorization", "content_encoding", "content_length", "origin", "preflight")

    def __init__(self, scope: Scope) -> None:
        self.authorization: str | None = None
        self.content_encoding: str | None = None
        self.content_length: str | None = None
        self.origin: str | None = None
        self.preflight: str | None = None
        # The first of repeated headers wins, as with Starlette's Headers.get.
        for name, value in reversed(scope["headers"]):
            if name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"content-encoding":
                self.content_encoding = value.decode("latin-1")
            elif name == b"content-length":
                self.content_length = value.decode("latin-1")
            elif name == b"origin":
                self.origin = value.decode("latin-1")
            elif name == b"access-control-request-headers":
                self.preflight = value.decode("latin-1")


class _Reply(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class _Endpoint:
    """An ASGI app calling ``handler(kind, method, headers, receive)`` and sending its reply."""

    __slots__ = ("_handler", "_kind")

    def __init__(
        self,
        handler: Callable[[str | None, str, _Headers, Receive], Awaitable[_Reply]],
        kind: str | None,
    ) -> None:
        self._handler = handler
        self._kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, body, headers = await self._handler(
            self._kind, scope["method"], _Headers(scope), receive
        )
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if status != 204:
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
            raw.append((b"content-type", _JSON_BYTES))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


class _Sources:
    """Write key → source, remembered for a minute so the hot path rarely reaches the key store."""

    def __init__(self, keys: KeyStore, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock
        self._known: dict[str, tuple[Source, int]] = {}

    def get(self, write_key: str) -> Source | None:
        now = self._clock.now_ms()
        hit = self._known.get(write_key)
        if hit is not None and hit[1] > now:
            return hit[0]
        source = self._keys.source_by_write_key(write_key)
        # Only known keys are kept, so the cache is bounded by the number of sources.
        if source is None:
            self._known.pop(write_key, None)
        else:
            self._known[write_key] = (source, now + _SOURCE_CACHE_MS)
        return source


class _IngestApi:
    def __init__(
        self, *, keys: KeyStore, writer: IngestWriter, clock: Clock, settings: IngestSettings
    ) -> None:
        self._sources = _Sources(keys, clock)
        self._writer = writer
        self._clock = clock
        self._limits = settings
        self._limiter = RateLimiter.from_settings(clock, settings)

    async def receive(
        self, kind: str | None, method: str, headers: _Headers, receive: Receive
    ) -> _Reply:
        """One request to a batch path (``kind`` None) or a single-event path."""
        cors = _cors_headers(headers)
        if method == "OPTIONS":
            return _preflight(headers, cors)
        try:
            events = await self._events(kind, headers, receive)
            if events:
                await self._writer.append(events)
        except SafarError as exc:
            return _failure(exc, cors)
        except Exception:
            _log.exception("ingestion failed")
            return _failure(SafarError("internal error; retry later"), cors)
        return _Reply(200, _OK, cors)

    async def metrics(
        self, kind: str | None, method: str, headers: _Headers, receive: Receive
    ) -> _Reply:
        cors = _cors_headers(headers)
        if method == "OPTIONS":
            return _preflight(headers, cors)
        return _Reply(200, _OK, cors)

    async def _events(self, kind: str | None, headers: _Headers, receive: Receive) -> list[Event]:
        limits = self._limits
        authorization = headers.authorization
        source = (
            self._source(_basic_user(authorization), "Authorization") if authorization else None
        )
        body = await _read_body(headers, receive, limits.max_batch_bytes)
        body = decode_body(body, headers.content_encoding, limits)
        split = split_request(body, batch=kind is None, limits=limits)
        if source is None and split.write_key is not None:
            source = self._source(split.write_key, "writeKey")
        received_at = self._clock.now_ms()
        if source is not None:
            source_id = source.id
            events = [
                event_from_json(
                    raw,
                    source_id=source_id,
                    received_at=received_at,
                    sent_at=split.sent_at,
                    default_type=kind,
                    location=f"batch[{index}]" if kind is None else "event",
                    limits=limits,
                )
                for index, raw in enumerate(split.events)
            ]
            costs = {source_id: len(events)}
        else:
            events, costs = self._events_keyed_each(kind, split.events, received_at, split.sent_at)
        if kind is not None and events[0].type != kind:
            raise ValidationError(
                f"is {events[0].type!r}, but this path takes {kind}", "event.type"
            )
        wait = self._limiter.take(costs)
        if wait > 0:
            raise RateLimited(f"rate limit exceeded; retry in {math.ceil(wait)} s", wait)
        return events

    def _events_keyed_each(
        self, kind: str | None, raws: list[bytes], received_at: int, sent_at: int | None
    ) -> tuple[list[Event], dict[str, int]]:
        """Events carrying their own ``writeKey`` (analytics.js does): every key must be known."""
        if not raws:
            raise AuthError(_NO_KEY)
        events: list[Event] = []
        costs: dict[str, int] = {}
        for index, raw in enumerate(raws):
            location = "event" if kind is not None else f"batch[{index}]"
            fields = decode_event(raw, location=location, limits=self._limits)
            write_key = fields.write_key
            if type(write_key) is not str or not write_key:
                raise AuthError(f"{location}: {_NO_KEY}")
            source = self._source(write_key, f"{location}.writeKey")
            events.append(
                build_event(
                    fields,
                    raw,
                    source_id=source.id,
                    received_at=received_at,
                    sent_at=sent_at,
                    default_type=kind,
                    location=location,
                )
            )
            costs[source.id] = costs.get(source.id, 0) + 1
        return events, costs

    def _source(self, write_key: str, where: str) -> Source:
        source = self._sources.get(write_key)
        if source is None:
            raise AuthError(f"{where}: unknown write key")
        return source


def _basic_user(authorization: str) -> str:
    """The write key from ``Basic base64(key:)``. Some clients put it in the password instead."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise AuthError("Authorization: use HTTP Basic auth with the write key as the user name")
    try:
        user, _, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("Authorization: not valid HTTP Basic credentials") from None
    key = user or password
    if not key:
        raise AuthError("Authorization: the write key is empty")
    return key


async def _read_body(headers: _Headers, receive: Receive, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes rather than after reading it all."""
    declared = headers.content_length
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{declared} bytes, over the {limit}-byte limit", "body")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"over the {limit}-byte limit", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _failure(exc: SafarError, cors: dict[str, str]) -> _Reply:
    headers = dict(cors)
    if isinstance(exc, RateLimited):
        seconds = str(max(1, math.ceil(exc.retry_after)))
        headers["Retry-After"] = seconds
        # Older analytics.js builds read this one (as seconds to wait) instead of Retry-After.
        headers["X-RateLimit-Reset"] = seconds
    # "code" and "message" are what Segment's own API answers and what its SDKs read to report
    # the error; "error" is Safar's name for the message everywhere else.
    body = msgspec.json.encode(
        {
            "success": False,
            "error": exc.message,
            "code": _ERROR_CODES.get(exc.status, "error"),
            "message": exc.message,
        }
    )
    return _Reply(exc.status, body, headers)


_ERROR_CODES: Final = {
    400: "invalid_request",
    401: "unauthorized",
    413: "payload_too_large",
    429: "rate_limited",
    500: "server_error",
}


def _cors_headers(headers: _Headers) -> dict[str, str]:
    origin = headers.origin
    if origin is None:
        return {}
    # Echoing the origin (not "*") lets analytics.js send with credentials: "include" too.
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def _preflight(headers: _Headers, cors: dict[str, str]) -> _Reply:
    # Also allow whatever else the browser asks for: analytics.js adds headers of its own
    # (X-Retry-Count), and a refused preflight loses the events.
    asked = headers.preflight
    allowed = f"{_CORS_ALLOWED_HEADERS}, {asked}" if asked else _CORS_ALLOWED_HEADERS
    reply = {
        **cors,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": allowed,
        "Access-Control-Max-Age": "86400",
    }
    return _Reply(204, b"", reply)
