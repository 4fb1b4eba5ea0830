"""Journey runs: instances in flight, what moves them, and the commands they produce.

An :class:`Instance` is one customer's pass through one journey version. The pure core
(:mod:`safar.core.journey`) takes an instance and an input and returns the new instance and
commands; the runtime stores both in one transaction, the commands as :class:`OutboxEntry` rows
that dispatchers deliver at least once under the entry's ``key`` (its idempotency key).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from safar.model.messages import Message
from safar.model.profiles import Identifier

InstanceStatus = Literal["active", "exited", "converted"]


class Instance(msgspec.Struct, kw_only=True):
    """One customer in one journey version.

    ``wake_at`` is the durable timer: when set, the runtime steps the instance with a
    :class:`TimerFired` at that time. ``waiting_for`` is the event name a wait-for-event step
    listens to. ``transitions`` counts the steps taken; it makes each command's key unique even
    when a journey loops back to a step it ran before.
    """

    id: str
    journey_id: str
    version: int
    profile_id: str
    #: The identifier the customer entered with, e.g. ("user_id", "42"): events the journey
    #: emits and profile updates it makes are attributed to it.
    identifier: Identifier
    status: InstanceStatus = "active"
    step: str = ""
    entered_at: int = 0
    #: What entered the customer: the entering event's messageId, a schedule tick or API request.
    entry_key: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    wake_at: int | None = None
    waiting_for: str | None = None
    goal_until: int | None = None
    transitions: int = 0
    ended_at: int | None = None
    exit_reason: str | None = None


class EntryRecord(msgspec.Struct, kw_only=True):
    """Per (journey, profile): what re-entry rules need to know."""

    journey_id: str
    profile_id: str
    entries: int = 0
    active: int = 0
    last_entered_at: int | None = None
    last_exited_at: int | None = None


# -- Inputs to the core -------------------------------------------------------------------------


class EventInput(msgspec.Struct, kw_only=True, frozen=True):
    """An event from the log, as conditions see it (``payload`` is the Segment-shaped object)."""

    seq: int
    message_id: str
    type: str
    name: str | None
    timestamp: int
    payload: dict[str, Any]


class TimerFired(msgspec.Struct, kw_only=True, frozen=True):
    due: int


class WebhookReply(msgspec.Struct, kw_only=True, frozen=True):
    """The result of a webhook step that waits for its response."""

    step_id: str
    ok: bool
    response: Any = None
    error: str | None = None


class ApiEntry(msgspec.Struct, kw_only=True, frozen=True):
    """An entry requested by ``POST /v1/journeys/{id}/entries`` or by a schedule.

    ``at`` is when it was requested (the request event's time, or the schedule's tick).
    """

    request_id: str
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    at: int = 0


Input = EventInput | TimerFired | WebhookReply | ApiEntry


# -- Commands the core produces -----------------------------------------------------------------


class SendCommand(msgspec.Struct, kw_only=True, frozen=True, tag_field="kind", tag="send"):
    message: Message


class WebhookCommand(msgspec.Struct, kw_only=True, frozen=True, tag_field="kind", tag="webhook"):
    """Call ``url``; when ``reply`` the result comes back to the instance as a WebhookReply."""

    key: str
    instance_id: str
    step_id: str
    #: The customer the instance belongs to: the reply event is filed under it.
    identifier: Identifier
    url: str
    method: str
    body: Any
    headers: dict[str, str]
    timeout_ms: int
    reply: bool
    #: The instance's context when the call was queued: what Liquid in body and headers sees.
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class EventCommand(msgspec.Struct, kw_only=True, frozen=True, tag_field="kind", tag="event"):
    """Append an event to the log with ``key`` as its messageId (so a retry is deduplicated).

    ``type`` is ``track`` (with ``name`` and ``properties``) or ``identify`` (with ``traits``).
    """

    key: str
    type: Literal["track", "identify"]
    identifier: Identifier
    timestamp: int
    name: str | None = None
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    traits: dict[str, Any] = msgspec.field(default_factory=dict)


Command = SendCommand | WebhookCommand | EventCommand


class Visit(msgspec.Struct, kw_only=True, frozen=True, array_like=True):
    """One step taken by one instance, for analytics and for explaining a path.

    ``outcome`` says what happened: ``entered``, ``waiting``, ``done``, ``timeout``,
    ``event``, ``branch:<n>``, ``branch:else``, ``split:<name>``, ``queued`` (a message handed
    to the policy gate), ``called``, ``replied``, ``failed``, ``updated``, ``emitted``,
    ``exited:<reason>``, ``converted``.
    """

    instance_id: str
    journey_id: str
    version: int
    step: str
    at: int
    outcome: str


class OutboxEntry(msgspec.Struct, kw_only=True):
    """A command waiting for delivery. ``key`` is its idempotency key and primary key."""

    key: str
    command: Command
    profile_id: str
    due: int
    attempts: int = 0
    last_error: str | None = None
    #: Claimed before and never settled: the dispatcher holding it stopped (or stalled past its
    #: lease), so it may have been handed to its provider already.
    reclaimed: bool = False
