"""Helpers the management endpoints share: reading and decoding request bodies (JSON, or a
definition file as YAML), finding the profile a ``type:value`` ref names, rendering definition
problems and times."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from safar.api.profiles import identifier_from_ref
from safar.core.identity import IdentityRules
from safar.definitions import Problem
from safar.errors import NotFound, PayloadTooLarge, ValidationError
from safar.model.events import iso
from safar.model.nesting import check_nesting
from safar.model.profiles import Identifier, Profile
from safar.model.profiles import ref as ref_text
from safar.ports import ProfileReader

T = TypeVar("T")

#: Media types a definition file may be sent as; anything else must be JSON.
YAML_TYPES: Final = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)
#: The largest request body the management API reads; journey files are a few kilobytes.
MAX_BODY: Final = 1 << 20
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}
_AT: Final = re.compile(r" - at `\$\.?(.*)`$")
_FIELD: Final = re.compile(r"Object (missing required|contains unknown) field `(.+)`")


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with PayloadTooLarge past ``limit`` bytes (before reading all
    of it when the client declares its length)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{declared} bytes, over the {limit}-byte limit", "body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"over the {limit}-byte limit", "body")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_body(body: bytes, kind: type[T]) -> T:
    """A JSON body as ``kind``; ValidationError naming the field that is wrong."""
    if not body.strip():
        raise ValidationError("send a JSON object", "body")
    check_nesting(body, "body")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        path = at.group(1) if at else ""
        reason = text[: at.start()] if at else text
        field = _FIELD.fullmatch(reason)
        if field:
            path = f"{path}.{field.group(2)}" if path else field.group(2)
            reason = "is required" if field.group(1).startswith("missing") else "unknown field"
        raise ValidationError(reason, path or "body") from exc
    except msgspec.DecodeError as exc:
        raise ValidationError(f"not valid JSON ({exc})", "body") from exc


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ("" when there is none)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def text_body(body: bytes, what: str) -> str:
    """A body that must be UTF-8 text (a definition file); ValidationError otherwise."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"the {what} file must be UTF-8 text", "body") from exc


def query_flag(request: Request, name: str) -> bool:
    """A ``true``/``false`` query parameter (false when absent); ValidationError naming it."""
    text = request.query_params.get(name, "false").strip().lower()
    if text not in _BOOLEANS:
        raise ValidationError(f"must be true or false, got {text!r}", name)
    return _BOOLEANS[text]


def problems_response(problems: Sequence[Problem], what: str) -> JSONResponse:
    """400 listing what is wrong with a definition file (the ``what``: journey, segment ...),
    each problem with its line and field."""
    listed = [{"line": p.line, "field": p.field, "message": p.message} for p in problems]
    summary = "; ".join(
        f"line {p.line}: {p.field + ': ' if p.field else ''}{p.message}" for p in problems[:3]
    )
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    error = f"the {what} has {len(problems)} problem(s): {summary}{more}"
    return JSONResponse({"error": error, "problems": listed}, status_code=400)


def resolve_ref(
    profiles: ProfileReader, rules: IdentityRules, text: str, location: str = "ref"
) -> tuple[Identifier, Profile]:
    """The normalized identifier the ``type:value`` ref ``text`` names and the profile holding
    it; ValidationError (naming ``location``) for a malformed ref, NotFound when no profile
    holds it."""
    try:
        identifier = identifier_from_ref(text, rules)
    except ValidationError as exc:
        raise ValidationError(exc.reason, location) from exc
    profile = profiles.find(identifier)
    if profile is None:
        raise NotFound(f"no profile has the identifier {ref_text(identifier)}")
    return identifier, profile


def find_profile(
    profiles: ProfileReader, rules: IdentityRules, text: str, location: str = "ref"
) -> Profile:
    """The profile holding the ref ``text``; see :func:`resolve_ref`."""
    return resolve_ref(profiles, rules, text, location)[1]


def profile_ids(profile: Profile) -> list[str]:
    """The profile's id and the ids of profiles merged into it: records written before a merge
    stay under the old id."""
    return [profile.id, *profile.merged_from]


def iso_or_none(ms: int | None) -> str | None:
    """An optional time in ISO 8601."""
    return None if ms is None else iso(ms)
