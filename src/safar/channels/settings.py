"""Channel settings: the ``[channels]`` section of ``safar.toml`` (``SAFAR_CHANNELS_<KEY>`` in the
environment). Flat on purpose, so every key maps to one environment variable."""

from __future__ import annotations

import msgspec


class ChannelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How each channel reaches its provider. A channel whose provider is not configured is left
    out (its messages fail with ``channel``), unless it is listed in ``console_for``."""

    #: SMTP server for ``email``; empty leaves e-mail unconfigured.
    smtp_host: str = ""
    smtp_port: int = 587
    #: The From address, e.g. ``"Shop <news@shop.example>"``; required with ``smtp_host``.
    smtp_sender: str = ""
    smtp_username: str = ""
    smtp_password: str = ""
    #: Upgrade the connection with STARTTLS (port 587).
    smtp_starttls: bool = True
    #: Connect with TLS from the start (port 465) instead.
    smtp_implicit_tls: bool = False
    smtp_timeout_s: float = 10.0

    #: Twilio-compatible SMS API; empty account SID leaves SMS unconfigured.
    sms_base_url: str = "https://api.twilio.com"
    sms_account_sid: str = ""
    sms_auth_token: str = ""
    #: Sender phone number (E.164) or messaging service SID (``MG…``).
    sms_from: str = ""
    sms_timeout_s: float = 10.0

    #: HMAC secret signing every webhook request; empty leaves the webhook channel out and
    #: makes journey webhook steps fail.
    webhook_secret: str = ""
    #: Allow webhooks to private, loopback and link-local addresses (development, internal
    #: services). Off by default: see docs/channels.md.
    webhook_allow_private: bool = False
    webhook_timeout_ms: int = 10_000
    #: Where the webhook channel posts messages not addressed to a URL.
    webhook_url: str = ""

    #: File the console channel appends to; empty writes to standard output.
    console_path: str = ""
    #: Channels printed by the console channel instead of delivered, e.g. ``["email", "sms"]``
    #: for the demo or development.
    console_for: list[str] = msgspec.field(default_factory=list)
