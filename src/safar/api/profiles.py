"""``/v1/profiles/{ref}``: one customer's profile, timeline, trait history and merges.

``ref`` is ``type:value`` (``user_id:42``, ``email:sara@example.com``), percent-decoded by the
server and normalized by :func:`safar.core.identity.normalize_identifier`, as identity
resolution normalizes what events carry, so ``email:Sara@Example.com`` finds the same profile.
Values containing ``/`` cannot be addressed: servers decode ``%2F`` before routing.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from safar.api.auth import ApiKeyAuth
from safar.core.identity import IdentityRules, normalize_identifier
from safar.errors import NotFound, ValidationError
from safar.model.events import iso
from safar.model.profiles import (
    Identifier,
    MergeRecord,
    Profile,
    TraitChange,
    parse_ref,
)
from safar.model.profiles import ref as ref_text
from safar.ports import EventLog, ProfileReader

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1000

# Spellings clients use in Segment payloads, accepted in refs for convenience.
_TYPE_ALIASES: Final = {"userid": "user_id", "anonymousid": "anonymous_id"}
_TYPE_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]*")
_CURSOR_PREFIX: Final = "seq:"


class ProfileEndpoints:
    """The profile read endpoints. Sync, because the stores block: they run in threads."""

    def __init__(
        self,
        *,
        events: EventLog,
        profiles: ProfileReader,
        rules: IdentityRules,
    ) -> None:
        self._events = events
        self._profiles = profiles
        self._rules = rules

    def get_profile(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}``."""
        profile = self._find(request)
        return JSONResponse(profile_document(profile, self._profiles.processed_seq()))

    def list_events(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/events?limit=&cursor=``: newest first, paged by cursor."""
        limit = parse_limit(request)
        before = (
            decode_cursor(request.query_params["cursor"])
            if "cursor" in request.query_params
            else None
        )
        profile = self._find(request)
        # One extra seq tells whether another page exists without a second query.
        seqs = self._profiles.timeline(profile.id, limit + 1, before)
        page = seqs[:limit]
        by_seq = {event.seq: event for event in self._events.get(page)}
        data = [by_seq[seq].payload() for seq in page if seq in by_seq]
        following = encode_cursor(page[-1]) if len(seqs) > limit else None
        return JSONResponse({"data": data, "next": following})

    def trait_history(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/traits/history?limit=``: trait changes, newest first."""
        limit = parse_limit(request)
        profile = self._find(request)
        changes = self._profiles.trait_history(profile.id, limit)
        return JSONResponse({"data": [trait_change_document(change) for change in changes]})

    def merges(self, request: Request) -> JSONResponse:
        """``GET /v1/profiles/{ref}/merges``: merges done and refused, oldest first."""
        profile = self._find(request)
        records = self._profiles.merges(profile.id)
        return JSONResponse({"data": [merge_document(record) for record in records]})

    def _find(self, request: Request) -> Profile:
        identifier = identifier_from_ref(request.path_params["ref"], self._rules)
        profile = self._profiles.find(identifier)
        if profile is None:
            raise NotFound(f"no profile has the identifier {ref_text(identifier)}")
        return profile


def profile_routes(
    auth: ApiKeyAuth,
    *,
    events: EventLog,
    profiles: ProfileReader,
    rules: IdentityRules,
) -> list[Route]:
    """The ``/v1/profiles`` routes, each needing the ``read`` scope.

    ``rules`` normalize identifiers in refs as identity resolution does (phone country code, …).
    """
    api = ProfileEndpoints(events=events, profiles=profiles, rules=rules)
    read = auth.require("read")
    return [
        Route("/v1/profiles/{ref}", read(api.get_profile), methods=["GET"]),
        Route("/v1/profiles/{ref}/events", read(api.list_events), methods=["GET"]),
        Route("/v1/profiles/{ref}/traits/history", read(api.trait_history), methods=["GET"]),
        Route("/v1/profiles/{ref}/merges", read(api.merges), methods=["GET"]),
    ]


def identifier_from_ref(text: str, rules: IdentityRules) -> Identifier:
    """The normalized identifier a ``type:value`` ref names; ValidationError if it names none."""
    try:
        kind, value = parse_ref(text)
    except ValueError as exc:
        raise ValidationError(str(exc), location="ref") from exc
    kind = kind.strip().lower()
    kind = _TYPE_ALIASES.get(kind, kind)
    if not _TYPE_PATTERN.fullmatch(kind):
        raise ValidationError(
            f"identifier type {kind!r} is not a name such as user_id, email or phone",
            location="ref",
        )
    normalized = normalize_identifier(kind, value, rules)
    if normalized is None:
        raise ValidationError(
            f"{value!r} never identifies anyone as {kind}: not a valid {kind},"
            " or a placeholder value that identity resolution ignores",
            location="ref",
        )
    return kind, normalized


def parse_limit(
    request: Request,
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
    name: str = "limit",
    minimum: int = 1,
) -> int:
    """The ``limit`` (or ``name``) query parameter, ``minimum`` to ``maximum``; ValidationError
    naming it otherwise."""
    text = request.query_params.get(name)
    if text is None:
        return default
    # isascii: str.isdigit also accepts Arabic-Indic and other digits, which int() would take.
    if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= maximum:
        raise ValidationError(
            f"must be a whole number from {minimum} to {maximum}, got {text!r}", name
        )
    return int(text)


def encode_cursor(seq: int) -> str:
    """An opaque cursor meaning "continue below event ``seq``"."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    """The seq inside a cursor from :func:`encode_cursor`; ValidationError naming ``cursor``."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        decoded = raw.decode("ascii")
    except ValueError:  # binascii.Error, non-ASCII text and undecodable bytes are all ValueErrors
        decoded = ""
    number = decoded.removeprefix(_CURSOR_PREFIX)
    if decoded.startswith(_CURSOR_PREFIX) and number.isdigit() and int(number) > 0:
        return int(number)
    raise ValidationError("not a cursor from this API; pass the previous page's `next`", "cursor")


def profile_document(profile: Profile, processed_seq: int) -> dict[str, Any]:
    """A profile as the API renders it; ``processed_seq`` says how current it is. Computed
    traits and ``segments`` are there when it was read through
    :class:`~safar.runtime.audience_view.AudienceReader`."""
    return {
        "id": profile.id,
        "identifiers": profile.identifiers,
        "traits": profile.traits,
        "first_seen": iso(profile.first_seen),
        "last_seen": iso(profile.last_seen),
        "merged_from": profile.merged_from,
        "segments": profile.segments,
        "processed_seq": processed_seq,
    }


def trait_change_document(change: TraitChange) -> dict[str, Any]:
    """One trait history entry as the API renders it."""
    return {
        "key": change.key,
        "value": change.value,
        "timestamp": iso(change.timestamp),
        "message_id": change.message_id,
        "seq": change.seq,
    }


def merge_document(record: MergeRecord) -> dict[str, Any]:
    """One merge record as the API renders it."""
    return {
        "into": record.into,
        "other": record.other,
        "refused": record.refused,
        "reason": record.reason,
        "message_id": record.message_id,
        "at": iso(record.at),
    }
