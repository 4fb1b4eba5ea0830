"""The tracking API over HTTP: what Segment's SDKs and analytics.js send, and every refusal.

Every refusal also checks that nothing was stored: a request is all or nothing.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
import msgspec
import pytest
from starlette.testclient import TestClient

from safar.config import IngestSettings
from safar.ingest.app import create_ingest_app
from safar.ingest.http import BATCH_PATHS, SINGLE_PATHS
from safar.ingest.writer import IngestWriter
from safar.model.events import Event
from safar.model.keys import Source
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.keys import MemoryKeyStore
from safar.testing import FakeClock
from tests.ingest.conftest import basic

EXTRA: dict[str, dict[str, Any]] = {
    "track": {"event": "Clicked"},
    "identify": {"traits": {"plan": "pro"}},
    "page": {"name": "Home"},
    "screen": {"name": "Home"},
    "group": {"groupId": "g1"},
    "alias": {"previousId": "anon-1"},
}


def item(index: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Clicked",
        "userId": f"u{index}",
        "messageId": f"m{index}",
    } | fields


def nested(levels: int) -> list[Any]:
    """Lists ``levels`` deep: ``[[…]]``."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def batch_of(*items: dict[str, Any], **envelope: Any) -> bytes:
    return msgspec.json.encode({"batch": list(items), **envelope})


def stored(event_log: MemoryEventLog) -> list[Event]:
    return event_log.read(0, 10_000)


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert response.headers["content-type"] == "application/json"


def assert_refused(
    response: httpx.Response, status: int, error: str, event_log: MemoryEventLog
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"].startswith(error), body["error"]
    assert event_log.count() == 0


# --- acceptance ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BATCH_PATHS)
def test_batch_paths_store_every_event(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog, source: Source, path: str
) -> None:
    response = client.post(path, content=batch_of(item(0), item(1), item(2)), headers=auth)
    assert_ok(response)
    events = stored(event_log)
    assert [e.message_id for e in events] == ["m0", "m1", "m2"]
    assert {e.source_id for e in events} == {source.id}
    assert msgspec.json.decode(events[1].body) == item(1)


@pytest.mark.parametrize(("path", "kind"), SINGLE_PATHS.items())
def test_single_event_paths_take_the_type_from_the_path(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog, path: str, kind: str
) -> None:
    body = {"userId": "u1", "messageId": "m1", **EXTRA[kind]}
    assert_ok(client.post(path, json=body, headers=auth))
    (event,) = stored(event_log)
    assert (event.type, event.user_id, event.message_id) == (kind, "u1", "m1")


def test_all_segment_paths_and_analytics_js_short_paths_exist() -> None:
    kinds = ("track", "identify", "page", "screen", "group", "alias")
    assert {f"/v1/{k}" for k in kinds} | {f"/v1/{k[0]}" for k in kinds} == set(SINGLE_PATHS)
    assert set(BATCH_PATHS) == {"/v1/batch", "/v1/import", "/v1/b"}


def test_page_and_screen_names_and_track_event_names_are_kept(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    body = batch_of(
        item(0, event="Order Completed"),
        {"type": "page", "anonymousId": "a1", "name": "Pricing"},
        {"type": "screen", "anonymousId": "a1", "name": "Cart"},
    )
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    assert [e.name for e in stored(event_log)] == ["Order Completed", "Pricing", "Cart"]


def test_write_key_in_the_body(
    client: TestClient, event_log: MemoryEventLog, source: Source
) -> None:
    body = batch_of(item(0), writeKey=source.write_key)
    assert_ok(client.post("/v1/batch", content=body))
    assert stored(event_log)[0].source_id == source.id


def test_write_key_in_each_event_may_mix_sources(
    client: TestClient, event_log: MemoryEventLog, source: Source, keys: MemoryKeyStore
) -> None:
    app_source = keys.create_source("app")
    body = batch_of(item(0, writeKey=source.write_key), item(1, writeKey=app_source.write_key))
    assert_ok(client.post("/v1/b", content=body))
    assert [e.source_id for e in stored(event_log)] == [source.id, app_source.id]


def test_analytics_js_single_event_with_its_write_key_and_sent_at(
    client: TestClient, event_log: MemoryEventLog, source: Source, clock: FakeClock
) -> None:
    body = {
        "type": "page",
        "anonymousId": "a1",
        "properties": {"path": "/"},
        "writeKey": source.write_key,
        "sentAt": iso(clock.now_ms()),
        "timestamp": iso(clock.now_ms() - 500),
        "messageId": "ajs-next-1",
    }
    response = client.post(
        "/v1/p", content=msgspec.json.encode(body), headers={"Content-Type": "text/plain"}
    )
    assert_ok(response)
    (event,) = stored(event_log)
    assert (event.source_id, event.type, event.timestamp) == (
        source.id,
        "page",
        clock.now_ms() - 500,
    )
    assert "writeKey" not in event.payload()


def test_basic_auth_wins_over_a_body_write_key(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog, source: Source
) -> None:
    body = batch_of(item(0, writeKey="wk_other"), writeKey="wk_other")
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    assert stored(event_log)[0].source_id == source.id


def test_a_write_key_sent_as_the_basic_auth_password_is_accepted(
    client: TestClient, event_log: MemoryEventLog, source: Source
) -> None:
    token = base64.b64encode(f":{source.write_key}".encode()).decode()
    response = client.post(
        "/v1/batch", content=batch_of(item(0)), headers={"Authorization": f"Basic {token}"}
    )
    assert_ok(response)
    assert event_log.count() == 1


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json", None],
)
def test_json_is_read_whatever_the_content_type(
    client: TestClient,
    auth: dict[str, str],
    event_log: MemoryEventLog,
    content_type: str | None,
) -> None:
    headers = dict(auth) | ({"Content-Type": content_type} if content_type else {})
    assert_ok(client.post("/v1/batch", content=batch_of(item(0)), headers=headers))
    assert event_log.count() == 1


def test_gzip_bodies(client: TestClient, auth: dict[str, str], event_log: MemoryEventLog) -> None:
    body = gzip.compress(batch_of(*(item(i) for i in range(50))))
    response = client.post("/v1/batch", content=body, headers=auth | {"Content-Encoding": "gzip"})
    assert_ok(response)
    assert event_log.count() == 50


def test_a_chunked_body_without_content_length(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    body = batch_of(item(0), item(1))
    chunks = iter([body[:10], body[10:]])
    assert_ok(client.post("/v1/batch", content=chunks, headers=auth))
    assert event_log.count() == 2


def test_a_client_gone_before_the_whole_body_stores_nothing(
    keys: MemoryKeyStore,
    writer: IngestWriter,
    clock: FakeClock,
    limits: IngestSettings,
    auth: dict[str, str],
    event_log: MemoryEventLog,
) -> None:
    app = create_ingest_app(keys=keys, writer=writer, clock=clock, settings=limits)
    body = batch_of(item(0), item(1))
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in auth.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/batch",
        "raw_path": b"/v1/batch",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("testserver", 80),
        "client": ("testclient", 50000),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] != 200
    assert event_log.count() == 0


def test_an_empty_batch_is_accepted_and_stores_nothing(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    assert_ok(client.post("/v1/batch", content=b'{"batch": []}', headers=auth))
    assert event_log.count() == 0


def test_clock_skew_is_corrected_from_the_batch_sent_at(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog, clock: FakeClock
) -> None:
    # The device's clock runs an hour behind; the event happened 3 s before the batch was sent.
    device_now = clock.now_ms() - 3_600_000
    body = batch_of(item(0, timestamp=iso(device_now - 3000)), sentAt=iso(device_now))
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    (event,) = stored(event_log)
    assert event.timestamp == clock.now_ms() - 3000
    assert event.received_at == clock.now_ms()


def test_original_timestamp_is_used_when_timestamp_is_missing(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    when = datetime(2025, 6, 1, 8, 30, tzinfo=UTC)
    body = batch_of(item(0, originalTimestamp=when.isoformat()))
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    assert stored(event_log)[0].timestamp == int(when.timestamp() * 1000)


def test_without_any_timestamp_the_receive_time_is_used(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog, clock: FakeClock
) -> None:
    clock.advance(days=3)
    assert_ok(client.post("/v1/batch", content=batch_of(item(0)), headers=auth))
    assert stored(event_log)[0].timestamp == clock.now_ms()


def test_a_resent_batch_is_stored_once_and_still_succeeds(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    body = batch_of(item(0), item(1))
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    assert event_log.count() == 2


def test_numbers_as_user_ids_are_stored_as_strings(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    body = batch_of(item(0, userId=12345), item(1, userId=None, anonymousId=7.5))
    assert_ok(client.post("/v1/batch", content=body, headers=auth))
    first, second = stored(event_log)
    assert (first.user_id, second.user_id, second.anonymous_id) == ("12345", None, "7.5")


def test_analytics_js_metrics_are_accepted_and_dropped(
    client: TestClient, event_log: MemoryEventLog
) -> None:
    assert_ok(client.post("/v1/m", content=b'{"series": []}'))
    assert event_log.count() == 0


# --- CORS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/t", "/v1/b", "/v1/m"])
def test_cors_preflight_allows_any_origin_and_the_sdk_headers(
    client: TestClient, path: str
) -> None:
    response = client.options(
        path,
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-retry-count",
        },
    )
    assert response.status_code == 204
    headers = response.headers
    assert headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in headers["access-control-allow-methods"]
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "content-encoding", "x-retry-count"} <= allowed
    assert int(headers["access-control-max-age"]) > 0


def test_cors_headers_on_success_and_on_refusal(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    origin = {"Origin": "https://shop.example"}
    ok = client.post("/v1/batch", content=batch_of(item(0)), headers=auth | origin)
    refused = client.post("/v1/batch", content=batch_of(item(0)), headers=origin)
    for response in (ok, refused):
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        assert response.headers["access-control-allow-credentials"] == "true"
    assert refused.status_code == 401


# --- refusals -----------------------------------------------------------------------------------


def test_no_write_key_is_401(client: TestClient, event_log: MemoryEventLog) -> None:
    response = client.post("/v1/batch", content=batch_of(item(0), item(1)))
    assert_refused(response, 401, "batch[0]: no write key; send it as the HTTP Basic", event_log)


def test_no_write_key_on_an_empty_batch_is_401(
    client: TestClient, event_log: MemoryEventLog
) -> None:
    assert_refused(
        client.post("/v1/batch", content=b'{"batch":[]}'), 401, "no write key", event_log
    )


def test_unknown_basic_auth_key_is_401(
    client: TestClient, event_log: MemoryEventLog, source: Source
) -> None:
    body = batch_of(item(0), writeKey=source.write_key)
    response = client.post("/v1/batch", content=body, headers=basic("wk_unknown"))
    assert_refused(response, 401, "Authorization: unknown write key", event_log)


def test_unknown_body_write_key_is_401(client: TestClient, event_log: MemoryEventLog) -> None:
    response = client.post("/v1/batch", content=batch_of(item(0), writeKey="wk_unknown"))
    assert_refused(response, 401, "writeKey: unknown write key", event_log)


def test_one_unknown_event_write_key_refuses_the_whole_batch(
    client: TestClient, event_log: MemoryEventLog, source: Source
) -> None:
    body = batch_of(
        item(0, writeKey=source.write_key),
        item(1, writeKey=source.write_key),
        item(2, writeKey="wk_unknown"),
    )
    response = client.post("/v1/batch", content=body)
    assert_refused(response, 401, "batch[2].writeKey: unknown write key", event_log)


def test_one_event_without_a_write_key_refuses_the_whole_batch(
    client: TestClient, event_log: MemoryEventLog, source: Source
) -> None:
    body = batch_of(item(0, writeKey=source.write_key), item(1))
    assert_refused(client.post("/v1/batch", content=body), 401, "batch[1]: no write key", event_log)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("Bearer abc", "Authorization: use HTTP Basic auth"),
        ("Basic !!!", "Authorization: not valid HTTP Basic credentials"),
        ("Basic Og==", "Authorization: the write key is empty"),
    ],
)
def test_malformed_authorization_is_401(
    client: TestClient, event_log: MemoryEventLog, header: str, error: str
) -> None:
    response = client.post(
        "/v1/batch", content=batch_of(item(0)), headers={"Authorization": header}
    )
    assert_refused(response, 401, error, event_log)


class RevocableKeys(MemoryKeyStore):
    """A key store that can forget a key (the port has no revoke call yet) and counts lookups."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.revoked: set[str] = set()
        self.lookups = 0

    def source_by_write_key(self, write_key: str) -> Source | None:
        self.lookups += 1
        return None if write_key in self.revoked else super().source_by_write_key(write_key)


def test_known_write_keys_are_cached_for_a_minute(
    clock: FakeClock, writer: IngestWriter, event_log: MemoryEventLog
) -> None:
    keys = RevocableKeys(clock)
    source = keys.create_source("web")
    app = create_ingest_app(keys=keys, writer=writer, clock=clock, settings=IngestSettings())
    headers = basic(source.write_key)
    with TestClient(app) as client:
        assert_ok(client.post("/v1/batch", content=batch_of(item(0)), headers=headers))
        keys.revoked.add(source.write_key)
        assert_ok(client.post("/v1/batch", content=batch_of(item(1)), headers=headers))
        assert keys.lookups == 1
        clock.advance(seconds=61)
        response = client.post("/v1/batch", content=batch_of(item(2)), headers=headers)
    assert response.status_code == 401
    assert keys.lookups == 2
    assert event_log.count() == 2


BAD_BATCHES: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"batch": [{"type": "track",', "body: malformed JSON"),
    ("not an object", b'[{"type": "track"}]', "body: must be a JSON object, not an array"),
    ("batch not a list", b'{"batch": {"type": "track"}}', "batch: must be an array of events"),
    ("batch missing", b'{"events": []}', "batch: missing; expected an array of events"),
    (
        "event not an object",
        batch_of(item(0), item(1), item(2), "track"),  # type: ignore[arg-type]
        "batch[3]: must be a JSON object, not a string",
    ),
    (
        "unknown type",
        batch_of(item(0), item(1), item(2), item(3, type="purchase")),
        "batch[3].type: 'purchase' is not an event type",
    ),
    (
        "no type",
        batch_of(item(0), item(1), item(2), {"userId": "u3", "event": "e"}),
        "batch[3].type: missing",
    ),
    (
        "no userId or anonymousId",
        batch_of(item(0), item(1), item(2), item(3, userId=None)),
        "batch[3].userId: missing; every event needs a userId or an anonymousId",
    ),
    (
        "track without event",
        batch_of(item(0), item(1), item(2), item(3, event=None)),
        "batch[3].event: missing; track events need an event name",
    ),
    (
        "alias without previousId",
        batch_of(item(0), item(1), item(2), {"type": "alias", "userId": "u3"}),
        "batch[3].previousId: missing",
    ),
    (
        "messageId over 100 characters",
        batch_of(item(0), item(1), item(2), item(3, messageId="m" * 101)),
        "batch[3].messageId: is 101 characters, over the limit of 100",
    ),
    (
        "bad timestamp",
        batch_of(item(0), item(1), item(2), item(3, timestamp="31/12/2025")),
        "batch[3].timestamp: '31/12/2025' is not an ISO 8601 date-time",
    ),
    (
        "bad batch sentAt",
        batch_of(item(0), sentAt="now"),
        "sentAt: 'now' is not an ISO 8601 date-time",
    ),
    (
        "event over 32 KB",
        batch_of(item(0), item(1), item(2), item(3, properties={"blob": "x" * 33_000})),
        "batch[3]: event is 33",
    ),
    (
        "over 2500 events",
        batch_of(*(item(i) for i in range(2501))),
        "batch: has 2501 events, over the limit of 2500",
    ),
    (
        "an event nested 65 levels deep",
        batch_of(item(0), item(1), item(2), item(3, properties={"x": nested(63)})),
        "batch[3]: nests objects and arrays more than 64 levels deep",
    ),
    (
        # Too deep even to skip over: the batch as a whole is refused (it was a 500).
        "an event nested 5,000 levels deep",
        b'{"batch": [{"userId": "u", "event": "e", "properties": {"x": '
        + b"[" * 5_000
        + b"]" * 5_000
        + b"}}]}",
        "body: nests objects and arrays more than 64 levels deep",
    ),
]


@pytest.mark.parametrize(
    ("body", "error"), [(b, e) for _, b, e in BAD_BATCHES], ids=[n for n, _, _ in BAD_BATCHES]
)
def test_invalid_batches_are_refused_whole(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog, body: bytes, error: str
) -> None:
    assert_refused(client.post("/v1/batch", content=body, headers=auth), 400, error, event_log)


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/v1/track", b'{"userId": "u1"', "event: malformed JSON"),
        ("/v1/track", b"[]", "event: must be a JSON object, not an array"),
        ("/v1/track", b'{"userId": "u1"}', "event.event: missing"),
        ("/v1/identify", b'{"traits": {}}', "event.userId: missing"),
        ("/v1/a", b'{"userId": "u1"}', "event.previousId: missing"),
        (
            "/v1/t",
            b'{"type": "identify", "userId": "u1"}',
            "event.type: is 'identify', but this path takes track",
        ),
        ("/v1/t", b'{"type": "click", "userId": "u1"}', "event.type: 'click' is not an event type"),
        (
            "/v1/track",
            b'{"userId": "u1", "event": "e", "properties": {"x": '
            + b"[" * 2000
            + b"]" * 2000
            + b"}}",
            "event: nests objects and arrays more than 64 levels deep",
        ),
        (
            "/v1/track",
            msgspec.json.encode({"userId": "u1", "event": "e", "properties": {"x": "y" * 40_000}}),
            "event: event is 40",
        ),
    ],
)
def test_invalid_single_events_are_refused(
    client: TestClient,
    auth: dict[str, str],
    event_log: MemoryEventLog,
    path: str,
    body: bytes,
    error: str,
) -> None:
    assert_refused(client.post(path, content=body, headers=auth), 400, error, event_log)


def test_a_batch_over_500_kb_is_refused(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    body = batch_of(*(item(i, properties={"blob": "x" * 20_000}) for i in range(30)))
    assert len(body) > 512_000
    response = client.post("/v1/batch", content=body, headers=auth)
    assert_refused(response, 400, f"body: {len(body)} bytes, over the 512000-byte limit", event_log)


def test_a_chunked_batch_over_500_kb_is_refused_while_reading(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    body = batch_of(*(item(i, properties={"blob": "x" * 20_000}) for i in range(30)))
    chunks = iter([body[i : i + 65_536] for i in range(0, len(body), 65_536)])
    response = client.post("/v1/batch", content=chunks, headers=auth)
    assert_refused(response, 400, "body: over the 512000-byte limit", event_log)


def test_a_gzip_bomb_is_refused(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    inner = batch_of(item(0))[:-2] + b" " * 20_000_000 + b"]}"
    bomb = gzip.compress(inner)
    assert len(bomb) < 100_000
    headers = auth | {"Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=bomb, headers=headers)
    assert_refused(response, 400, "gzip body: inflates to over the 512000-byte limit", event_log)


def test_a_corrupt_gzip_body_is_refused(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    headers = auth | {"Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=batch_of(item(0)), headers=headers)
    assert_refused(response, 400, "gzip body: cannot be inflated", event_log)


def test_an_unsupported_encoding_is_refused(
    client: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    headers = auth | {"Content-Encoding": "br"}
    response = client.post("/v1/batch", content=batch_of(item(0)), headers=headers)
    assert_refused(response, 400, "Content-Encoding: 'br' is not supported", event_log)


# --- rate limit ---------------------------------------------------------------------------------


@pytest.fixture
def limited(keys: MemoryKeyStore, writer: IngestWriter, clock: FakeClock) -> Iterator[TestClient]:
    settings = IngestSettings(rate_limit=2, rate_limit_burst=4)
    app = create_ingest_app(keys=keys, writer=writer, clock=clock, settings=settings)
    with TestClient(app) as test_client:
        yield test_client


def test_over_the_rate_limit_is_429_with_retry_after(
    limited: TestClient, auth: dict[str, str], event_log: MemoryEventLog, clock: FakeClock
) -> None:
    assert_ok(limited.post("/v1/batch", content=batch_of(item(0), item(1), item(2)), headers=auth))
    response = limited.post("/v1/batch", content=batch_of(item(3), item(4), item(5)), headers=auth)
    assert response.status_code == 429
    assert response.json() == {
        "success": False,
        "error": "rate limit exceeded; retry in 1 s",
        "code": "rate_limited",
        "message": "rate limit exceeded; retry in 1 s",
    }
    assert response.headers["retry-after"] == "1"
    assert event_log.count() == 3
    clock.advance(seconds=1)
    assert_ok(limited.post("/v1/batch", content=batch_of(item(3), item(4), item(5)), headers=auth))
    assert event_log.count() == 6


def test_retry_after_is_whole_seconds_rounded_up(
    limited: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    assert_ok(
        limited.post("/v1/batch", content=batch_of(*(item(i) for i in range(4))), headers=auth)
    )
    response = limited.post(
        "/v1/batch", content=batch_of(*(item(i) for i in range(4, 9))), headers=auth
    )
    # 5 events cost a full bucket of 4, refilled at 2 a second: 2 s.
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")
    assert event_log.count() == 4


def test_a_refused_rate_limited_request_stores_nothing(
    limited: TestClient, auth: dict[str, str], event_log: MemoryEventLog
) -> None:
    limited.post("/v1/batch", content=batch_of(*(item(i) for i in range(4))), headers=auth)
    event_log_before = event_log.count()
    response = limited.post("/v1/t", json=item(9), headers=auth)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert event_log.count() == event_log_before == 4


# --- storage failures ---------------------------------------------------------------------------


class BrokenLog(MemoryEventLog):
    def append(self, events: Any) -> Any:
        from safar.errors import StoreError

        raise StoreError("disk full")


def test_a_storage_failure_is_a_5xx_so_clients_retry(
    keys: MemoryKeyStore, clock: FakeClock, auth: dict[str, str]
) -> None:
    log = BrokenLog(clock)
    with IngestWriter(log) as writer:
        app = create_ingest_app(keys=keys, writer=writer, clock=clock, settings=IngestSettings())
        with TestClient(app) as client:
            response = client.post("/v1/batch", content=batch_of(item(0)), headers=auth)
    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "error": "disk full",
        "code": "server_error",
        "message": "disk full",
    }
    assert log.count() == 0


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()
