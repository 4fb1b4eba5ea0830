"""Delivery channels: one module per channel, each implementing :class:`safar.ports.Channel`.

- :mod:`~safar.channels.email` — SMTP (:class:`SmtpEmailChannel`)
- :mod:`~safar.channels.sms` — Twilio-compatible HTTP API (:class:`HttpSmsChannel`)
- :mod:`~safar.channels.webhook` — signed HTTP (:class:`WebhookChannel`, :class:`WebhookClient`)
- :mod:`~safar.channels.inapp` — the customer's inbox in the delivery store (:class:`InAppChannel`)
- :mod:`~safar.channels.console` — print (:class:`ConsoleChannel`) or drop (:class:`NullChannel`)

Channels never retry; :mod:`~safar.channels.retry` says when the dispatcher should.
:func:`build_channels` wires them from :class:`ChannelSettings`. See ``docs/channels.md``.
"""

from __future__ import annotations

from pathlib import Path

from safar.channels.console import ConsoleChannel, NullChannel
from safar.channels.email import SmtpEmailChannel
from safar.channels.inapp import InAppChannel
from safar.channels.retry import MAX_ATTEMPTS, backoff_ceiling_ms, backoff_ms, retryable_status
from safar.channels.settings import ChannelSettings
from safar.channels.sms import HttpSmsChannel
from safar.channels.webhook import WebhookChannel, WebhookClient, call
from safar.errors import ConfigError
from safar.model.messages import CHANNELS
from safar.ports import Channel, Clock, DeliveryStore

__all__ = [
    "MAX_ATTEMPTS",
    "ChannelSettings",
    "ConsoleChannel",
    "HttpSmsChannel",
    "InAppChannel",
    "NullChannel",
    "SmtpEmailChannel",
    "WebhookChannel",
    "WebhookClient",
    "backoff_ceiling_ms",
    "backoff_ms",
    "build_channels",
    "call",
    "retryable_status",
]


def build_channels(
    settings: ChannelSettings, delivery: DeliveryStore, clock: Clock
) -> dict[str, Channel]:
    """The configured channels by name.

    ``in_app``, ``console`` and ``null`` are always there; ``email``, ``sms`` and ``webhook``
    when their provider is configured; a channel in ``console_for`` is a console channel under
    that name. Raises :class:`ConfigError` for settings that cannot work.
    """
    unknown = sorted(set(settings.console_for) - set(CHANNELS))
    if unknown:
        raise ConfigError(
            f"channels.console_for: unknown channel(s) {', '.join(unknown)} "
            f"(known: {', '.join(CHANNELS)})"
        )
    path = Path(settings.console_path) if settings.console_path else None
    channels: dict[str, Channel] = {
        "in_app": InAppChannel(delivery, clock),
        "console": ConsoleChannel(path=path),
        "null": NullChannel(),
    }
    if settings.smtp_host:
        if not settings.smtp_sender:
            raise ConfigError("channels.smtp_sender is required when channels.smtp_host is set")
        channels["email"] = SmtpEmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
            starttls=settings.smtp_starttls and not settings.smtp_implicit_tls,
            implicit_tls=settings.smtp_implicit_tls,
            timeout=settings.smtp_timeout_s,
        )
    if settings.sms_account_sid:
        if not (settings.sms_auth_token and settings.sms_from):
            raise ConfigError(
                "channels.sms_auth_token and channels.sms_from are required when "
                "channels.sms_account_sid is set"
            )
        channels["sms"] = HttpSmsChannel(
            settings.sms_base_url,
            settings.sms_account_sid,
            settings.sms_auth_token,
            settings.sms_from,
            timeout=settings.sms_timeout_s,
        )
    if settings.webhook_secret:
        client = WebhookClient(
            settings.webhook_secret,
            allow_private=settings.webhook_allow_private,
            timeout_ms=settings.webhook_timeout_ms,
            clock=clock,
        )
        channels["webhook"] = WebhookChannel(client, url=settings.webhook_url or None)
    for name in settings.console_for:
        channels[name] = ConsoleChannel(path=path, name=name)
    return channels
