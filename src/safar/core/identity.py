"""Which identifiers an event carries, normalized, and in what priority order.

An event is known by:

- ``user_id`` from ``userId`` and ``anonymous_id`` from ``anonymousId``, trimmed;
- ``email`` from the user's traits, trimmed and lower-cased; values without ``local@domain.tld``
  are ignored;
- ``phone`` from the user's traits, in E.164 (see :func:`normalize_phone`); invalid numbers are
  ignored;
- each configured external id type (``IdentitySettings.external_ids``, e.g. ``crm_id``) from
  ``context.externalIds`` (Segment's ``[{"id": …, "type": …}]``) or from the user's traits.

"The user's traits" are ``traits`` then ``context.traits`` for identify calls and only
``context.traits`` otherwise: a group call's ``traits`` describe the group, not the person.

Alias calls: ``previousId`` is read as an ``anonymous_id``. Segment's meaning is "the person
known as ``previousId`` is now ``userId``", and nearly always ``previousId`` is the anonymous id
the person had before signing up. Typing it as a ``user_id`` would make every rename of a user id
a refused merge under the default limit of one ``user_id`` per profile; as an ``anonymous_id`` it
links the old identity's anonymous history to the new user. The cost: a profile holding
``user_id:OLD`` is linked only if some event also carried ``OLD`` as an anonymous id.

Values listed in ``IdentitySettings.blocked_values`` (case-insensitively, after trimming) are
dropped, so placeholder ids such as ``"null"`` or ``"unknown"`` never link two people.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import msgspec

from safar.config import IdentitySettings
from safar.model.events import Event
from safar.model.profiles import ANONYMOUS_ID, EMAIL, PHONE, USER_ID, Identifier

# Phone punctuation people type; anything else that is not a digit makes the number invalid.
_PHONE_PUNCTUATION: Final = str.maketrans("", "", " -()./\t\u00a0\u2010\u2011\u2012\u2013")
_SPACE: Final = re.compile(r"\s")
# E.164: a country code and subscriber number of at most 15 digits; 7 is the shortest in use.
_PHONE_MIN_DIGITS: Final = 7
_PHONE_MAX_DIGITS: Final = 15
#: The longest identifier value, in characters. PostgreSQL's unique index on identifiers takes
#: entries of at most 2,704 bytes (a value of random characters is stored as it is), and a
#: character takes up to 4 bytes: a longer value would fail every commit of its batch.
MAX_IDENTIFIER_CHARS: Final = 512
#: The longest trait name, in characters, for the same reason (trait history is keyed by it).
MAX_TRAIT_NAME_CHARS: Final = 256


class IdentityRules:
    """:class:`~safar.config.IdentitySettings` compiled for fast use by the pure core."""

    __slots__ = (
        "_rank",
        "blocked",
        "default_country_code",
        "external_ids",
        "limits",
        "user_id_first",
    )

    def __init__(self, settings: IdentitySettings) -> None:
        self.external_ids: tuple[str, ...] = tuple(
            kind.strip().lower() for kind in settings.external_ids if kind.strip()
        )
        self.limits: dict[str, int] = dict(settings.limits)
        self.blocked: frozenset[str] = frozenset(v.strip().lower() for v in settings.blocked_values)
        self.default_country_code = "".join(c for c in settings.default_country_code if c.isdigit())
        self._rank: dict[str, int] = {}
        for kind in settings.priority:
            self._rank.setdefault(kind, len(self._rank))
        self.user_id_first = self.sort_key((USER_ID, "")) < self.sort_key((ANONYMOUS_ID, ""))

    def rank(self, kind: str) -> int:
        """Priority of an identifier type: 0 is highest; unlisted types rank after listed ones."""
        return self._rank.get(kind, len(self._rank))

    def sort_key(self, identifier: Identifier) -> tuple[int, str, str]:
        """Order identifiers by priority, then type and value (so the order is total)."""
        return self._rank.get(identifier[0], len(self._rank)), identifier[0], identifier[1]

    def is_blocked(self, value: str) -> bool:
        """Whether ``value`` identifies no one: a blocked placeholder, or a value no store can
        key on (holding NUL, which PostgreSQL text cannot even store, or over
        :data:`MAX_IDENTIFIER_CHARS`)."""
        return (
            "\x00" in value
            or len(value) > MAX_IDENTIFIER_CHARS
            or value.strip().lower() in self.blocked
        )


class Extracted(NamedTuple):
    """What identity resolution reads from one event."""

    #: Distinct normalized identifiers, highest priority first. The event is attributed to the
    #: first one; it is empty when the event names nobody usable.
    identifiers: tuple[Identifier, ...]
    #: The traits an identify call sets, or None for other calls.
    traits: dict[str, Any] | None


class _Context(msgspec.Struct):
    traits: Any = None
    externalIds: Any = None


class _Body(msgspec.Struct):
    traits: Any = None
    context: _Context | None = None
    previousId: Any = None


_decode_body = msgspec.json.Decoder(_Body).decode
#: Event types whose identity fields are not all in userId / anonymousId.
_READS_BODY: Final = frozenset({"identify", "alias"})


def extract(event: Event, rules: IdentityRules) -> Extracted:
    """The identifiers and traits identity resolution reads from ``event``."""
    if not reads_body(event):
        return Extracted(ids_only(event.user_id, event.anonymous_id, rules), None)
    traits, context_traits, external_ids, previous_id = _fields(event.body)
    found: dict[Identifier, None] = {}  # an ordered set

    def add(kind: str, value: str | None) -> None:
        if value is not None and not rules.is_blocked(value):
            found[(kind, value)] = None

    add(USER_ID, clean_id(event.user_id))
    add(ANONYMOUS_ID, clean_id(event.anonymous_id))
    if event.type == "alias":
        add(ANONYMOUS_ID, clean_id(previous_id))
    identify = event.type == "identify"
    sources = [t for t in (traits if identify else None, context_traits) if isinstance(t, dict)]
    if sources:
        email = _first(sources, EMAIL)
        if isinstance(email, str):
            add(EMAIL, normalize_email(email))
        phone = _first(sources, PHONE)
        if isinstance(phone, (str, int)) and not isinstance(phone, bool):
            add(PHONE, normalize_phone(str(phone), rules.default_country_code))
        for kind in rules.external_ids:
            add(kind, clean_id(_first(sources, kind)))
    if isinstance(external_ids, list) and rules.external_ids:
        for entry in external_ids:
            if isinstance(entry, dict):
                declared = entry.get("type")
                if isinstance(declared, str) and declared.strip().lower() in rules.external_ids:
                    add(declared.strip().lower(), clean_id(entry.get("id")))
    identifiers = tuple(sorted(found, key=rules.sort_key)) if len(found) > 1 else tuple(found)
    user_traits: dict[str, Any] | None = None
    if identify:
        if isinstance(traits, dict) and traits:
            user_traits = traits
        elif isinstance(context_traits, dict):
            user_traits = context_traits
        else:
            user_traits = {}
    return Extracted(identifiers, user_traits)


#: Entries a :class:`Memo` holds before it starts again empty.
MEMO_LIMIT = 200_000


class Memo:
    """:func:`extract` for a stream of events, remembering the answer for events that do not
    :func:`reads_body` by their ``userId`` / ``anonymousId``: the same people recur batch after
    batch, and those are most events."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self._pairs: dict[tuple[str | None, str | None], Extracted] = {}

    def extract(self, event: Event) -> Extracted:
        if reads_body(event):
            return extract(event, self.rules)
        pair = (event.user_id, event.anonymous_id)
        found = self._pairs.get(pair)
        if found is None:
            if len(self._pairs) >= MEMO_LIMIT:
                self._pairs.clear()
            found = self._pairs[pair] = Extracted(ids_only(*pair, self.rules), None)
        return found


def reads_body(event: Event) -> bool:
    """Whether ``event`` may carry identifiers or traits beyond ``userId`` / ``anonymousId``.

    Most events (tracks, pages) do not: searching the raw bytes is far cheaper than decoding.
    """
    body = event.body
    return event.type in _READS_BODY or b"traits" in body or b"externalIds" in body


def ids_only(
    user: str | None, anonymous: str | None, rules: IdentityRules
) -> tuple[Identifier, ...]:
    """What :func:`extract` returns for an event that does not :func:`reads_body`, given its
    ``user_id`` and ``anonymous_id``."""
    if user is not None:
        user = user.strip()
        if not user or rules.is_blocked(user):
            user = None
    if anonymous is not None:
        anonymous = anonymous.strip()
        if not anonymous or rules.is_blocked(anonymous):
            anonymous = None
    if user is None:
        return () if anonymous is None else ((ANONYMOUS_ID, anonymous),)
    if anonymous is None:
        return ((USER_ID, user),)
    if rules.user_id_first:
        return (USER_ID, user), (ANONYMOUS_ID, anonymous)
    return (ANONYMOUS_ID, anonymous), (USER_ID, user)


def _fields(body: bytes) -> tuple[Any, Any, Any, Any]:
    """``traits``, ``context.traits``, ``context.externalIds`` and ``previousId`` of a body."""
    try:
        parsed = _decode_body(body)
    except msgspec.ValidationError:
        # ``context`` is not an object; ingestion should have refused it, but never fail here.
        return _fields_loosely(body)
    except (msgspec.DecodeError, RecursionError):
        # Not JSON, or nested too deep to read (taken before ingestion limited nesting).
        return None, None, None, None
    context = parsed.context
    if context is None:
        return parsed.traits, None, None, parsed.previousId
    return parsed.traits, context.traits, context.externalIds, parsed.previousId


def _fields_loosely(body: bytes) -> tuple[Any, Any, Any, Any]:
    data = msgspec.json.decode(body)
    if not isinstance(data, dict):
        return None, None, None, None
    context = data.get("context")
    if not isinstance(context, dict):
        context = {}
    return (
        data.get("traits"),
        context.get("traits"),
        context.get("externalIds"),
        data.get("previousId"),
    )


def _first(sources: list[dict[str, Any]], key: str) -> Any:
    for source in sources:
        value = source.get(key)
        if value is not None:
            return value
    return None


def clean_id(value: object) -> str | None:
    """An id as text, trimmed; None for anything empty or not a string or integer."""
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def normalize_email(value: str) -> str | None:
    """``value`` trimmed and lower-cased, or None unless it looks like ``local@domain.tld``."""
    text = value.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or domain[0] == "." or domain[-1] == ".":
        return None
    if _SPACE.search(text):
        return None
    return text


def normalize_phone(value: str, default_country_code: str) -> str | None:
    """``value`` in E.164 (``+`` and 7 to 15 digits), or None if it cannot be one.

    Spaces, dashes, dots, slashes and parentheses are dropped; digits of any script (Persian,
    Arabic-Indic …) count. ``00`` at the start means ``+``. A number with neither is national: one
    trunk ``0`` is dropped and ``default_country_code`` put in front.
    """
    text = value.strip().translate(_PHONE_PUNCTUATION)
    if not text:
        return None
    if text[0] == "+":
        number = _ascii_digits(text[1:])
    else:
        digits = _ascii_digits(text)
        if digits is None:
            return None
        if digits.startswith("00"):
            number = digits[2:]
        else:
            number = default_country_code + digits.removeprefix("0")
    if number is None or not _PHONE_MIN_DIGITS <= len(number) <= _PHONE_MAX_DIGITS:
        return None
    if number[0] == "0":  # country codes never start with 0
        return None
    return "+" + number


def _ascii_digits(text: str) -> str | None:
    if text.isascii():
        return text if text.isdigit() else None
    if not all(c.isdecimal() for c in text):
        return None
    return "".join(str(unicodedata.decimal(c)) for c in text)


def normalize_identifier(kind: str, value: str, rules: IdentityRules) -> str | None:
    """Normalize one identifier value the way :func:`extract` does; None if it is unusable.

    For looking profiles up by what a person typed, e.g. ``email:Sara@Example.com``.
    """
    if kind == EMAIL:
        normalized = normalize_email(value)
    elif kind == PHONE:
        normalized = normalize_phone(value, rules.default_country_code)
    else:
        normalized = clean_id(value)
    if normalized is None or rules.is_blocked(normalized):
        return None
    return normalized


def edge_key(identifiers: Iterable[Identifier]) -> str:
    """A fixed-size name for a set of identifiers, the same whatever their order or priority."""
    text = "\x1f".join(f"{kind}\x1e{value}" for kind, value in sorted(identifiers))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def by_type(identifiers: Iterable[Identifier]) -> dict[str, list[str]]:
    """Group identifiers as ``{type: [values]}``, types and values sorted."""
    grouped: dict[str, list[str]] = {}
    for kind, value in sorted(identifiers):
        grouped.setdefault(kind, []).append(value)
    return grouped
