"""Liquid filters Safar adds to the standard ones.

- ``money``: ``{{ 1234.5 | money: "EUR" }}`` → ``1,234.50 EUR`` (the currency's own number of
  decimals: ``JPY`` and ``IRR`` have none, ``KWD`` three; two otherwise).
- ``digits``: ASCII digits as the locale writes them: ``{{ "1,250.5" | digits }}`` in ``fa`` →
  ``۱٬۲۵۰٫۵``; an explicit locale may be given (``digits: "ar"``). Other locales are unchanged.
- ``isolate``: wraps a value in Unicode directional isolates (U+2068 … U+2069), so a Latin order
  id or e-mail address inside Persian or Arabic text (or the reverse) does not reorder the
  words around it. Use it for values of unknown direction inside SMS and plain text.
- ``json``: the value as JSON, for webhook and in-app ``data``.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final

import msgspec
from liquid import RenderContext, is_undefined
from liquid.exceptions import FilterArgumentError
from liquid.filter import with_context

# ISO 4217 minor units; IRR (two in ISO) is written without decimals in practice.
_ZERO_DECIMALS: Final = frozenset({"JPY", "KRW", "IRR", "VND", "CLP", "ISK", "UGX", "XAF"})
_THREE_DECIMALS: Final = frozenset({"KWD", "BHD", "OMR", "JOD", "TND", "LYD", "IQD"})

_DIGITS: Final = {
    "fa": str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"),
    "ar": str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"),
}
# Separators between digits: the Arabic thousands separator and decimal point.
_SEPARATORS: Final = re.compile(r"(?<=\d)[,.](?=\d)")
_SEPARATOR_MAP: Final = {",": "\u066c", ".": "\u066b"}


def money(value: Any, currency: Any = "") -> str:
    """Format ``value`` with thousands separators, the currency's decimals and its code."""
    if is_undefined(value):
        return str(value)  # lenient: empty; strict rendering raises here
    code = "" if is_undefined(currency) or currency is None else str(currency).strip().upper()
    try:
        amount = Decimal(str(value).replace(",", "").strip())
    except InvalidOperation as exc:
        raise FilterArgumentError(f"money expects a number, found {value!r}", token=None) from exc
    if not amount.is_finite():
        raise FilterArgumentError(f"money expects a finite number, found {value!r}", token=None)
    places = 0 if code in _ZERO_DECIMALS else 3 if code in _THREE_DECIMALS else 2
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{rounded:,.{places}f}"
    return f"{text} {code}" if code else text


@with_context
def digits(value: Any, locale: Any = None, *, context: RenderContext) -> str:
    """``value`` with the digits (and separators between digits) of ``locale``."""
    if is_undefined(value):
        return str(value)
    if locale is None or is_undefined(locale):
        locale = context.globals.get("locale")
    table = _DIGITS.get(str(locale))
    text = str(value)
    if table is None:
        return text
    text = _SEPARATORS.sub(lambda match: _SEPARATOR_MAP[match.group()], text)
    return text.translate(table)


def isolate(value: Any) -> str:
    """``value`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE."""
    text = str(value)
    return f"\u2068{text}\u2069" if text else text


def to_json(value: Any) -> str:
    """``value`` encoded as JSON (undefined → ``null``)."""
    if is_undefined(value):
        return "null"
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise FilterArgumentError(f"json cannot encode {type(value).__name__}", token=None) from exc


FILTERS: Final = {"money": money, "digits": digits, "isolate": isolate, "json": to_json}
