"""A message template as loaded from its file: one variant per locale, each with the fields its
channel uses. Plain data; parsing lives in :mod:`safar.templates.loader`, rendering in
:mod:`safar.templates.render`."""

from __future__ import annotations

from typing import Any, Final

import msgspec

#: Channel → (required fields, optional fields) of each locale variant.
CHANNEL_FIELDS: Final[dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    "email": (frozenset({"subject", "html"}), frozenset({"text"})),
    "sms": (frozenset({"text"}), frozenset()),
    "in_app": (frozenset({"subject", "text"}), frozenset({"data"})),
    "webhook": (frozenset({"data"}), frozenset()),
    "console": (frozenset({"text"}), frozenset({"subject"})),
}

#: Fields whose output is HTML: values inserted into them are escaped.
HTML_FIELDS: Final = frozenset({"html"})


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """One locale of a template. ``fields`` maps subject/html/text to Liquid source; ``data`` is a
    mapping whose string values (at any depth) are Liquid source."""

    locale: str
    fields: dict[str, str] = msgspec.field(default_factory=dict)
    data: dict[str, Any] | None = None


class Template(msgspec.Struct, frozen=True, kw_only=True):
    """A template: ``<templates dir>/<id>.yaml``. ``file`` is where it was read from."""

    id: str
    channel: str
    default_locale: str = "en"
    locales: dict[str, Variant]
    description: str | None = None
    file: str | None = None
