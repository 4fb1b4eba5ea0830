"""Signed webhooks: the signature checked independently, private addresses refused before any
connection, loopback allowed on request (against WebhookSink on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from safar.channels import WebhookChannel, WebhookClient, call
from safar.channels.addresses import refusal
from safar.channels.signing import sign, verify
from safar.errors import DeliveryError
from safar.model.messages import RenderedMessage
from safar.testing import FakeClock
from safar.testing.providers import WebhookSink

SECRET = "whsec_test"


def hook(to: str, data: dict[str, object] | None = None) -> RenderedMessage:
    return RenderedMessage(
        key="welcome:1:notify:p1:i1:0",
        channel="webhook",
        to=to,
        profile_id="p1",
        data=data if data is not None else {"event": "welcome", "نام": "مریم"},
    )


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink(body={"id": "evt_1"}) as running:
        yield running


@pytest.fixture
def local(clock: FakeClock) -> Iterator[WebhookClient]:
    client = WebhookClient(SECRET, allow_private=True, clock=clock, timeout_ms=5000)
    yield client
    client.close()


def test_the_signature_verifies_with_plain_hmac(
    sink: WebhookSink, local: WebhookClient, clock: FakeClock
) -> None:
    receipt = WebhookChannel(local).send(hook(sink.url + "/hooks/safar"))
    assert receipt.provider_id == "evt_1" and receipt.status == "delivered"
    [request] = sink.requests
    assert (request.method, request.path) == ("POST", "/hooks/safar")
    assert request.json() == {"event": "welcome", "نام": "مریم"}
    timestamp = request.headers["x-safar-timestamp"]
    assert timestamp == str(clock.now_ms() // 1000)
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["x-safar-signature"] == "sha256=" + expected.hexdigest()
    assert request.headers["idempotency-key"] == "welcome:1:notify:p1:i1:0"
    assert request.headers["content-type"] == "application/json"


def test_a_message_not_addressed_to_a_url_goes_to_the_default(
    sink: WebhookSink, local: WebhookClient
) -> None:
    WebhookChannel(local, url=sink.url + "/default").send(hook("p1"))
    assert sink.requests[0].path == "/default"
    with pytest.raises(DeliveryError, match="no webhook URL") as caught:
        WebhookChannel(local).send(hook("p1"))
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (302, False)]
)
def test_answers_map_to_retryable(
    sink: WebhookSink, local: WebhookClient, status: int, retryable: bool
) -> None:
    sink.fail_next(1, status)
    with pytest.raises(DeliveryError) as caught:
        WebhookChannel(local).send(hook(sink.url))
    assert caught.value.retryable is retryable
    assert f"answered {status}" in caught.value.message
    if status == 302:
        assert "redirects are not followed" in caught.value.message


def test_headers_from_templates_cannot_forge_the_signature(
    sink: WebhookSink, local: WebhookClient
) -> None:
    message = RenderedMessage(
        key="k",
        channel="webhook",
        to=sink.url,
        profile_id="p1",
        data={"a": 1},
        headers={"X-Safar-Signature": "sha256=forged", "Idempotency-Key": "x", "X-Tenant": "t1"},
    )
    WebhookChannel(local).send(message)
    headers = sink.requests[0].headers
    assert headers["x-safar-signature"] != "sha256=forged"
    assert headers["idempotency-key"] == "k" and headers["x-tenant"] == "t1"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "https://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "http://100.64.0.7/",
        "http://0.0.0.0/",
    ],
)
def test_private_targets_are_refused_before_connecting(url: str) -> None:
    connections: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        connections.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(record))
    webhook = WebhookClient(SECRET, client=client)
    with pytest.raises(DeliveryError) as caught:
        WebhookChannel(webhook).send(hook(url))
    assert not caught.value.retryable
    assert "refusing to call" in caught.value.message
    assert "allow_private" in caught.value.message
    assert connections == []


def test_every_resolved_address_is_checked() -> None:
    def resolve(host: str, port: int) -> list[str]:
        assert (host, port) == ("hooks.example.com", 443)
        return ["93.184.216.34", "10.1.2.3"]  # one public, one private: refused

    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(record))
    webhook = WebhookClient(SECRET, client=client, resolve=resolve)
    with pytest.raises(DeliveryError, match=re.escape("resolves to 10.1.2.3, a private address")):
        webhook.request("https://hooks.example.com/x", key="k")
    assert sent == []

    public = WebhookClient(SECRET, client=client, resolve=lambda host, port: ["93.184.216.34"])
    assert public.request("https://hooks.example.com/x", key="k") == (200, "")
    assert len(sent) == 1


def test_the_loopback_sink_is_refused_unless_allowed(sink: WebhookSink) -> None:
    with pytest.raises(DeliveryError, match="loopback"):
        call(sink.url, "POST", {"a": 1}, {}, 2000, "k", secret=SECRET)
    assert sink.requests == []
    status, body = call(
        sink.url, "POST", {"a": 1}, {}, 2000, "k", secret=SECRET, allow_private=True
    )
    assert (status, body) == (200, {"id": "evt_1"})
    assert len(sink.requests) == 1


def test_call_for_journey_steps(sink: WebhookSink, local: WebhookClient, clock: FakeClock) -> None:
    sink.body = {"score": 0.93, "segment": "vip"}
    status, body = local(
        sink.url + "/score?x=1", "GET", None, {"Accept": "application/json"}, 2000, "step-key"
    )
    assert (status, body) == (200, {"score": 0.93, "segment": "vip"})
    request = sink.requests[0]
    assert (request.method, request.path, request.body) == ("GET", "/score?x=1", b"")
    timestamp = request.headers["x-safar-timestamp"]
    assert verify(
        SECRET,
        signature=request.headers["x-safar-signature"],
        timestamp=timestamp,
        body=b"",
        now_s=clock.now_ms() // 1000,
    )
    with pytest.raises(DeliveryError, match="unsupported HTTP method"):
        local(sink.url, "TRACE", None, {}, 2000, "k")


@pytest.mark.parametrize("levels", [65, 5_000])
def test_a_json_answer_nested_too_deep_is_kept_as_text(levels: int) -> None:
    # 5,000 levels made decoding raise RecursionError out of the dispatcher's round.
    deep = b"[" * levels + b"]" * levels

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep, headers={"Content-Type": "application/json"})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    webhook = WebhookClient(SECRET, client=client, resolve=lambda host, port: ["93.184.216.34"])
    assert webhook.request("https://hooks.example.com/", key="k") == (200, deep.decode())


def test_timeouts_and_unreachable_targets_are_retryable() -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    client = httpx.Client(transport=httpx.MockTransport(too_slow))
    webhook = WebhookClient(SECRET, client=client, resolve=lambda host, port: ["93.184.216.34"])
    with pytest.raises(DeliveryError) as caught:
        webhook.request("https://hooks.example.com/", key="k", timeout_ms=1500)
    assert caught.value.retryable and "timed out after 1.5 s" in caught.value.message


def test_oversized_answers_are_refused(sink: WebhookSink, clock: FakeClock) -> None:
    sink.body = {"blob": "x" * 5000}
    webhook = WebhookClient(SECRET, allow_private=True, clock=clock, max_response_bytes=1000)
    with pytest.raises(DeliveryError, match="larger than 1000 bytes"):
        webhook.request(sink.url, key="k")
    webhook.close()


def test_verify_checks_the_time_window() -> None:
    body = msgspec.json.encode({"a": 1})
    signature = sign(SECRET, 1_700_000_000, body)
    kwargs = {"signature": signature, "timestamp": "1700000000", "body": body}
    assert verify(SECRET, now_s=1_700_000_100, **kwargs)  # type: ignore[arg-type]
    assert not verify(SECRET, now_s=1_700_000_400, **kwargs)  # type: ignore[arg-type]
    assert not verify("other", now_s=1_700_000_000, **kwargs)  # type: ignore[arg-type]


def test_refusal_reasons() -> None:
    assert refusal("8.8.8.8") is None and refusal("2606:4700:4700::1111") is None
    assert refusal("127.0.0.2") == "a loopback address"
    assert refusal("fe80::1%eth0") == "a link-local address"
    assert refusal("172.16.5.4") == "a private address"
    assert refusal("fd00::1") == "a private address"


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookClient("")
