"""build_channels: channels from settings, explicit, no globals."""

from __future__ import annotations

import msgspec
import pytest

from safar.channels import (
    ChannelSettings,
    ConsoleChannel,
    HttpSmsChannel,
    InAppChannel,
    NullChannel,
    SmtpEmailChannel,
    WebhookChannel,
    build_channels,
)
from safar.errors import ConfigError
from safar.ports import Channel
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.testing import FakeClock


def build(clock: FakeClock, **settings: object) -> dict[str, Channel]:
    converted = msgspec.convert(settings, ChannelSettings)
    return dict(build_channels(converted, MemoryJourneyStores(), clock))


def test_defaults_have_only_local_channels(clock: FakeClock) -> None:
    channels = build(clock)
    assert sorted(channels) == ["console", "in_app", "null"]
    assert isinstance(channels["in_app"], InAppChannel)
    assert isinstance(channels["null"], NullChannel)


def test_configured_providers(clock: FakeClock) -> None:
    channels = build(
        clock,
        smtp_host="smtp.example.com",
        smtp_sender="Shop <shop@example.com>",
        sms_account_sid="AC1",
        sms_auth_token="t",
        sms_from="+15005550006",
        webhook_secret="s",
    )
    assert isinstance(channels["email"], SmtpEmailChannel)
    assert isinstance(channels["sms"], HttpSmsChannel)
    assert isinstance(channels["webhook"], WebhookChannel)
    assert {name: channel.name for name, channel in channels.items()} == {
        name: name for name in channels
    }


def test_console_stands_in_for_the_demo(clock: FakeClock) -> None:
    channels = build(
        clock, smtp_host="smtp.example.com", smtp_sender="a@b.c", console_for=["email", "sms"]
    )
    assert isinstance(channels["email"], ConsoleChannel) and channels["email"].name == "email"
    assert isinstance(channels["sms"], ConsoleChannel)


def test_settings_that_cannot_work(clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="smtp_sender"):
        build(clock, smtp_host="smtp.example.com")
    with pytest.raises(ConfigError, match="sms_auth_token"):
        build(clock, sms_account_sid="AC1")
    with pytest.raises(ConfigError, match="unknown channel"):
        build(clock, console_for=["fax"])


def test_settings_convert_from_environment_strings() -> None:
    raw = {"smtp_port": "465", "smtp_implicit_tls": "true", "webhook_allow_private": "1"}
    settings = msgspec.convert(raw, ChannelSettings, strict=False)
    assert (settings.smtp_port, settings.smtp_implicit_tls, settings.webhook_allow_private) == (
        465,
        True,
        True,
    )
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"smtp_hots": "x"}, ChannelSettings, strict=False)
