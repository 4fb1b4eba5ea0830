"""Profiles: one per person, joined from every identifier they were seen with."""

from __future__ import annotations

from typing import Any, Final

import msgspec

#: Identifier types Safar always knows. External id types (e.g. ``crm_id``) are configured.
USER_ID: Final = "user_id"
ANONYMOUS_ID: Final = "anonymous_id"
EMAIL: Final = "email"
PHONE: Final = "phone"
BUILTIN_IDENTIFIER_TYPES: Final = (USER_ID, EMAIL, PHONE, ANONYMOUS_ID)

#: An identifier is a (type, value) pair, e.g. ("email", "sara@example.com"). Values are normalized.
Identifier = tuple[str, str]


def ref(identifier: Identifier) -> str:
    """The ``type:value`` form used in URLs and the CLI, e.g. ``user_id:42``."""
    return f"{identifier[0]}:{identifier[1]}"


def parse_ref(text: str) -> Identifier:
    """Split ``type:value`` (the value may itself contain ``:``). Raises ValueError if malformed."""
    kind, sep, value = text.partition(":")
    if not sep or not kind or not value:
        raise ValueError(f"expected TYPE:VALUE such as user_id:42, got {text!r}")
    return kind, value


class Profile(msgspec.Struct, kw_only=True):
    """The current, unified view of one person."""

    id: str
    identifiers: dict[str, list[str]]
    traits: dict[str, Any]
    first_seen: int
    last_seen: int
    merged_from: list[str] = msgspec.field(default_factory=list)


class TraitChange(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a profile's trait history."""

    key: str
    value: Any
    timestamp: int
    message_id: str
    seq: int


class MergeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A merge done or refused. ``refused`` merges carry the rule that stopped them in ``reason``."""

    into: str
    other: str
    reason: str
    refused: bool
    message_id: str
    at: int
