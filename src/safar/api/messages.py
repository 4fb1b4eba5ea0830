"""What Safar did about messages to one customer, and their choices: policy decisions, consent,
the in-app inbox; and, for admins, dead letters (``/v1/outbox/dead``).

Decisions answer "why didn't Sara get the email?": every message the policy gate held back,
delayed or let through, with the rule that decided. Decisions and inbox items written under
profiles since merged into this one are included. Consent is read and written under the
current profile id only, because that is where the policy gate reads it; each choice recorded
is also appended to the event log as a :data:`CONSENT_CHANGED` track event, so segments that
read consent are evaluated again and journeys can react to it.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from safar.api.auth import ApiKeyAuth
from safar.api.profiles import parse_limit
from safar.api.requests import (
    decode_body,
    find_profile,
    iso_or_none,
    profile_ids,
    read_body,
    resolve_ref,
)
from safar.core.identity import IdentityRules
from safar.errors import NotFound, ValidationError
from safar.model.events import iso
from safar.model.messages import CHANNELS, Consent, Decision, InboxItem
from safar.model.profiles import Profile
from safar.model.runs import OutboxEntry, SendCommand
from safar.ports import Clock, DeliveryStore, EventLog, Outbox, ProfileReader
from safar.runtime.internal import track_event

_MAX_CATEGORY: Final = 100
#: The event a consent choice made through the API is recorded as.
CONSENT_CHANGED: Final = "Consent Changed"


class _ConsentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    channel: str
    category: str
    subscribed: bool


class MessageEndpoints:
    """Per-customer message endpoints. Store work runs in threads: the stores block."""

    def __init__(
        self,
        *,
        delivery: DeliveryStore,
        events: EventLog,
        profiles: ProfileReader,
        rules: IdentityRules,
        clock: Clock,
    ) -> None:
        self._delivery = delivery
        self._events = events
        self._profiles = profiles
        self._rules = rules
        self._clock = clock

    def decisions(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/decisions?limit=``: newest first."""
        limit = parse_limit(request)
        profile = self._find(request)
        found = [d for pid in profile_ids(profile) for d in self._delivery.decisions(pid, limit)]
        # Stable: ties keep the store's order within each profile id.
        found.sort(key=lambda decision: decision.at, reverse=True)
        return JSONResponse({"data": [decision_document(d) for d in found[:limit]]})

    def consents(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/consent``: the customer's current choices."""
        profile = self._find(request)
        choices = self._delivery.consents([profile.id])
        return JSONResponse({"data": [consent_document(c) for c in choices]})

    async def set_consent(self, request: Request) -> JSONResponse:
        """``PUT /v1/profiles/{ref}/consent``: record one choice, from now on."""
        wanted = decode_body(await read_body(request), _ConsentRequest)
        if wanted.channel not in CHANNELS:
            raise ValidationError(
                f"unknown channel {wanted.channel!r}; use one of {', '.join(CHANNELS)}", "channel"
            )
        category = wanted.category.strip()
        if not 0 < len(category) <= _MAX_CATEGORY or "\x00" in category:
            raise ValidationError(
                f"must be a category name (1 to {_MAX_CATEGORY} characters, no NUL) or '*' for all",
                "category",
            )
        chosen = msgspec.structs.replace(wanted, category=category)
        return await run_in_threadpool(self._set_consent, request.path_params["ref"], chosen)

    def _set_consent(self, ref: str, wanted: _ConsentRequest) -> JSONResponse:
        identifier, profile = resolve_ref(self._profiles, self._rules, ref)
        now = self._clock.now_ms()
        consent = Consent(
            profile_id=profile.id,
            channel=wanted.channel,
            category=wanted.category,
            subscribed=wanted.subscribed,
            at=now,
            source="api",
        )
        self._delivery.set_consent(consent)
        # After the store: the audience processor reads the choice when it meets the event.
        # The key names the choice, so a request retried at the same instant is one event.
        choice = f"{wanted.channel}:{wanted.category}:{str(wanted.subscribed).lower()}"
        event = track_event(
            key=f"consent:{profile.id}:{choice}:{now}",
            identifier=identifier,
            name=CONSENT_CHANGED,
            properties={
                "channel": wanted.channel,
                "category": wanted.category,
                "subscribed": wanted.subscribed,
                "source": consent.source,
            },
            at=now,
        )
        self._events.append([event])
        return JSONResponse(consent_document(consent))

    def inbox(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/inbox?include_dismissed=``: newest first."""
        text = request.query_params.get("include_dismissed", "false").strip().lower()
        if text not in ("true", "false"):
            raise ValidationError(f"must be true or false, got {text!r}", "include_dismissed")
        profile = self._find(request)
        items = [
            item
            for pid in profile_ids(profile)
            for item in self._delivery.inbox(pid, include_dismissed=text == "true")
        ]
        items.sort(key=lambda item: item.created_at, reverse=True)
        return JSONResponse({"data": [inbox_document(item) for item in items]})

    def read(self, request: Request) -> JSONResponse:
        """``POST /v1/profiles/{ref}/inbox/{item_id}/read``."""
        return self._mark(request, "read")

    def dismiss(self, request: Request) -> JSONResponse:
        """``POST /v1/profiles/{ref}/inbox/{item_id}/dismiss``."""
        return self._mark(request, "dismiss")

    def _mark(self, request: Request, action: str) -> JSONResponse:
        profile = self._find(request)
        item_id = request.path_params["item_id"]
        now = self._clock.now_ms()
        for pid in profile_ids(profile):
            if self._delivery.mark_inbox(pid, item_id, action, now):
                marked = [i for i in self._delivery.inbox(pid, True) if i.id == item_id]
                return JSONResponse(inbox_document(marked[0]))
        raise NotFound(f"profile {profile.id} has no inbox item {item_id!r}")

    def _find(self, request: Request) -> Profile:
        return find_profile(self._profiles, self._rules, request.path_params["ref"])


def message_routes(
    auth: ApiKeyAuth,
    *,
    delivery: DeliveryStore,
    events: EventLog,
    profiles: ProfileReader,
    rules: IdentityRules,
    clock: Clock,
) -> list[Route]:
    """Decisions, consent and inbox under ``/v1/profiles/{ref}``: reading needs ``read``,
    changing ``write``. Consent choices are also appended to ``events``."""
    api = MessageEndpoints(
        delivery=delivery, events=events, profiles=profiles, rules=rules, clock=clock
    )
    read, write = auth.require("read"), auth.require("write")
    inbox_item = "/v1/profiles/{ref}/inbox/{item_id}"
    return [
        Route("/v1/profiles/{ref}/decisions", read(api.decisions), methods=["GET"]),
        Route("/v1/profiles/{ref}/consent", read(api.consents), methods=["GET"]),
        Route("/v1/profiles/{ref}/consent", write(api.set_consent), methods=["PUT"]),
        Route("/v1/profiles/{ref}/inbox", read(api.inbox), methods=["GET"]),
        Route(f"{inbox_item}/read", write(api.read), methods=["POST"]),
        Route(f"{inbox_item}/dismiss", write(api.dismiss), methods=["POST"]),
    ]


def dead_letter_routes(auth: ApiKeyAuth, *, outbox: Outbox) -> list[Route]:
    """``GET /v1/outbox/dead?limit=`` (``admin``): commands that ran out of attempts."""

    def dead(request: Request) -> JSONResponse:
        letters = outbox.dead(parse_limit(request))
        return JSONResponse({"data": [dead_letter_document(entry) for entry in letters]})

    return [Route("/v1/outbox/dead", auth.require("admin")(dead), methods=["GET"])]


def decision_document(decision: Decision) -> dict[str, Any]:
    """One policy decision as the API renders it."""
    return {
        "message_key": decision.message_key,
        "journey_id": decision.journey_id,
        "step_id": decision.step_id,
        "channel": decision.channel,
        "category": decision.category,
        "at": iso(decision.at),
        "outcome": decision.outcome,
        "rule": decision.rule,
        "detail": decision.detail,
        "until": iso_or_none(decision.until),
    }


def consent_document(consent: Consent) -> dict[str, Any]:
    """One consent choice as the API renders it."""
    return {
        "channel": consent.channel,
        "category": consent.category,
        "subscribed": consent.subscribed,
        "at": iso(consent.at),
        "source": consent.source,
    }


def inbox_document(item: InboxItem) -> dict[str, Any]:
    """One in-app message as the API renders it."""
    return {
        "id": item.id,
        "created_at": iso(item.created_at),
        "subject": item.subject,
        "text": item.text,
        "data": item.data,
        "read_at": iso_or_none(item.read_at),
        "dismissed_at": iso_or_none(item.dismissed_at),
    }


def dead_letter_document(entry: OutboxEntry) -> dict[str, Any]:
    """A dead letter: what it was, for whom, and the last error."""
    command = entry.command
    return {
        "key": entry.key,
        "kind": command.__struct_config__.tag,
        "journey_id": command.message.journey_id if isinstance(command, SendCommand) else None,
        "profile_id": entry.profile_id,
        "due": iso(entry.due),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
    }
