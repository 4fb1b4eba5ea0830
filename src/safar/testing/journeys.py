"""A journey harness: all of Safar on in-memory stores and a fake clock.

Send events, publish journeys, segments and computed traits, move time forward by days in
milliseconds, and look at what was sent and why not. ``safar journeys simulate`` and Safar's
own journey tests use it::

    h = JourneyHarness()
    h.publish(parse_journey_file("examples/journeys/abandoned_cart.yaml"))
    h.track("u1", "Product Added", {"price": 25})
    h.advance(days=2)
    assert [m.channel for m in h.sent] == ["email"]

Everything the live runtime does happens here too, in the same order: profiles are folded,
audiences kept current, journeys stepped, messages pass the policy gate, are rendered and
handed to channels (recording ones unless given), receipts come back as events.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from safar.config import IdentitySettings, IngestSettings
from safar.core.identity import IdentityRules
from safar.errors import DeliveryError
from safar.ingest.validate import event_from_json
from safar.model.audiences import AudienceVersion, Definition
from safar.model.events import Event, iso
from safar.model.journeys import Journey, JourneyVersion, Migration
from safar.model.messages import Decision, Message, Receipt, RenderedMessage
from safar.model.policy import Policy
from safar.model.profiles import Profile
from safar.ports import Channel
from safar.runtime import audience_catalog
from safar.runtime.audience_view import AudienceReader
from safar.runtime.audiences import AudienceProcessor
from safar.runtime.catalog import publish
from safar.runtime.dispatch import Dispatcher, Renderer
from safar.runtime.journeys import JourneyRuntime
from safar.runtime.partition_audiences import PartitionAudiences
from safar.runtime.plans import PlanBook, cel_compile
from safar.runtime.profiler import ProfileProcessor
from safar.runtime.publisher import FeedPublisher
from safar.runtime.render import address_for
from safar.runtime.worker import suppression_conditions
from safar.stores.bundle import memory_stores
from safar.stores.memory.work import MemoryWorkFeed
from safar.testing.clock import FakeClock

SOURCE_ID = "harness"
#: Partitions of the work feed harnesses step journeys from when not told (0: from the log, as
#: the embedded configuration does). Tests run the journey suites both ways.
PARTITIONS = 0
DAY_MS = 24 * 3600 * 1000


@dataclass
class RecordingChannel:
    """A channel that keeps what it is handed, once per idempotency key (as providers that
    honour the key do). ``fail_next`` makes the next sends raise a retryable DeliveryError."""

    name: str
    sent: list[RenderedMessage] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    _keys: set[str] = field(default_factory=set)

    def send(self, message: RenderedMessage) -> Receipt:
        self.attempts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise DeliveryError(f"{self.name} provider unavailable (test)", retryable=True)
        if message.key not in self._keys:
            self._keys.add(message.key)
            self.sent.append(message)
        return Receipt(provider_id=f"{self.name}-{len(self.sent)}")


def plain_render(message: Message, profile: Profile) -> RenderedMessage:
    """Render without templates: the template id as subject and text."""
    return RenderedMessage(
        key=message.key,
        channel=message.channel,
        to=address_for(message.channel, profile) or "",
        profile_id=profile.id,
        subject=message.template,
        text=message.template,
    )


def no_webhooks(
    url: str, method: str, body: Any, headers: dict[str, str], timeout_ms: int, key: str
) -> tuple[int, Any]:
    return 200, {}


class JourneyHarness:
    """Safar in memory on a :class:`FakeClock` (see the module docstring)."""

    def __init__(
        self,
        *,
        start: int = 1_795_000_000_000,
        policy: Policy | None = None,
        render: Renderer | None = None,
        channels: Mapping[str, Channel] | None = None,
        call_webhook: Callable[..., tuple[int, Any]] = no_webhooks,
        identity: IdentitySettings | None = None,
        partitions: int | None = None,
    ) -> None:
        """``partitions``: step journeys as partition owners do, from a work feed of that many
        partitions (ADR 12), instead of from the log (:data:`PARTITIONS` when None; 0 for
        the log)."""
        partitions = PARTITIONS if partitions is None else partitions
        self.clock = FakeClock(start)
        self.stores = memory_stores(self.clock, dedupe_window_ms=400 * DAY_MS)
        self.policy = policy or Policy(quiet_hours=None)
        rules = IdentitySettings() if identity is None else identity
        self.channels: dict[str, Channel] = dict(channels or {})
        for name in ("email", "sms", "webhook", "in_app", "console", "null"):
            self.channels.setdefault(name, RecordingChannel(name))
        ids = itertools.count(1)
        self.profiler = ProfileProcessor(
            self.stores.events,
            self.stores.profiles,
            rules,
            self.clock,
            new_id=lambda: f"p{next(ids):06d}",
        )

        def audiences(**role: Any) -> AudienceProcessor:
            return AudienceProcessor(
                self.stores.events,
                self.stores.profiles,
                self.stores.delivery,
                self.stores.audience_catalog,
                self.stores.audiences,
                IdentityRules(rules),
                self.clock,
                **role,
            )

        #: Audiences: the processor of every customer, or with a work feed the coordinator
        #: and (:attr:`partition_audiences`) a processor per partition (ADR 12).
        self.audiences = audiences(coordinator=bool(partitions), partitions=partitions or 1)
        self.partition_audiences = PartitionAudiences(
            self.stores.audiences, lambda n: audiences(partition=n, partitions=partitions)
        )
        #: Profiles with computed traits and segments, as journeys and the gate see them.
        self.reader = AudienceReader(
            self.stores.profiles,
            self.stores.audiences,
            self.stores.audience_catalog,
            self.clock,
        )
        self.runtime = JourneyRuntime(
            self.stores.events,
            self.reader,
            self.stores.journeys,
            self.stores.runs,
            IdentityRules(rules),
            self.clock,
            plans=PlanBook(default_timezone=self.policy.default_timezone),
        )
        #: The work feed and its publisher, with ``partitions``; None without.
        self.feed = MemoryWorkFeed(partitions) if partitions else None
        self.publisher = (
            FeedPublisher(
                self.stores.events,
                self.stores.profiles,
                self.feed,
                IdentityRules(rules),
                routes=self.profiler.keep_routes(),
            )
            if self.feed is not None
            else None
        )
        self.runtime.schedule_by_events = self.feed is not None
        conditions = suppression_conditions(self.policy)

        def dispatcher() -> Dispatcher:
            return Dispatcher(
                self.stores.outbox,
                self.stores.delivery,
                self.reader,
                self.stores.events,
                self.channels,
                render or plain_render,
                self.policy,
                self.clock,
                call_webhook=call_webhook,
                suppression_conditions=conditions,
            )

        self._new_dispatcher = dispatcher
        self.dispatcher = dispatcher()
        self._counter = itertools.count(1)

    def restart_dispatcher(self) -> None:
        """A new dispatcher, as after its process died: what the old one held in memory (the
        deliveries it had not recorded yet) is gone."""
        self.dispatcher = self._new_dispatcher()

    # -- input ------------------------------------------------------------------------------

    def publish(self, journey: Journey, migration: Migration | None = None) -> JourneyVersion:
        version, _ = publish(self.stores.journeys, journey, self.clock.now_ms(), migration)
        self.runtime.refresh()
        return version

    def publish_audience(self, definition: Definition) -> AudienceVersion:
        """Publish a segment or computed trait; it is evaluated for everyone before this
        returns."""
        version, _ = audience_catalog.publish(
            self.stores.audience_catalog, definition, self.clock.now_ms()
        )
        self.audiences.refresh()
        self.reader.invalidate()
        self.run()
        return version

    def send(self, payload: dict[str, Any]) -> Event:
        """Append one Segment-shaped event (validated as ingestion does) and run to rest."""
        event = self.event(payload)
        self.stores.events.append([event])
        self.run()
        return event

    def event(self, payload: dict[str, Any]) -> Event:
        """One Segment-shaped event, validated as ingestion does, not yet appended."""
        now = self.clock.now_ms()
        body = dict(payload)
        body.setdefault("messageId", f"h-{next(self._counter)}")
        body.setdefault("timestamp", iso(now))
        return event_from_json(
            body,
            source_id=SOURCE_ID,
            received_at=now,
            sent_at=None,
            default_type="track",
            location="event",
            limits=IngestSettings(),
        )

    def track(self, user_id: str, name: str, properties: dict[str, Any] | None = None) -> Event:
        return self.send(
            {"type": "track", "userId": user_id, "event": name, "properties": properties or {}}
        )

    def identify(self, user_id: str, traits: dict[str, Any]) -> Event:
        return self.send({"type": "identify", "userId": user_id, "traits": traits})

    # -- time -------------------------------------------------------------------------------

    def run(self) -> None:
        """Process everything due now, until nothing is left to do."""
        while True:
            done = self.profiler.run_once()
            done += self.audiences.step()
            done += self._step_journeys()
            done += self.runtime.run_schedules()
            done += self.dispatcher.run_once()
            if done == 0:
                return

    def _step_journeys(self) -> int:
        if self.feed is None or self.publisher is None:
            return self.runtime.run_events() + self.runtime.run_timers()
        done = self.publisher.run_once()
        # Every partition in one turn, as a worker holding them all steps them: audiences,
        # then journeys up to where audiences are.
        held = dict.fromkeys(range(self.feed.partitions))
        self.partition_audiences.refresh()
        audiences = self.partition_audiences.run(self.feed, held)
        done += audiences.done
        done += self.runtime.run_partitions(
            self.feed, held, limits=audiences.cursors, read=audiences.read
        )
        done += self.partition_audiences.run_timers(held)
        for partition in range(self.feed.partitions):
            done += self.runtime.run_timers(partition=partition)
        if not done:
            done += self.partition_audiences.run_jobs()
        return done

    def advance(self, *, ms: int = 0, hours: float = 0, days: float = 0) -> None:
        """Move time forward, stopping at every timer and retry due on the way."""
        self.advance_to(self.clock.now_ms() + ms + int((hours * 3600 + days * 86400) * 1000))

    def advance_to(self, target: int) -> None:
        self.run()
        while True:
            wakes = [
                t
                for t in (
                    self.stores.runs.next_wake(),
                    self.stores.audiences.next_wake(),
                    self.stores.outbox.next_due(),
                    self.runtime.next_schedule(),
                )
                if t is not None and t > self.clock.now_ms()
            ]
            due = min(wakes, default=None)
            if due is None or due > target:
                break
            self.clock.advance_to(due)
            self.run()
        if target > self.clock.now_ms():
            self.clock.advance_to(target)
        self.run()

    # -- output -----------------------------------------------------------------------------

    @property
    def sent(self) -> list[RenderedMessage]:
        """Everything recording channels were handed, in order per channel."""
        found: list[RenderedMessage] = []
        for channel in self.channels.values():
            if isinstance(channel, RecordingChannel):
                found.extend(channel.sent)
        return found

    def profile(self, user_id: str) -> Profile:
        """The customer's profile with computed traits and segments."""
        found = self.reader.find(("user_id", user_id))
        assert found is not None, f"no profile for user {user_id}"
        return found

    def decisions(self, user_id: str) -> list[Decision]:
        return self.stores.delivery.decisions(self.profile(user_id).id, 1000)


__all__ = ["JourneyHarness", "RecordingChannel", "cel_compile", "plain_render"]
