"""The SMTP e-mail channel against a real SMTP server on 127.0.0.1 (SmtpSink)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from safar.channels import SmtpEmailChannel
from safar.errors import DeliveryError
from safar.model.messages import RenderedMessage
from safar.testing.providers import SmtpSink

SUBJECT_FA = "سلام مریم، سبد خریدتان منتظر شماست"


def persian(key: str = "abandoned-cart:1:send_email:p1:i1:0", **changes: object) -> RenderedMessage:
    fields: dict[str, object] = {
        "key": key,
        "channel": "email",
        "to": "maryam@example.com",
        "profile_id": "p1",
        "locale": "fa",
        "direction": "rtl",
        "subject": SUBJECT_FA,
        "html": '<html dir="rtl" lang="fa"><body><p>سلام مریم،</p></body></html>',
        "text": "سلام مریم،\nسبد خریدتان منتظر شماست.",
        "unsubscribe_url": "https://shop.example.com/u/abc?c=email",
    }
    fields.update(changes)
    return RenderedMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def channel(sink: SmtpSink) -> Iterator[SmtpEmailChannel]:
    email = SmtpEmailChannel(sink.host, sink.port, "Safar Shop <shop@example.com>", timeout=5)
    yield email
    email.close()


def test_a_persian_email_arrives_with_both_parts_and_its_headers(
    sink: SmtpSink, channel: SmtpEmailChannel
) -> None:
    receipt = channel.send(persian())
    [mail] = sink.received
    assert mail.mail_from == "shop@example.com"
    assert mail.rcpt_tos == ["maryam@example.com"]
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    # Text travels with CRLF line ends (the canonical form on the wire).
    assert plain.get_content().splitlines() == ["سلام مریم،", "سبد خریدتان منتظر شماست."]
    assert '<html dir="rtl" lang="fa">' in html.get_content()
    # The subject travels RFC 2047-encoded and decodes back to the Persian text.
    assert "=?utf-8?" in mail.raw.decode("ascii").lower()
    assert message["Subject"] == SUBJECT_FA
    assert message["From"] == "Safar Shop <shop@example.com>"
    assert message["Content-Language"] == "fa"
    assert message["List-Unsubscribe"] == "<https://shop.example.com/u/abc?c=email>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["X-Safar-Idempotency-Key"] == "abandoned-cart:1:send_email:p1:i1:0"
    assert receipt.provider_id == message["Message-ID"]


def test_the_message_id_is_stable_per_key(sink: SmtpSink, channel: SmtpEmailChannel) -> None:
    channel.send(persian(key="k-1"))
    channel.send(persian(key="k-1"))  # a resend after a crash
    channel.send(persian(key="k-2"))
    first, again, other = (message["Message-ID"] for message in sink.messages)
    assert first == again != other
    assert first.startswith("<safar.") and first.endswith("@example.com>")


def test_text_only_and_no_unsubscribe(sink: SmtpSink, channel: SmtpEmailChannel) -> None:
    channel.send(persian(html=None, unsubscribe_url=None, headers={"X-Campaign": "welcome"}))
    [message] = sink.messages
    assert message.get_content_type() == "text/plain"
    assert message["List-Unsubscribe"] is None and message["X-Campaign"] == "welcome"


def test_a_missing_text_part_is_derived_from_html(
    sink: SmtpSink, channel: SmtpEmailChannel
) -> None:
    channel.send(persian(text=None, html="<p>Hi <a href='https://x.example/c'>cart</a></p>"))
    plain, _ = sink.messages[0].iter_parts()
    assert plain.get_content().strip() == "Hi cart (https://x.example/c)"


@pytest.mark.parametrize(
    ("reply", "at", "retryable"),
    [
        ("451 4.3.0 Try again later", "data", True),
        ("452 4.2.2 Mailbox full", "rcpt", True),
        ("550 5.1.1 No such user", "rcpt", False),
        ("554 5.7.1 Message rejected as spam", "data", False),
    ],
)
def test_smtp_replies_map_to_retryable(
    sink: SmtpSink, channel: SmtpEmailChannel, reply: str, at: str, retryable: bool
) -> None:
    sink.fail_next(1, reply, at=at)
    with pytest.raises(DeliveryError) as caught:
        channel.send(persian())
    assert caught.value.retryable is retryable
    assert reply.split()[0] in caught.value.message and reply.split()[-1] in caught.value.message
    # The channel recovers: the next message goes through.
    channel.send(persian())
    assert len(sink.received) == 1


def test_an_unreachable_server_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = SmtpEmailChannel("127.0.0.1", port, "shop@example.com", timeout=2)
    with pytest.raises(DeliveryError) as caught:
        channel.send(persian())
    assert caught.value.retryable


def test_login_with_credentials() -> None:
    with SmtpSink(credentials=("shop", "s3cret")) as sink:
        good = SmtpEmailChannel(
            sink.host, sink.port, "shop@example.com", username="shop", password="s3cret"
        )
        good.send(persian())
        good.close()
        bad = SmtpEmailChannel(
            sink.host, sink.port, "shop@example.com", username="shop", password="wrong"
        )
        with pytest.raises(DeliveryError) as caught:
            bad.send(persian())
        assert not caught.value.retryable  # 535: fix the password, do not retry
        assert len(sink.received) == 1


def test_header_injection_and_bad_addresses_are_refused(channel: SmtpEmailChannel) -> None:
    with pytest.raises(DeliveryError) as caught:
        channel.send(persian(headers={"X-Note": "a\r\nBcc: victim@example.com"}))
    assert not caught.value.retryable
    with pytest.raises(DeliveryError, match="not an e-mail address"):
        channel.send(persian(to="not-an-address"))
