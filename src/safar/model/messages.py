"""Messages to customers: what a journey asks to send, what the policy gate decided, and what a
channel was handed.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: Channels Safar ships. ``null`` accepts and drops everything (benchmarks).
CHANNELS = ("email", "sms", "webhook", "in_app", "console", "null")

Outcome = Literal["sent", "delayed", "suppressed", "failed"]


class Message(msgspec.Struct, kw_only=True, frozen=True):
    """A message a journey step wants sent, before the policy gate.

    ``key`` is the idempotency key, derived from (journey, version, step, profile, instance,
    transition); providers that accept one receive it, and a key is sent at most once.
    ``context`` holds what templates see besides the profile: ``event`` (the event that led
    here) and ``journey`` (the instance's context).
    """

    key: str
    journey_id: str
    version: int
    step_id: str
    instance_id: str
    profile_id: str
    #: The identifier the customer entered the journey with; finds their current profile.
    identifier: tuple[str, str]
    channel: str
    template: str
    category: str
    priority: int
    quiet_hours: Literal["delay", "skip", "ignore"] = "delay"
    created_at: int
    context: dict[str, Any] = msgspec.field(default_factory=dict)

    def decision(
        self, at: int, outcome: Outcome, rule: str = "", detail: str = "", until: int | None = None
    ) -> Decision:
        """A :class:`Decision` about this message."""
        return Decision(
            message_key=self.key,
            profile_id=self.profile_id,
            journey_id=self.journey_id,
            step_id=self.step_id,
            channel=self.channel,
            category=self.category,
            at=at,
            outcome=outcome,
            rule=rule,
            detail=detail,
            until=until,
        )

    def sent_record(self, at: int) -> SentRecord:
        """The :class:`SentRecord` of this message handed to its channel at ``at``."""
        return SentRecord(
            message_key=self.key,
            profile_id=self.profile_id,
            journey_id=self.journey_id,
            channel=self.channel,
            category=self.category,
            priority=self.priority,
            at=at,
        )


class RenderedMessage(msgspec.Struct, kw_only=True, frozen=True):
    """A message ready for a channel: addressed and rendered.

    Email uses ``subject``, ``html`` and ``text``; SMS uses ``text``; in-app uses ``subject``,
    ``text`` and ``data``; webhook sends ``data`` as JSON. ``direction`` is ``rtl`` for fa and ar.
    """

    key: str
    channel: str
    to: str
    profile_id: str
    locale: str = "en"
    direction: Literal["ltr", "rtl"] = "ltr"
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    #: A signed URL that unsubscribes the recipient from this message's category and channel.
    unsubscribe_url: str | None = None
    #: A signed URL the provider posts delivery reports to (SMS ``StatusCallback``).
    status_url: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Receipt(msgspec.Struct, kw_only=True, frozen=True):
    """What a channel reports after accepting a message."""

    status: Literal["sent", "delivered"] = "sent"
    provider_id: str | None = None


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    """What the gate (or delivery) did with one message, and why.

    ``rule`` names the rule that decided, e.g. ``consent``, ``suppression:open_ticket``,
    ``frequency_cap:marketing_email_weekly``, ``quiet_hours``, ``priority``, ``no_address``,
    ``template``, ``channel``; it is empty for ``sent``. ``until`` is when a delayed message
    will be tried again.
    """

    message_key: str
    profile_id: str
    journey_id: str
    step_id: str
    channel: str
    category: str
    at: int
    outcome: Outcome
    rule: str = ""
    detail: str = ""
    until: int | None = None


class SentRecord(msgspec.Struct, kw_only=True, frozen=True, array_like=True):
    """A message handed to a channel: what frequency caps and priority count."""

    message_key: str
    profile_id: str
    journey_id: str
    channel: str
    category: str
    priority: int
    at: int


class Consent(msgspec.Struct, kw_only=True, frozen=True):
    """A customer's choice for one channel and category (``*`` for every category)."""

    profile_id: str
    channel: str
    category: str
    subscribed: bool
    at: int
    source: str = "api"


class InboxItem(msgspec.Struct, kw_only=True):
    """An in-app message in a customer's inbox."""

    id: str
    profile_id: str
    created_at: int
    subject: str | None = None
    text: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    read_at: int | None = None
    dismissed_at: int | None = None
