"""String and collection functions: ``size``, ``contains``, ``startsWith``, ``endsWith``,
``matches`` and the cel-go strings-extension subset ``lowerAscii``, ``upperAscii``, ``trim``,
``split`` and ``join``."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

from safar.cel.errors import CelEvalError
from safar.cel.limits import MAX_PATTERN, MAX_STRING, check_list_size
from safar.cel.values import kind, no_overload, type_name

_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def size(value: Any) -> int:
    """Code points of a string, bytes of bytes, elements of a list, entries of a map."""
    t = type(value)
    if t is str or t is list or t is dict or t is bytes or t is tuple:
        return len(value)
    k = kind(value)
    if k in (str, bytes, list, dict):
        return len(value)
    raise no_overload("size", value)


def _strings(function: str, a: Any, b: Any) -> None:
    if kind(a) is not str or kind(b) is not str:
        raise no_overload(function, a, b)


def contains(text: Any, part: Any) -> bool:
    """``text.contains(part)``."""
    if type(text) is not str or type(part) is not str:
        _strings("contains", text, part)
    return part in text


def starts_with(text: Any, prefix: Any) -> bool:
    """``text.startsWith(prefix)``."""
    if type(text) is not str or type(prefix) is not str:
        _strings("startsWith", text, prefix)
    return text.startswith(prefix)  # type: ignore[no-any-return]


def ends_with(text: Any, suffix: Any) -> bool:
    """``text.endsWith(suffix)``."""
    if type(text) is not str or type(suffix) is not str:
        _strings("endsWith", text, suffix)
    return text.endswith(suffix)  # type: ignore[no-any-return]


@lru_cache(maxsize=256)
def pattern(source: str) -> re.Pattern[str]:
    """The compiled regular expression, or an evaluation error saying why not."""
    if len(source) > MAX_PATTERN:
        raise CelEvalError(
            f"regular expression of {len(source):,} characters exceeds {MAX_PATTERN:,}"
        )
    try:
        return re.compile(source)
    except (re.error, RecursionError, OverflowError) as exc:
        raise CelEvalError(f"invalid regular expression {source!r}: {exc}") from None


def matches(text: Any, regex: Any) -> bool:
    """``text.matches(regex)``: true if the regex matches anywhere in ``text``."""
    if type(text) is not str or type(regex) is not str:
        _strings("matches", text, regex)
    return pattern(regex).search(text) is not None


def matcher(compiled: re.Pattern[str]) -> Any:
    """``matches`` with its pattern compiled once, for a constant pattern argument."""
    search = compiled.search

    def matches_constant(text: Any) -> bool:
        if type(text) is not str and kind(text) is not str:
            raise no_overload("matches", text, compiled.pattern)
        return search(text) is not None

    return matches_constant


def lower_ascii(text: Any) -> str:
    """``text.lowerAscii()``: A–Z to a–z, every other character as it is."""
    if kind(text) is not str:
        raise no_overload("lowerAscii", text)
    return text.translate(_LOWER)  # type: ignore[no-any-return]


def upper_ascii(text: Any) -> str:
    """``text.upperAscii()``: a–z to A–Z, every other character as it is."""
    if kind(text) is not str:
        raise no_overload("upperAscii", text)
    return text.translate(_UPPER)  # type: ignore[no-any-return]


def trim(text: Any) -> str:
    """``text.trim()``: without leading and trailing whitespace."""
    if kind(text) is not str:
        raise no_overload("trim", text)
    return text.strip()  # type: ignore[no-any-return]


def split(text: Any, separator: Any, limit: Any = -1) -> list[str]:
    """``text.split(sep)`` / ``text.split(sep, n)`` as Go's ``strings.SplitN``.

    ``n < 0`` splits everywhere, ``n == 0`` gives ``[]``, ``n > 0`` at most ``n`` parts; an empty
    separator splits into characters.
    """
    if kind(text) is not str or kind(separator) is not str or kind(limit) is not int:
        raise no_overload("split", text, separator, limit)
    if limit == 0:
        return []
    if separator == "":
        chars = list(text)
        if 0 < limit < len(chars):
            chars[limit - 1 :] = ["".join(chars[limit - 1 :])]
        check_list_size(len(chars))
        return chars
    parts = text.split(separator, limit - 1 if limit > 0 else -1)
    check_list_size(len(parts))
    return parts  # type: ignore[no-any-return]


def join(items: Any, separator: Any = "") -> str:
    """``list.join()`` / ``list.join(sep)``: the strings of a list, joined."""
    if kind(items) is not list or kind(separator) is not str:
        raise no_overload("join", items, separator)
    # Sum the length first: a list of many references to one long string is cheap to make
    # and must not become a huge string.
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        if kind(item) is not str:
            raise CelEvalError(f"join needs a list of strings, found a {type_name(item)}")
        total += len(item)
    if total > MAX_STRING:
        raise CelEvalError(f"string of {total:,} characters exceeds {MAX_STRING:,}")
    return separator.join(items)  # type: ignore[no-any-return]
