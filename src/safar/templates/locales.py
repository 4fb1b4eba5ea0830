"""Locale codes: which ones templates may use, how a customer's locale trait is read, and which
languages are written right to left."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final, Literal

_ISO_639_1: Final = """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv
    cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr
    ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw
    ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv
    ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr
    ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi
    yo za zh zu
"""
#: ISO 639-1 language codes. Template locales are bare language codes: a template has one
#: Persian variant, not one per country, so ``fa-IR`` and ``fa-AF`` both find ``fa``.
LANGUAGES: Final = frozenset(_ISO_639_1.split())

#: Languages written right to left (their default script in CLDR): Arabic, Persian, Hebrew,
#: Urdu, Pashto, Sindhi, Uyghur, Yiddish, Dhivehi.
RTL: Final = frozenset({"ar", "fa", "he", "ur", "ps", "sd", "ug", "yi", "dv"})

#: Profile traits read, in order, for the customer's locale.
LOCALE_TRAITS: Final = ("locale", "language")

# Three-letter and legacy codes clients send that are not ISO 639-1.
_ALIASES: Final = {
    **{"iw": "he", "ji": "yi", "in": "id", "per": "fa", "fas": "fa", "ara": "ar"},
    **{"zho": "zh", "chi": "zh", "cmn": "zh", "yue": "zh"},
}

Direction = Literal["ltr", "rtl"]


def normalize_locale(value: object) -> str | None:
    """The ISO 639-1 language of a locale tag, or None when it names no known language.

    ``fa-IR`` → ``fa``, ``zh-Hans-CN`` / ``zh_CN`` → ``zh``, ``ar_EG`` → ``ar``, ``EN`` → ``en``.
    """
    if not isinstance(value, str):
        return None
    language = value.strip().replace("_", "-").split("-", 1)[0].lower()
    language = _ALIASES.get(language, language)
    return language if language in LANGUAGES else None


def direction(locale: str) -> Direction:
    """``rtl`` for languages written right to left, else ``ltr``."""
    return "rtl" if locale in RTL else "ltr"


def choose_locale(
    available: Collection[str],
    default: str,
    *,
    explicit: str | None = None,
    traits: Mapping[str, Any] | None = None,
) -> str:
    """The variant to render: ``explicit``, else the profile's locale trait, else ``default``.

    A wanted locale the template lacks falls back to ``default``.
    """
    wanted = normalize_locale(explicit) if explicit else None
    if wanted is None and traits:
        for trait in LOCALE_TRAITS:
            wanted = normalize_locale(traits.get(trait))
            if wanted is not None:
                break
    return wanted if wanted is not None and wanted in available else default
