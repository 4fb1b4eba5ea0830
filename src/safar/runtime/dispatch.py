"""The dispatcher: delivers outbox entries at least once, each under its idempotency key.

Per claimed batch:

- messages pass the policy gate (:func:`safar.core.policy.decide_batch`) with the facts it
  needs read for all their customers at once (consents, recent sends, recent events, CEL
  suppression conditions); those that go are rendered and handed to their channel;
- webhook steps are called; those that wait for the reply get it as a ``Webhook Replied`` event;
- journey events (emits, profile updates) are appended to the event log;
- receipts (``Message Sent``, ``Message Failed``) go to the event log every
  :data:`SETTLE_EVERY` deliveries; the batch's entries are settled once, at its end, in one
  transaction with their decisions and sent records.

The receipt in the log is what proves a message was handed over. A crash makes the batch's
unsettled entries be claimed again once their lease lapses, marked ``reclaimed``; a reclaimed
message whose ``Message Sent`` receipt the log holds is settled as sent without being sent
again. So a crash repeats at most the :data:`SETTLE_EVERY` deliveries whose receipts were not
appended yet (the channel gets the same idempotency key both times), while the state database
sees one write transaction per batch instead of one per group (under load, the dispatcher
spent over half its time in those; ADR 9). Webhook calls have no receipt, so a group with one
is settled at once, as before. Events are appended before the settlement, and the log
deduplicates them by their deterministic messageIds.

A store that fails while the dispatcher records what the channels accepted (a database restart)
is not a crash: the dispatcher keeps that record and writes it before it claims anything more,
so the entries are not left to their claim's lapse and sent again. Only an outage longer than
the claim (:data:`LEASE_MS`) lets another dispatcher claim them meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Protocol

import msgspec

from safar.channels.retry import MAX_ATTEMPTS, backoff_ms
from safar.core.policy import Facts, Recipient, Verdict, decide_batch
from safar.errors import DeliveryError, SafarError, ValidationError
from safar.model.events import Event
from safar.model.messages import Decision, Message, RenderedMessage
from safar.model.policy import Policy
from safar.model.profiles import Profile
from safar.model.runs import EventCommand, OutboxEntry, SendCommand, WebhookCommand
from safar.ports import Channel, Clock, DeliveryStore, EventLog, Outbox, ProfileReader, Settlement
from safar.runtime.collector import batch_work
from safar.runtime.internal import SOURCE_ID, internal_event, track_event
from safar.runtime.journeys import WEBHOOK_REPLY_EVENT
from safar.runtime.links import Links
from safar.runtime.render import address_for, render_webhook

log = logging.getLogger(__name__)

LEASE_MS = 60_000
#: Deliveries whose receipts are appended together: the most a crash can make providers see
#: twice.
SETTLE_EVERY = 20
#: The most entries one claim takes: each claimed batch costs two write transactions (claim,
#: settle) and a query per kind of fact, whatever its size, so under load bigger batches
#: deliver more per second (at 5,000 messages/s, 2,000 cut the latency to a sixth of 500's).
MAX_CLAIM = 2000
#: What the first claim takes, before the dispatcher has seen how fast it delivers.
FIRST_CLAIM = 100
#: After that, a claim takes no more entries than the dispatcher delivers in this share of the
#: lease at its recent pace, so that a slow channel (SMTP at tens of milliseconds a message)
#: settles its batch long before the lease lapses and another dispatcher claims it again.
LEASE_SHARE = 0.25
#: Seconds to wait after an unexpected error before trying again.
ERROR_WAIT = 1.0
#: Recent events read per customer for event-based suppression rules.
RECENT_EVENTS = 500
#: A webhook reply larger than this (JSON bytes) is not passed back to the journey.
MAX_REPLY_BYTES = 16 * 1024


class Renderer(Protocol):
    """Renders a message's template for one customer (see :mod:`safar.templates`)."""

    def __call__(self, message: Message, profile: Profile) -> RenderedMessage:
        """The message addressed to ``profile``; raises ValidationError for a template error
        and DeliveryError(retryable=False) when the customer has no address for the channel."""
        ...


#: Calls a webhook: (url, method, body, headers, timeout_ms, key) -> (status, response).
WebhookCaller = Callable[[str, str, Any, dict[str, str], int, str], tuple[int, Any]]
#: Backoff before attempt ``n + 1`` of the entry with this key.
Backoff = Callable[[int, str], int]


def default_backoff(attempt: int, key: str) -> int:
    return backoff_ms(attempt, key)


@dataclass
class _Round:
    """What one claimed batch has done so far and not yet recorded."""

    now: int
    flush: Callable[[_Round], None]
    settlements: list[Settlement] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: Entries handed to a provider since the last flush.
    handed: int = 0
    #: Of those, the ones no receipt records (webhook calls): their settlement is the record.
    unreceipted: int = 0

    def delivered(self, *, receipt: bool = True) -> None:
        """One more entry reached a provider; record the group once it is big enough, so a
        crash repeats at most :data:`SETTLE_EVERY` deliveries, not a whole batch."""
        self.handed += 1
        if not receipt:
            self.unreceipted += 1
        if self.handed >= SETTLE_EVERY:
            self.flush(self)


class Dispatcher:
    """Claims due outbox entries, decides, delivers and settles them."""

    def __init__(
        self,
        outbox: Outbox,
        delivery: DeliveryStore,
        profiles: ProfileReader,
        events: EventLog,
        channels: Mapping[str, Channel],
        render: Renderer,
        policy: Policy,
        clock: Clock,
        *,
        call_webhook: WebhookCaller,
        suppression_conditions: Mapping[str, Callable[[Mapping[str, Any]], bool]] | None = None,
        backoff: Backoff = default_backoff,
        links: Links | None = None,
        owner: str = "dispatcher",
        batch: int = MAX_CLAIM,
    ) -> None:
        self._outbox = outbox
        self._delivery = delivery
        self._profiles = profiles
        self._events = events
        self._channels = channels
        self._render = render
        self._policy = policy
        self._clock = clock
        self._call_webhook = call_webhook
        self._conditions = suppression_conditions or {}
        self._backoff = backoff
        self._links = links
        self._owner = owner
        self._batch = batch
        #: Seconds per entry of recent batches (None before the first).
        self._pace: float | None = None
        #: Receipts and settlements of deliveries done that the store has not recorded yet.
        self._owed_events: list[Event] = []
        self._owed_settlements: list[Settlement] = []
        self._event_rules = {
            name
            for rule in policy.suppressions
            for name in (rule.event, rule.after_event, rule.until_event)
            if name
        }
        windows = [cap.window_ms for cap in policy.frequency_caps] + [policy.priority_window_ms]
        self._history_ms = max(windows, default=0)

    @batch_work
    def run_once(self) -> int:
        """Deliver one batch of due entries; returns how many were claimed."""
        self._record()  # what an earlier round could not record, first
        now = self._clock.now_ms()
        started = monotonic()
        entries = self._outbox.claim(now, self._claim_size(), self._owner, LEASE_MS)
        if not entries:
            return 0
        work = _Round(now, self._flush)
        sends = [e for e in entries if isinstance(e.command, SendCommand)]
        if sends:
            self._messages(sends, work)
        for entry in entries:
            command = entry.command
            if isinstance(command, WebhookCommand):
                self._webhook(entry, command, work)
                work.delivered(receipt=False)
            elif isinstance(command, EventCommand):
                work.events.append(_journey_event(command, now))
                work.settlements.append(Settlement(key=entry.key, status="done"))
        self._flush(work, settle=True)
        self._note_pace((monotonic() - started) / len(entries))
        return len(entries)

    def _claim_size(self) -> int:
        """How many entries to claim: :data:`FIRST_CLAIM`, then as many as fit in
        :data:`LEASE_SHARE` of the lease at the recent pace, at most ``batch``."""
        if self._pace is None:
            return min(self._batch, FIRST_CLAIM)
        fits = LEASE_MS / 1000 * LEASE_SHARE / max(self._pace, 1e-6)
        return max(1, min(self._batch, int(fits)))

    def _note_pace(self, seconds_per_entry: float) -> None:
        # A slower batch counts at once; a faster one only halfway: the next batch may hold
        # the slow kind of message again.
        pace = self._pace
        if pace is None or seconds_per_entry >= pace:
            self._pace = seconds_per_entry
        else:
            self._pace = (pace + seconds_per_entry) / 2

    def _flush(self, work: _Round, *, settle: bool = False) -> None:
        """Hand the round's receipts and settlements over to :meth:`_record`, which settles at
        the end of the round (``settle``) or when a delivery since the last flush has no receipt
        to prove it."""
        self._owed_events += work.events
        self._owed_settlements += work.settlements
        settle = settle or work.unreceipted > 0
        work.events, work.settlements, work.handed, work.unreceipted = [], [], 0, 0
        self._record(settle=settle)

    def _record(self, *, settle: bool = True) -> None:
        """Append the receipts owed, then (with ``settle``) settle: a crash in between is redone
        harmlessly (the log drops repeated receipts by messageId, and a reclaimed message with
        its receipt logged is not sent again). What the store refuses stays owed, and is
        written first on the next try (see the module docstring)."""
        if self._owed_events:
            self._events.append(self._owed_events)
            self._owed_events = []
        if settle and self._owed_settlements:
            self._outbox.settle(self._owed_settlements)
            self._owed_settlements = []

    def run(
        self, stop: threading.Event, idle_wait: float = 0.05, wake: threading.Event | None = None
    ) -> None:
        """Dispatch until ``stop`` is set. When idle, sleep ``idle_wait`` or until ``wake`` is
        set. Errors are logged and the batch retried (after its leases expire): delivery must
        outlive a bad message or a store hiccup."""
        wake = wake or stop
        while not stop.is_set():
            try:
                done = self.run_once()
            except SafarError as exc:
                log.warning("dispatch failed, will retry: %s", exc)
                done, wait = 0, idle_wait if exc.retryable else ERROR_WAIT
            except Exception:
                log.exception("dispatch failed unexpectedly, will retry")
                done, wait = 0, ERROR_WAIT
            else:
                wait = idle_wait
            if done == 0:
                wake.wait(wait)
                if wake is not stop:
                    wake.clear()

    # -- messages -----------------------------------------------------------------------------

    def _messages(self, entries: Sequence[OutboxEntry], work: _Round) -> None:
        sent = self._sent_before(entries)
        if sent:
            for entry in entries:
                if entry.key in sent:
                    self._settle_sent_before(entry, _message(entry), work)
            entries = [e for e in entries if e.key not in sent]
        messages = [_message(e) for e in entries]
        profiles = self._profiles.find_many({m.identifier for m in messages})
        recipients: list[Recipient] = []
        for message in messages:
            profile = profiles.get(message.identifier)
            recipients.append(
                Recipient(
                    profile_id=profile.id if profile else message.profile_id,
                    traits=profile.traits if profile else {},
                    address=address_for(message.channel, profile),
                    segments=tuple(profile.segments) if profile else (),
                )
            )
        facts = self._facts(list(profiles.values()), work.now)
        # The gate knows customers by their current profile id.
        current = [
            _with_profile(m, r.profile_id) for m, r in zip(messages, recipients, strict=True)
        ]
        verdicts = decide_batch(current, recipients, facts, self._policy, work.now)
        for entry, message, verdict in zip(entries, current, verdicts, strict=True):
            self._settle_message(entry, message, verdict, profiles.get(message.identifier), work)
            if verdict.kind == "go":
                work.delivered()

    def _sent_before(self, entries: Sequence[OutboxEntry]) -> set[str]:
        """The keys of the reclaimed entries whose ``Message Sent`` receipt the log holds:
        handed to their provider by a dispatcher that stopped before settling them."""
        receipts = {
            (SOURCE_ID, _receipt_key(_message(e).key, "Message Sent")): e.key
            for e in entries
            if e.reclaimed
        }
        if not receipts:
            return set()
        return {receipts[key] for key in self._events.seen(receipts.keys())}

    def _settle_sent_before(self, entry: OutboxEntry, message: Message, work: _Round) -> None:
        now = work.now
        decision = message.decision(
            now, "sent", "", "handed to the provider before a restart (its receipt is logged)"
        )
        work.settlements.append(
            Settlement(
                key=entry.key, status="done", decision=decision, sent=message.sent_record(now)
            )
        )

    def _facts(self, profiles: list[Profile], now: int) -> dict[str, Facts]:
        # Choices and sends recorded under profile ids since merged into a customer are theirs.
        owner = {pid: p.id for p in profiles for pid in (p.id, *p.merged_from)}
        consents = self._delivery.consents(owner.keys())
        since = now - self._history_ms
        sends = self._delivery.sends(owner.keys(), since) if self._history_ms else []
        facts: dict[str, Facts] = {}
        moment = datetime.fromtimestamp(now / 1000, tz=UTC)
        for profile in profiles:
            activation = {
                "profile": {
                    "id": profile.id,
                    "traits": profile.traits,
                    "identifiers": profile.identifiers,
                },
                "now": moment,
            }
            facts[profile.id] = Facts(
                consents=[c for c in consents if owner.get(c.profile_id) == profile.id],
                sends=[s for s in sends if owner.get(s.profile_id) == profile.id],
                events=self._recent_events(profile) if self._event_rules else [],
                suppressed_by_condition={
                    rule: holds(activation) for rule, holds in self._conditions.items()
                },
            )
        return facts

    def _recent_events(self, profile: Profile) -> list[tuple[str, int]]:
        seqs = self._profiles.timeline(profile.id, RECENT_EVENTS)
        return [
            (e.name, e.timestamp)
            for e in self._events.get(seqs)
            if e.name is not None and e.name in self._event_rules
        ]

    def _settle_message(
        self,
        entry: OutboxEntry,
        message: Message,
        verdict: Verdict,
        profile: Profile | None,
        work: _Round,
    ) -> None:
        now = work.now
        if verdict.kind == "suppress":
            self._done(entry, verdict.decision(message, now), work)
            return
        if verdict.kind == "delay":
            work.settlements.append(
                Settlement(
                    key=entry.key,
                    status="retry",
                    due=verdict.until,
                    decision=verdict.decision(message, now),
                )
            )
            return
        channel = self._channels.get(message.channel)
        if profile is None or channel is None:
            why = "the customer's profile is gone" if profile is None else "channel not set up"
            self._fail(entry, message, "channel", why, work)
            return
        try:
            rendered = self._render(message, profile)
            if self._links is not None:
                rendered = self._link(rendered, message)
            receipt = channel.send(rendered)
        except ValidationError as exc:
            self._fail(entry, message, "template", exc.message, work)
            return
        except DeliveryError as exc:
            self._retry_or_fail(entry, message, exc.message, exc.retryable, work)
            return
        except Exception as exc:  # a bug in a channel must not stop delivery of the others
            log.exception("channel %s failed on %s", message.channel, entry.key)
            self._retry_or_fail(entry, message, f"{type(exc).__name__}: {exc}", True, work)
            return
        accepted = f"accepted by the {message.channel} provider"
        if receipt.provider_id:
            accepted += f" as {receipt.provider_id}"
        decision = message.decision(now, "sent", "", accepted)
        work.settlements.append(
            Settlement(
                key=entry.key, status="done", decision=decision, sent=message.sent_record(now)
            )
        )
        work.events.append(_receipt(message, "Message Sent", now, provider_id=receipt.provider_id))

    def _retry_or_fail(
        self, entry: OutboxEntry, message: Message, error: str, retryable: bool, work: _Round
    ) -> None:
        if retryable and entry.attempts + 1 < MAX_ATTEMPTS:
            due = work.now + self._backoff(entry.attempts, entry.key)
            work.settlements.append(Settlement(key=entry.key, status="retry", due=due, error=error))
        else:
            self._fail(entry, message, "channel", error, work, dead=True)

    def _link(self, rendered: RenderedMessage, message: Message) -> RenderedMessage:
        assert self._links is not None
        claims = {
            "k": message.key,
            "p": message.profile_id,
            "i": list(message.identifier),
            "j": message.journey_id,
            "s": message.step_id,
            "c": message.channel,
            "g": message.category,
        }
        # Only the links a channel uses are signed (a signature is ~10 µs): e-mail tracks its
        # HTML and carries List-Unsubscribe; SMS asks its provider for status callbacks.
        if message.channel == "email":
            html = rendered.html
            if html is not None:
                html = self._links.track_html(html, claims)
            unsubscribe = self._links.unsubscribe_url(claims)
            return msgspec.structs.replace(rendered, html=html, unsubscribe_url=unsubscribe)
        if message.channel == "sms":
            return msgspec.structs.replace(rendered, status_url=self._links.status_url(claims))
        return rendered

    def _done(self, entry: OutboxEntry, decision: Decision, work: _Round) -> None:
        work.settlements.append(Settlement(key=entry.key, status="done", decision=decision))

    def _fail(
        self,
        entry: OutboxEntry,
        message: Message,
        rule: str,
        detail: str,
        work: _Round,
        *,
        dead: bool = False,
    ) -> None:
        decision = message.decision(work.now, "failed", rule, detail)
        work.settlements.append(
            Settlement(
                key=entry.key,
                status="dead" if dead else "done",
                error=detail,
                decision=decision,
            )
        )
        work.events.append(_receipt(message, "Message Failed", work.now, error=detail, rule=rule))

    # -- webhooks -----------------------------------------------------------------------------

    def _webhook(self, entry: OutboxEntry, command: WebhookCommand, work: _Round) -> None:
        try:
            profile = self._profiles.find_many([command.identifier]).get(command.identifier)
            body = render_webhook(command.body, profile, command.context, "body")
            headers = render_webhook(command.headers, profile, command.context, "headers")
            status, response = self._call_webhook(
                command.url, command.method, body, headers, command.timeout_ms, command.key
            )
        except ValidationError as exc:
            # A template error will not go away by retrying.
            work.settlements.append(Settlement(key=entry.key, status="dead", error=exc.message))
            if command.reply:
                work.events.append(_reply(command, work.now, ok=False, error=exc.message))
            return
        except DeliveryError as exc:
            if exc.retryable and entry.attempts + 1 < MAX_ATTEMPTS:
                due = work.now + self._backoff(entry.attempts, entry.key)
                work.settlements.append(
                    Settlement(key=entry.key, status="retry", due=due, error=exc.message)
                )
                return
            work.settlements.append(Settlement(key=entry.key, status="dead", error=exc.message))
            if command.reply:
                work.events.append(_reply(command, work.now, ok=False, error=exc.message))
            return
        work.settlements.append(Settlement(key=entry.key, status="done"))
        if command.reply:
            work.events.append(_reply(command, work.now, ok=200 <= status < 300, response=response))


def _message(entry: OutboxEntry) -> Message:
    command = entry.command
    assert isinstance(command, SendCommand)
    return command.message


def _with_profile(message: Message, profile_id: str) -> Message:
    if message.profile_id == profile_id:
        return message
    return msgspec.structs.replace(message, profile_id=profile_id)


def _receipt(message: Message, name: str, now: int, **extra: Any) -> Event:
    properties = {
        "message_key": message.key,
        "journey_id": message.journey_id,
        "journey_version": message.version,
        "step_id": message.step_id,
        "channel": message.channel,
        "template": message.template,
        "category": message.category,
    }
    properties.update({k: v for k, v in extra.items() if v is not None})
    return track_event(
        key=_receipt_key(message.key, name),
        identifier=message.identifier,
        name=name,
        properties=properties,
        at=now,
    )


def _receipt_key(message_key: str, name: str) -> str:
    """The messageId of a message's receipt: ``<key>:sent``, ``<key>:failed``."""
    return f"{message_key}:{name.split()[-1].lower()}"


def _journey_event(command: EventCommand, now: int) -> Event:
    return internal_event(
        key=command.key,
        type=command.type,
        identifier=command.identifier,
        timestamp=command.timestamp,
        received_at=now,
        name=command.name,
        properties=command.properties,
        traits=command.traits,
    )


def _reply(
    command: WebhookCommand,
    now: int,
    *,
    ok: bool,
    response: Any = None,
    error: str | None = None,
) -> Event:
    if response is not None and len(msgspec.json.encode(response)) > MAX_REPLY_BYTES:
        ok, response, error = False, None, f"response larger than {MAX_REPLY_BYTES} bytes"
    properties: dict[str, Any] = {
        "instance_id": command.instance_id,
        "step_id": command.step_id,
        "ok": ok,
    }
    if response is not None:
        properties["response"] = response
    if error is not None:
        properties["error"] = error
    return track_event(
        key=f"{command.key}:reply",
        identifier=command.identifier,
        name=WEBHOOK_REPLY_EVENT,
        properties=properties,
        at=now,
    )
