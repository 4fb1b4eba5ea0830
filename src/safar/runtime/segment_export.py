"""Segment exports: each live segment with a ``webhook`` has its entries and exits POSTed there,
signed like every Safar webhook (:class:`~safar.channels.WebhookClient`), in the order they
happened, at least once.

The exporter reads the event log for the ``Segment Entered`` / ``Segment Exited`` events the
audience processor appends, and keeps one cursor per segment in
:meth:`~safar.ports.AudienceStore.progress`, named ``export:<segment id>``, valued
``<seq>:<attempts>:<retry at>``: the log is sent up to ``seq``; ``attempts`` failed tries of the
next batch so far; no try before ``retry at`` (ms).

- A batch is the segment's next changes after its cursor, at most :data:`BATCH`. Only a 2xx
  answer moves the cursor, to the last event the batch looked at: nothing is skipped, batches go
  in log order, and after a crash or restart at most the unacknowledged batch is sent again
  (receivers dedupe on each change's ``id``).
- A failure (any other answer, a timeout, a refused address) keeps the cursor, counts the
  attempt and sets the next try with the channels' backoff (:mod:`safar.channels.retry`). After
  :data:`~safar.channels.retry.MAX_ATTEMPTS` it goes on trying at the longest wait, logging an
  error each time: an export never drops anything.
- A cursor per segment, so an endpoint that is down holds up its own segment only. A segment
  new to the exporter starts at the beginning of the log, so its receiver learns every member.
- Without a signing secret nothing is sent and no cursor moves; the exporter says so once per
  segment.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from safar.channels import MAX_ATTEMPTS, WebhookClient, backoff_ceiling_ms, backoff_ms
from safar.config import Settings
from safar.errors import DeliveryError, SafarError
from safar.model.audiences import SEGMENT_ENTERED, SEGMENT_EXITED, Segment
from safar.model.events import Event, iso
from safar.model.leases import Fence
from safar.model.profiles import ANONYMOUS_ID, USER_ID
from safar.ports import AudienceCatalog, AudienceStore, AudienceUpdate, Clock, EventLog
from safar.runtime.audiences import live_definitions
from safar.runtime.internal import SOURCE_ID
from safar.runtime.leases import LeaseHolder
from safar.stores.bundle import Stores

log = logging.getLogger(__name__)

#: Most changes in one request.
BATCH: Final = 500
#: Events read per page, and at most per segment and turn (so one segment catching up on a
#: long log does not hold up the others for long).
READ_PAGE: Final = 5000
SCAN_BUDGET: Final = 50_000
#: How long the exporter sleeps when it has nothing to do, and between catalog reads.
IDLE_WAIT: Final = 0.2
REFRESH: Final = 2.0
ERROR_WAIT: Final = 1.0
PREFIX: Final = "export:"
_KINDS: Final = {SEGMENT_ENTERED: "entered", SEGMENT_EXITED: "exited"}


@dataclass(frozen=True)
class Cursor:
    """Where one segment's export stands (see the module docstring)."""

    seq: int = 0
    attempts: int = 0
    retry_at: int = 0

    def encode(self) -> str:
        return f"{self.seq}:{self.attempts}:{self.retry_at}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        seq, attempts, retry_at = (int(part) for part in text.split(":"))
        return cls(seq, attempts, retry_at)


class _Properties(msgspec.Struct):
    segment_id: Any = None
    profile_id: Any = None


class _Context(msgspec.Struct):
    traits: Any = None


class _Body(msgspec.Struct):
    properties: _Properties | None = None
    context: _Context | None = None


_decode_body = msgspec.json.Decoder(_Body).decode


class SegmentExporter:
    """Sends live segments' membership changes to their webhooks (see the module docstring).

    ``client`` is None when no signing secret is configured: then nothing is sent.
    """

    def __init__(
        self,
        events: EventLog,
        catalog: AudienceCatalog,
        store: AudienceStore,
        clock: Clock,
        client: WebhookClient | None,
    ) -> None:
        self._events = events
        self._catalog = catalog
        self._store = store
        self._clock = clock
        self._client = client
        self._segments: list[Segment] = []
        self._told: set[str] = set()
        #: Whether the last :meth:`step` left work that could be done at once.
        self.behind = False
        #: The lease cursors are saved under (see :class:`~safar.model.leases.Fence`).
        self.fence: Fence | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read which live segments have a webhook."""
        segments, _ = live_definitions(self._catalog.all())
        self._segments = sorted((s for s in segments if s.webhook), key=lambda s: s.id)

    def step(self) -> int:
        """One turn: a batch for every segment whose endpoint is due. Returns how many changes
        were delivered."""
        self.behind = False
        if not self._segments:
            return 0
        if self._client is None:
            self._no_secret()
            return 0
        now = self._clock.now_ms()
        stored = self._store.progress()
        last = self._events.last_seq()
        delivered = 0
        for segment in self._segments:
            cursor = Cursor.decode(stored.get(PREFIX + segment.id))
            if cursor.seq < last and cursor.retry_at <= now:
                delivered += self._export(self._client, segment, cursor, now)
        return delivered

    def _export(self, client: WebhookClient, segment: Segment, cursor: Cursor, now: int) -> int:
        changes, upto, more = self._collect(segment.id, cursor.seq)
        if not changes:
            self._save(segment.id, Cursor(upto))
            self.behind |= more
            return 0
        error = self._post(client, segment, changes)
        if error is None:
            self._save(segment.id, Cursor(upto))
            self.behind |= more
            return len(changes)
        attempts = cursor.attempts + 1
        if attempts < MAX_ATTEMPTS:
            wait = backoff_ms(attempts - 1, f"{PREFIX}{segment.id}:{cursor.seq}")
            log.warning(
                "segment %s: export to %s failed (attempt %d), retrying in %.1f s: %s",
                segment.id,
                segment.webhook,
                attempts,
                wait / 1000,
                error,
            )
        else:
            wait = backoff_ceiling_ms(attempts)
            log.error(
                "segment %s: export to %s has failed %d times, retrying every %.0f s until it"
                " answers (nothing is dropped): %s",
                segment.id,
                segment.webhook,
                attempts,
                wait / 1000,
                error,
            )
        self._save(segment.id, Cursor(cursor.seq, attempts, now + wait))
        return 0

    def _collect(self, segment_id: str, after: int) -> tuple[list[dict[str, Any]], int, bool]:
        """The segment's next changes after ``after``, the seq of the last event looked at,
        and whether more may follow at once."""
        changes: list[dict[str, Any]] = []
        upto = after
        scanned = 0
        while scanned < SCAN_BUDGET:
            page = self._events.read(upto, READ_PAGE)
            for event in page:
                upto = event.seq
                change = _change(event, segment_id)
                if change is not None:
                    changes.append(change)
                    if len(changes) >= BATCH:
                        return changes, upto, True
            if len(page) < READ_PAGE:
                return changes, upto, False
            scanned += len(page)
        return changes, upto, True

    def _post(
        self, client: WebhookClient, segment: Segment, changes: list[dict[str, Any]]
    ) -> str | None:
        """Send one batch; None when the endpoint took it, else what went wrong."""
        assert segment.webhook is not None
        body = {"segment_id": segment.id, "segment_name": segment.name, "changes": changes}
        ends = f"{segment.id}|{changes[0]['id']}|{changes[-1]['id']}|{len(changes)}"
        key = "segexp_" + hashlib.blake2b(ends.encode(), digest_size=16).hexdigest()
        try:
            status, _ = client.request(segment.webhook, key=key, body=body)
        except DeliveryError as exc:
            return exc.message
        if 200 <= status < 300:
            return None
        return f"{segment.webhook} answered {status}"

    def _save(self, segment_id: str, cursor: Cursor) -> None:
        update = AudienceUpdate(progress={PREFIX + segment_id: cursor.encode()}, fence=self.fence)
        self._store.commit(update)

    def _no_secret(self) -> None:
        for segment in self._segments:
            if segment.id not in self._told:
                self._told.add(segment.id)
                log.error(
                    "segment %s has a webhook, but no signing secret is set: its entries and"
                    " exits wait, unsent, until channels.webhook_secret"
                    " (SAFAR_CHANNELS_WEBHOOK_SECRET) is set",
                    segment.id,
                )

    # -- running ------------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        idle_wait: float = IDLE_WAIT,
        *,
        lease: LeaseHolder | None = None,
    ) -> None:
        """Export until ``stop`` is set, re-reading the catalog every :data:`REFRESH` seconds.
        Errors are logged and the turn tried again: exports must outlive a store hiccup. With
        ``lease``, export only while holding it: one exporter per installation, so two
        processes never post the same batch at once."""
        refreshed = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    if lease is not None:
                        self.fence = lease.fence()
                        if self.fence is None:
                            stop.wait(lease.standby_wait)
                            continue
                    if time.monotonic() - refreshed > REFRESH:
                        self.refresh()
                        refreshed = time.monotonic()
                    self.step()
                except SafarError as exc:
                    log.warning("segment export failed, will retry: %s", exc)
                    stop.wait(ERROR_WAIT)
                    continue
                except Exception:
                    log.exception("segment export failed unexpectedly, will retry")
                    stop.wait(ERROR_WAIT)
                    continue
                if not self.behind:
                    stop.wait(idle_wait)
        finally:
            if self._client is not None:
                self._client.close()
            if lease is not None:
                with contextlib.suppress(SafarError):
                    lease.release()

    def start(self, stop: threading.Event, *, lease: LeaseHolder | None = None) -> threading.Thread:
        """:meth:`run` in a daemon thread, started."""
        thread = threading.Thread(
            target=self.run,
            args=(stop,),
            kwargs={"lease": lease},
            name="safar-segment-export",
            daemon=True,
        )
        thread.start()
        return thread


def build_exporter(stores: Stores, settings: Settings, clock: Clock) -> SegmentExporter:
    """The exporter for these stores, signing with the webhook channel's settings."""
    ch = settings.channels
    client = (
        WebhookClient(
            ch.webhook_secret,
            allow_private=ch.webhook_allow_private,
            timeout_ms=ch.webhook_timeout_ms,
            clock=clock,
        )
        if ch.webhook_secret
        else None
    )
    return SegmentExporter(stores.events, stores.audience_catalog, stores.audiences, clock, client)


def _change(event: Event, segment_id: str) -> dict[str, Any] | None:
    """The change ``event`` records for the segment, or None when it records none."""
    kind = _KINDS.get(event.name or "")
    if kind is None or event.source_id != SOURCE_ID or segment_id.encode() not in event.body:
        return None
    try:
        body = _decode_body(event.body)
    except msgspec.DecodeError:
        return None
    properties = body.properties
    if properties is None or properties.segment_id != segment_id:
        return None
    return {
        "type": kind,
        "profile_id": properties.profile_id,
        "identifier": _identifier(event, body),
        "at": iso(event.timestamp),
        "id": event.message_id,
    }


def _identifier(event: Event, body: _Body) -> dict[str, str] | None:
    """The identifier the change names the customer by (see ``internal_event``)."""
    if event.user_id is not None:
        return {"type": USER_ID, "value": event.user_id}
    if event.anonymous_id is not None:
        return {"type": ANONYMOUS_ID, "value": event.anonymous_id}
    # Neither: the one identifier is in context.traits.
    traits = body.context.traits if body.context is not None else None
    if isinstance(traits, dict) and traits:
        kind, value = next(iter(traits.items()))
        return {"type": str(kind), "value": str(value)}
    return None
