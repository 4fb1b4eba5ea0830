"""The Twilio-compatible SMS channel against FakeSmsProvider, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import httpx
import pytest

from safar.channels import HttpSmsChannel
from safar.errors import DeliveryError
from safar.model.messages import RenderedMessage
from safar.testing.providers import FakeSmsProvider

TEXT = "فروشگاه سفر: سلام مریم، سبد خریدتان منتظر شماست. لغو۱۱"


def sms(key: str = "cart:1:send_sms:p1:i1:0", to: str = "+989121234567") -> RenderedMessage:
    return RenderedMessage(key=key, channel="sms", to=to, profile_id="p1", locale="fa", text=TEXT)


@pytest.fixture
def provider() -> Iterator[FakeSmsProvider]:
    with FakeSmsProvider(account_sid="AC123", auth_token="tok") as running:
        yield running


@pytest.fixture
def channel(provider: FakeSmsProvider) -> Iterator[HttpSmsChannel]:
    sender = HttpSmsChannel(provider.base_url, "AC123", "tok", "+15005550006", timeout=5)
    yield sender
    sender.close()


def test_a_message_is_posted_the_twilio_way(
    provider: FakeSmsProvider, channel: HttpSmsChannel
) -> None:
    receipt = channel.send(sms())
    [request] = provider.requests
    assert request.method == "POST"
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AC123:tok").decode()
    assert request.headers["i-twilio-idempotency-token"] == "cart:1:send_sms:p1:i1:0"
    assert request.form() == {"To": "+989121234567", "From": "+15005550006", "Body": TEXT}
    [message] = provider.messages
    assert receipt.provider_id == message.sid and message.body == TEXT


def test_delivery_reports_are_asked_for_at_the_status_url(
    provider: FakeSmsProvider, channel: HttpSmsChannel
) -> None:
    import msgspec

    report = "http://127.0.0.1:8088/l/s/token"
    channel.send(msgspec.structs.replace(sms(), status_url=report))
    [request] = provider.requests
    assert request.form()["StatusCallback"] == report


def test_a_repeated_key_sends_once_and_returns_the_same_sid(
    provider: FakeSmsProvider, channel: HttpSmsChannel
) -> None:
    first = channel.send(sms())
    again = channel.send(sms())
    other = channel.send(sms(key="cart:1:send_sms:p2:i2:0"))
    assert first.provider_id == again.provider_id != other.provider_id
    assert len(provider.requests) == 3 and len(provider.messages) == 2


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(
    provider: FakeSmsProvider, channel: HttpSmsChannel, status: int
) -> None:
    provider.fail_next(1, status, "Too busy")
    with pytest.raises(DeliveryError) as caught:
        channel.send(sms())
    assert caught.value.retryable
    assert f"answered {status}: Too busy" in caught.value.message
    # The dispatcher's retry, with the same key, then goes through exactly once.
    channel.send(sms())
    channel.send(sms())
    assert len(provider.messages) == 1


def test_a_bad_number_is_not_retryable_and_says_why(channel: HttpSmsChannel) -> None:
    with pytest.raises(DeliveryError) as caught:
        channel.send(sms(to="0912-123"))
    assert not caught.value.retryable
    assert "The 'To' number 0912-123 is not a valid phone number. (code 21211)" in str(caught.value)


def test_wrong_credentials_are_not_retryable(provider: FakeSmsProvider) -> None:
    channel = HttpSmsChannel(provider.base_url, "AC123", "wrong", "+15005550006")
    with pytest.raises(DeliveryError) as caught:
        channel.send(sms())
    channel.close()
    assert not caught.value.retryable and "401" in caught.value.message


def test_a_messaging_service_is_sent_as_such(provider: FakeSmsProvider) -> None:
    channel = HttpSmsChannel(provider.base_url, "AC123", "tok", "MG0123456789abcdef")
    channel.send(sms())
    channel.close()
    assert provider.requests[0].form()["MessagingServiceSid"] == "MG0123456789abcdef"
    assert provider.messages[0].sender == "MG0123456789abcdef"


def test_timeouts_and_refused_connections_are_retryable() -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    slow = HttpSmsChannel(
        "https://sms.example",
        "AC1",
        "t",
        "+1",
        client=httpx.Client(transport=httpx.MockTransport(too_slow)),
    )
    with pytest.raises(DeliveryError) as caught:
        slow.send(sms())
    assert caught.value.retryable and "timed out" in caught.value.message

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = HttpSmsChannel(f"http://127.0.0.1:{port}", "AC1", "t", "+1", timeout=2)
    with pytest.raises(DeliveryError) as caught:
        down.send(sms())
    down.close()
    assert caught.value.retryable


def test_an_empty_message_is_refused(channel: HttpSmsChannel) -> None:
    empty = RenderedMessage(key="k", channel="sms", to="+15551234567", profile_id="p", text="")
    with pytest.raises(DeliveryError, match="no text") as caught:
        channel.send(empty)
    assert not caught.value.retryable
