"""The worker: profile processing, audiences, journeys, timers and delivery for one
installation.

Two threads. The *stepper* folds new events into profiles, then into audiences, then steps
journeys over them and over due timers, in turn (with a work feed configured it publishes the
events to their customers' partitions instead, and only coordinates audiences: the partition
owners keep audiences and step journeys, ADR 12): these all write the state database, and
taking turns in one thread keeps every batch's view consistent (journeys always see profiles
and segments up to the events they handle). The *dispatcher* delivers the
outbox; it waits on networks (SMTP, SMS, webhooks), so it runs beside the stepper rather than
holding it up.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from safar.channels import WebhookClient, build_channels
from safar.config import Settings
from safar.core.identity import IdentityRules
from safar.core.plan import Predicate
from safar.errors import ConfigError, DeliveryError, SafarError
from safar.model.policy import Policy
from safar.ports import Channel, Clock, WorkFeed
from safar.runtime.audience_view import AudienceReader
from safar.runtime.audiences import AudienceProcessor
from safar.runtime.collector import batch_work
from safar.runtime.dispatch import Dispatcher, WebhookCaller
from safar.runtime.journeys import JourneyRuntime
from safar.runtime.leases import SEGMENT_EXPORT, STEPPER, held_lease
from safar.runtime.links import Links, load_secret
from safar.runtime.plans import PlanBook
from safar.runtime.profiler import RUN_BATCH, ProfileProcessor
from safar.runtime.publisher import FeedPublisher
from safar.runtime.render import TemplateRenderer
from safar.runtime.segment_export import SegmentExporter, build_exporter
from safar.runtime.turns import run_turns
from safar.stores.bundle import Stores
from safar.templates import TemplateCatalog

log = logging.getLogger(__name__)

#: Longest the dispatcher sleeps when idle: it is woken at once for new commands, so this only
#: bounds how late a retry or a delayed message is picked up.
IDLE_DISPATCH = 0.2
#: Seconds the stepper waits before publishing again after the work feed failed.
FEED_RETRY = 1.0


def load_policy(settings: Settings) -> Policy:
    """The policy file named in the settings, or the defaults when it does not exist."""
    from safar.definitions import DEFAULT_POLICY, DefinitionError, parse_policy

    path = Path(settings.journeys.policy_file)
    if not path.exists():
        return DEFAULT_POLICY
    try:
        return parse_policy(path.read_text(encoding="utf-8"), str(path))
    except DefinitionError as exc:
        raise ConfigError(f"policy file {path} has problems:\n{exc.message}") from exc


def load_templates(settings: Settings) -> TemplateCatalog:
    """The template catalog; an absent directory gives an empty one (sends then fail with
    ``template``, recorded per message)."""
    return TemplateCatalog.load(settings.journeys.templates_dir)


def suppression_conditions(policy: Policy) -> dict[str, Predicate]:
    """CEL ``where`` of every suppression rule, compiled over ``profile`` and ``now``."""
    from safar.cel import compile_expression

    found: dict[str, Predicate] = {
        rule.id: compile_expression(rule.where, names=("profile", "now")).test
        for rule in policy.suppressions
        if rule.where
    }
    return found


def webhook_caller(settings: Settings, clock: Clock) -> WebhookCaller:
    """Signed webhook calls, or, without a secret configured, a caller that refuses."""
    ch = settings.channels
    if ch.webhook_secret:
        return WebhookClient(
            ch.webhook_secret,
            allow_private=ch.webhook_allow_private,
            timeout_ms=ch.webhook_timeout_ms,
            clock=clock,
        )

    def refuse(*_: object) -> tuple[int, object]:
        raise DeliveryError(
            "webhook steps need a signing secret: set channels.webhook_secret"
            " (SAFAR_CHANNELS_WEBHOOK_SECRET)",
            retryable=False,
        )

    return refuse


def audience_reader(stores: Stores, clock: Clock, settings: Settings) -> AudienceReader:
    """Profiles with their computed traits and segments, as journeys and messages see them."""
    partitions = settings.bus.partitions if settings.bus.url else 0
    return AudienceReader(
        stores.profiles, stores.audiences, stores.audience_catalog, clock, partitions=partitions
    )


def build_dispatcher(
    stores: Stores,
    settings: Settings,
    clock: Clock,
    *,
    channels: Mapping[str, Channel] | None = None,
    owner: str = "dispatcher",
    policy: Policy | None = None,
) -> Dispatcher:
    """The dispatcher for these stores, with the configured channels, templates and policy."""
    policy = policy or load_policy(settings)
    ch = settings.channels
    return Dispatcher(
        stores.outbox,
        stores.delivery,
        audience_reader(stores, clock, settings),
        stores.events,
        channels if channels is not None else build_channels(ch, stores.delivery, clock),
        TemplateRenderer(load_templates(settings)),
        policy,
        clock,
        call_webhook=webhook_caller(settings, clock),
        suppression_conditions=suppression_conditions(policy),
        links=Links(load_secret(settings.secret_path), settings.public_url),
        owner=owner,
    )


class Worker:
    """Everything after ingestion, for one set of stores."""

    def __init__(
        self,
        stores: Stores,
        settings: Settings,
        clock: Clock,
        *,
        channels: Mapping[str, Channel] | None = None,
        owner: str = "worker",
        feed: WorkFeed | Callable[[], WorkFeed] | None = None,
    ) -> None:
        self._wake = threading.Event()
        self._feed = feed
        self._publish_after = 0.0
        self._stores = stores
        self._settings = settings
        self._clock = clock
        self._owner = owner
        policy = load_policy(settings)
        self._timezone = policy.default_timezone
        self._build_stepper()
        self._build_dispatcher = functools.partial(
            build_dispatcher, stores, settings, clock, channels=channels, owner=owner, policy=policy
        )
        self._build_exporter = functools.partial(build_exporter, stores, settings, clock)

    def _build_stepper(self) -> None:
        """The processors of the stepper, with empty caches."""
        stores, clock, owner = self._stores, self._clock, self._owner
        self.profiler = ProfileProcessor(
            stores.events, stores.profiles, self._settings.identity, clock
        )
        if self._feed is not None:
            # From the first batch on, so that the publisher, built when it first publishes,
            # looks up no profile the processor just placed.
            self.profiler.keep_routes()
        self.audiences = AudienceProcessor(
            stores.events,
            stores.profiles,
            stores.delivery,
            stores.audience_catalog,
            stores.audiences,
            IdentityRules(self._settings.identity),
            clock,
            owner=owner,
            coordinator=self._feed is not None,
            partitions=self._settings.bus.partitions,
        )
        self.publisher: FeedPublisher | None = None
        self.reader = audience_reader(stores, clock, self._settings)
        self.runtime = JourneyRuntime(
            stores.events,
            self.reader,
            stores.journeys,
            stores.runs,
            IdentityRules(self._settings.identity),
            clock,
            plans=PlanBook(default_timezone=self._timezone),
            owner=owner,
        )
        self.runtime.schedule_by_events = self._feed is not None

    @functools.cached_property
    def dispatcher(self) -> Dispatcher:
        """Built on first use: ``safar serve``'s worker process never delivers, so it does not
        load templates and channels for nothing."""
        return self._build_dispatcher()

    @functools.cached_property
    def exporter(self) -> SegmentExporter:
        """Segment webhooks, delivered beside the dispatcher (built on first use likewise)."""
        return self._build_exporter()

    @batch_work
    def step_once(self) -> int:
        """One turn of the stepper: profiles, audiences, then journeys over events, due timers
        and due schedules. With a work feed, journeys are the partition owners' work
        (:mod:`~safar.runtime.partitioned`): the stepper publishes instead, and its schedules
        append entry requests."""
        queued = self.runtime.queued
        done = self.profiler.run_once(RUN_BATCH)
        # Pipelined (ADR 16), the processor's batch is applied beside the rest of this turn and
        # the next batch's computing: audiences, journeys and the publisher, which read only
        # what is committed, take it up at the next turn.
        done += self.audiences.step()
        if self._feed is None:
            done += self.runtime.run_events()
            done += self.runtime.run_timers()
        else:
            done += self._publish()
        done += self.runtime.run_schedules()
        if self.runtime.queued != queued:
            self._wake.set()
        return done

    def _publish(self) -> int:
        """Publish to the work feed, if one is configured. ``feed`` may be a function opening
        it: then it is opened here, on first use. While the feed cannot be reached (or
        opened), profiles and audiences go on (publishing resumes from the feed's own cursor),
        trying again after :data:`FEED_RETRY` seconds."""
        import time

        if self._feed is None or time.monotonic() < self._publish_after:
            return 0
        try:
            if self.publisher is None:
                if callable(self._feed):
                    self._feed = self._feed()
                self.publisher = FeedPublisher(
                    self._stores.events,
                    self._stores.profiles,
                    self._feed,
                    IdentityRules(self._settings.identity),
                    routes=self.profiler.keep_routes(),
                )
            # As much as the profile processor's batch, so that publishing keeps up with it.
            return self.publisher.run_once(RUN_BATCH)
        except SafarError as exc:
            if not exc.retryable:
                raise
            log.warning("cannot publish to the work feed, will retry: %s", exc)
            self._publish_after = time.monotonic() + FEED_RETRY
            return 0

    def run(
        self,
        stop: threading.Event,
        idle_wait: float = 0.01,
        refresh: float = 2.0,
        *,
        dispatch: bool = True,
    ) -> None:
        """Run the stepper, and with ``dispatch`` the dispatcher and the segment exporter beside
        it in threads, until ``stop`` is set. The stepper wakes that dispatcher as soon as it has
        queued commands, so a message does not wait for the dispatcher's next poll. ``safar
        serve`` runs them in a process of its own instead (``dispatch=False``)."""
        if not dispatch:
            self._step_until(stop, idle_wait, refresh)
            return
        dispatcher = threading.Thread(
            target=self.dispatcher.run,
            args=(stop, IDLE_DISPATCH),
            kwargs={"wake": self._wake},
            name="safar-dispatch",
            daemon=True,
        )
        dispatcher.start()
        lease = held_lease(
            self._stores.leases, SEGMENT_EXPORT, self._owner, self._clock, self._settings
        )
        exporter = self.exporter.start(stop, lease=lease)
        try:
            self._step_until(stop, idle_wait, refresh)
        finally:
            stop.set()
            self._wake.set()
            dispatcher.join(timeout=30)
            exporter.join(timeout=30)

    def _step_until(self, stop: threading.Event, idle_wait: float, refresh: float) -> None:
        """Step while this process holds the stepper lease (stand by while another does).

        The processors keep what they committed in memory between batches; when the lease
        comes back after another process held it, that is stale, so they are built afresh.
        Every commit carries the lease's fence: a batch computed by a process that lost the
        lease meanwhile (paused past its end) is refused by the store.
        """
        import time

        lease = held_lease(self._stores.leases, STEPPER, self._owner, self._clock, self._settings)
        held: int | None = None
        refreshed = time.monotonic()

        def turn() -> int:
            """One batch under the lease: how much it did, or -1 after standing by."""
            nonlocal held, refreshed
            fence = lease.fence()
            if fence is None:
                stop.wait(lease.standby_wait)
                return -1
            if held is not None and fence.epoch != held:
                log.info("took the stepper lease over (epoch %d)", fence.epoch)
                self._build_stepper()
            held = fence.epoch
            self.profiler.fence = self.audiences.fence = self.runtime.fence = fence
            if time.monotonic() - refreshed > refresh:
                self.runtime.refresh()
                self.audiences.refresh()
                self.reader.invalidate()
                refreshed = time.monotonic()
            return self.step_once()

        def stopped() -> None:
            try:
                # A profile batch still being applied (ADR 16) goes in before the stores close.
                self.profiler.settle()
            finally:
                lease.release()

        run_turns(turn, stop, "processing", idle_wait, finally_=stopped)
