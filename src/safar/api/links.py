"""The public link endpoints in messages: unsubscribe (``/l/u/``), open pixel (``/l/o/``) and
click redirect (``/l/c/``). No API key: the signed token (:mod:`safar.runtime.links`) is the
authorization, and a token that does not verify is refused with 400.

Each records what happened as a track event in the customer's log (``Unsubscribed``,
``Email Opened``, ``Email Clicked``) whose messageId derives from the message key, so a second
open, a repeated click on the same link or a double unsubscribe is deduplicated by the log.

Unsubscribing acts only on POST: mail scanners fetch links with GET, so the GET shows a page
with a button. POST is also what RFC 8058 one-click unsubscribe sends
(``List-Unsubscribe=One-Click``). Consent is recorded under the profile that holds the
message's identifier now (the policy gate reads it there), falling back to the profile the
message was sent to.
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from safar.errors import ValidationError
from safar.model.messages import Consent
from safar.ports import Clock, DeliveryStore, EventLog, ProfileReader
from safar.runtime.internal import track_event
from safar.runtime.links import Links, safe_target

#: A 1x1 transparent GIF.
PIXEL: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_CACHE: Final = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# The token is in the URL: it must not leak to other sites through the Referer header.
_PRIVATE: Final = {**_NO_CACHE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
_CHANNEL_WORDS: Final = {
    "email": "emails",
    "sms": "text messages",
    "in_app": "in-app messages",
    "webhook": "messages",
}


class LinkClaims(msgspec.Struct, kw_only=True, frozen=True):
    """What a message's signed link says (see ``safar.runtime.dispatch``)."""

    k: str  # message key
    p: str  # profile id the message was sent to
    i: tuple[str, str]  # the identifier the customer entered the journey with
    c: str  # channel
    g: str  # category
    j: str = ""  # journey id
    s: str = ""  # step id
    url: str | None = None  # click target


class LinkEndpoints:
    """The link endpoints. Sync: the stores block, so Starlette runs them in threads."""

    def __init__(
        self,
        *,
        links: Links,
        delivery: DeliveryStore,
        events: EventLog,
        profiles: ProfileReader,
        clock: Clock,
    ) -> None:
        self._links = links
        self._delivery = delivery
        self._events = events
        self._profiles = profiles
        self._clock = clock

    def unsubscribe_page(self, request: Request) -> Response:
        """``GET /l/u/{token}``: a page asking to confirm, with a button that POSTs."""
        try:
            claims = self.claims(request.path_params["token"])
        except ValidationError:
            return _invalid_page()
        what = escape(_describe(claims))
        body = (
            f"<h1>Unsubscribe?</h1><p>You will no longer receive {what} from us.</p>"
            '<form method="post"><button type="submit">Unsubscribe</button></form>'
        )
        return HTMLResponse(_page("Unsubscribe", body), headers=_PRIVATE)

    def unsubscribe(self, request: Request) -> Response:
        """``POST /l/u/{token}``: record the opt-out and confirm it (also RFC 8058 one-click)."""
        try:
            claims = self.claims(request.path_params["token"])
        except ValidationError:
            return _invalid_page()
        now = self._clock.now_ms()
        found = self._profiles.find(claims.i)
        consent = Consent(
            profile_id=found.id if found is not None else claims.p,
            channel=claims.c,
            category=claims.g,
            subscribed=False,
            at=now,
            source="link",
        )
        self._delivery.set_consent(consent)
        properties = {
            "channel": claims.c,
            "category": claims.g,
            "message_key": claims.k,
            "journey_id": claims.j,
        }
        self._record(claims, "Unsubscribed", "unsubscribed", properties)
        body = (
            "<h1>You are unsubscribed</h1>"
            f"<p>You will no longer receive {escape(_describe(claims))} from us.</p>"
            "<p>You can close this page.</p>"
        )
        return HTMLResponse(_page("Unsubscribed", body), headers=_PRIVATE)

    def opened(self, request: Request) -> Response:
        """``GET /l/o/{token}``: the open pixel. Only the first open of a message counts."""
        claims = self.claims(request.path_params["token"])
        self._record(claims, "Email Opened", "opened", _message_properties(claims))
        return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)

    def clicked(self, request: Request) -> Response:
        """``GET /l/c/{token}``: record the click, then redirect to the link's target."""
        claims = self.claims(request.path_params["token"])
        if claims.url is None:
            raise ValidationError("the link has no target", "token")
        target = safe_target(claims.url)
        digest = hashlib.sha1(claims.url.encode(), usedforsecurity=False).hexdigest()[:10]
        properties = {**_message_properties(claims), "url": claims.url}
        self._record(claims, "Email Clicked", f"clicked:{digest}", properties)
        return RedirectResponse(target, status_code=302, headers=_PRIVATE)

    async def status(self, request: Request) -> Response:
        """``POST /l/s/{token}``: a provider's delivery report (Twilio's ``StatusCallback``:
        a form with ``MessageStatus``). ``delivered`` becomes a ``Message Delivered`` event,
        ``undelivered`` and ``failed`` a ``Message Failed`` one; other states are noted only.
        """
        claims = self.claims(request.path_params["token"])
        form = await request.form()
        state = str(form.get("MessageStatus") or form.get("status") or "").lower()
        properties = {**_message_properties(claims), "provider_status": state}
        error = form.get("ErrorCode")
        if error:
            properties["error"] = str(error)
        if state == "delivered":
            await run_in_threadpool(
                self._record, claims, "Message Delivered", "delivered", properties
            )
        elif state in ("undelivered", "failed"):
            await run_in_threadpool(
                self._record, claims, "Message Failed", "provider-failed", properties
            )
        return Response(status_code=204)

    def claims(self, token: str) -> LinkClaims:
        """The claims of a token this installation signed; ValidationError otherwise."""
        # hmac.compare_digest refuses non-ASCII text with a TypeError; no valid token has any.
        if not token.isascii():
            raise ValidationError("the link is not valid", "token")
        try:
            return msgspec.convert(self._links.verify(token), LinkClaims)
        except msgspec.ValidationError as exc:
            raise ValidationError("the link is not valid (missing claims)", "token") from exc

    def _record(
        self, claims: LinkClaims, name: str, suffix: str, properties: dict[str, Any]
    ) -> None:
        event = track_event(
            key=f"{claims.k}:{suffix}",
            identifier=claims.i,
            name=name,
            properties=properties,
            at=self._clock.now_ms(),
        )
        self._events.append([event])


def link_routes(
    *,
    links: Links,
    delivery: DeliveryStore,
    events: EventLog,
    profiles: ProfileReader,
    clock: Clock,
) -> list[Route]:
    """``/l/u/{token}`` (GET, POST), ``/l/o/{token}``, ``/l/c/{token}`` and ``/l/s/{token}``
    (POST): no API key, the signed token is the authorization."""
    api = LinkEndpoints(
        links=links, delivery=delivery, events=events, profiles=profiles, clock=clock
    )
    return [
        Route("/l/u/{token}", api.unsubscribe_page, methods=["GET"]),
        Route("/l/u/{token}", api.unsubscribe, methods=["POST"]),
        Route("/l/o/{token}", api.opened, methods=["GET"]),
        Route("/l/c/{token}", api.clicked, methods=["GET"]),
        Route("/l/s/{token}", api.status, methods=["POST"]),
    ]


def _message_properties(claims: LinkClaims) -> dict[str, Any]:
    return {
        "message_key": claims.k,
        "journey_id": claims.j,
        "step_id": claims.s,
        "channel": claims.c,
    }


def _describe(claims: LinkClaims) -> str:
    """E.g. "marketing emails"."""
    things = _CHANNEL_WORDS.get(claims.c, f"{claims.c} messages")
    return things if claims.g == "*" else f"{claims.g} {things}"


def _invalid_page() -> HTMLResponse:
    body = (
        "<h1>This link is not valid</h1>"
        "<p>It may have been copied incompletely. Open it again from the message, or contact"
        " us to change what you receive.</p>"
    )
    return HTMLResponse(_page("Link not valid", body), status_code=400, headers=_PRIVATE)


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 30rem; margin: 4rem auto; padding: 0 1rem;
       line-height: 1.5; color: #222; text-align: center; }}
button {{ font: inherit; padding: .5rem 1.5rem; border: 0; border-radius: .3rem;
         background: #225; color: #fff; cursor: pointer; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
