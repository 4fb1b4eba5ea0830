"""Source text to tokens.

A token is ``(kind, value, start)``. Kinds are ``"int"``, ``"uint"``, ``"double"``, ``"string"``,
``"bytes"``, ``"ident"``, ``"eof"``, and for keywords and punctuation the text itself (``"true"``,
``"in"``, ``"&&"``, ``"("`` …). Numbers keep their unsigned value: range checks happen in the
parser, which knows whether a ``-`` precedes the literal.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from safar.cel.errors import CelSyntaxError


class Token(NamedTuple):
    """One token: its kind, its value (number, text, name) and where it starts."""

    kind: str
    value: Any
    start: int


KEYWORDS: Final = frozenset({"true", "false", "null", "in"})
RESERVED: Final = frozenset(
    {
        "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
        "loop", "package", "namespace", "return", "var", "void", "while",
    }
)  # fmt: skip
_PUNCTUATION: Final = ("==", "!=", "<=", ">=", "&&", "||", *"<>+-*/%!?:.,()[]{}")
_WHITESPACE: Final = frozenset("\t\n\f\r ")
_DIGITS: Final = frozenset("0123456789")
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_NUMBER = re.compile(
    r"0x(?P<hex>[0-9a-fA-F]+)(?P<hexu>[uU])?"
    r"|(?P<double>\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)"
    r"|(?P<int>\d+)(?P<intu>[uU])?",
    re.ASCII,
)
_STRING_START = re.compile(r"([rRbB]{0,2})(\"\"\"|'''|\"|')")
_SIMPLE_ESCAPES: Final = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "?": "?", '"': '"', "'": "'", "`": "`",
}  # fmt: skip
_HEX_WIDTH: Final = {"x": 2, "X": 2, "u": 4, "U": 8}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def tokenize(source: str) -> list[Token]:
    """All tokens of ``source``, ending with an ``"eof"`` token."""
    tokens: list[Token] = []
    append = tokens.append
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c in _DIGITS or (c == "." and source[i + 1 : i + 2] in _DIGITS):
            token, i = _number(source, i)
            append(token)
            continue
        if c in "\"'" or c in "rRbB":
            string = _STRING_START.match(source, i)
            prefix = string[1].lower() if string else ""
            if string and len(set(prefix)) == len(prefix) and prefix in ("", "r", "b", "rb", "br"):
                token, i = _string(source, i, string.end(), "r" in prefix, "b" in prefix)
                append(token)
                continue
        ident = _IDENT.match(source, i)
        if ident:
            word = ident[0]
            append(Token(word if word in KEYWORDS else "ident", word, i))
            i = ident.end()
            continue
        for punct in _PUNCTUATION:
            if source.startswith(punct, i):
                append(Token(punct, punct, i))
                i += len(punct)
                break
        else:
            raise CelSyntaxError.at(source, i, f"unexpected character {c!r}")
    append(Token("eof", None, n))
    return tokens


def _number(source: str, i: int) -> tuple[Token, int]:
    match = _NUMBER.match(source, i)
    assert match is not None  # the caller saw a digit, or a dot and a digit
    if len(match[0]) > 40:
        # Longer than any 64-bit number; also keeps int() away from its digit limit.
        raise CelSyntaxError.at(source, i, f"number literal {match[0][:20]}… is out of range")
    if match["hex"] is not None:
        kind = "uint" if match["hexu"] else "int"
        return Token(kind, int(match["hex"], 16), i), match.end()
    if match["double"] is not None:
        value = float(match["double"])
        if value == float("inf"):
            raise CelSyntaxError.at(source, i, f"double literal {match[0]} is out of range")
        return Token("double", value, i), match.end()
    kind = "uint" if match["intu"] else "int"
    return Token(kind, int(match["int"]), i), match.end()


def _string(source: str, start: int, body: int, raw: bool, is_bytes: bool) -> tuple[Token, int]:
    """The string or bytes literal starting at ``start`` whose text begins at ``body``."""
    quote = source[start:body].lstrip("rRbB")
    triple = len(quote) == 3
    end = source.find(quote, body) if raw or triple else -1
    if raw:
        if end < 0 or (not triple and _has_newline(source, body, end)):
            raise _unterminated(source, start, triple)
        text = source[body:end]
        return _literal(text, is_bytes, start), end + len(quote)
    pieces: list[str] = []
    chunks: list[bytes] = []  # bytes literals only: escapes that are octets, not code points
    i = body
    n = len(source)
    while True:
        if i >= n:
            raise _unterminated(source, start, triple)
        c = source[i]
        if source.startswith(quote, i):
            break
        if c in "\r\n" and not triple:
            raise _unterminated(source, start, triple)
        if c != "\\":
            pieces.append(c)
            i += 1
            continue
        value, octet, i = _escape(source, i, is_bytes)
        if octet is not None:
            chunks.append("".join(pieces).encode() + bytes([octet]))
            pieces = []
        else:
            pieces.append(value)
    text = "".join(pieces)
    if is_bytes:
        return Token("bytes", b"".join(chunks) + text.encode(), start), i + len(quote)
    return Token("string", text, start), i + len(quote)


def _escape(source: str, i: int, is_bytes: bool) -> tuple[str, int | None, int]:
    """The escape at ``source[i] == "\\"``: (text, octet for bytes, index after it)."""
    c = source[i + 1 : i + 2]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], None, i + 2
    if c in _HEX_WIDTH:
        width = _HEX_WIDTH[c]
        digits = source[i + 2 : i + 2 + width]
        if len(digits) != width or not set(digits) <= _HEX_DIGITS:
            raise CelSyntaxError.at(source, i, f"\\{c} needs {width} hexadecimal digits")
        code = int(digits, 16)
        if c in "uU":
            if is_bytes:
                raise CelSyntaxError.at(source, i, f"\\{c} escapes are not allowed in bytes")
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise CelSyntaxError.at(source, i, f"\\{c}{digits} is not a Unicode code point")
            return chr(code), None, i + 2 + width
        return (chr(code), None, i + 4) if not is_bytes else ("", code, i + 4)
    digits = source[i + 1 : i + 4]
    if len(digits) == 3 and digits[0] in "0123" and all(d in "01234567" for d in digits):
        code = int(digits, 8)
        return (chr(code), None, i + 4) if not is_bytes else ("", code, i + 4)
    shown = c or "end of expression"
    raise CelSyntaxError.at(source, i, f"invalid escape sequence \\{shown}")


def _literal(text: str, is_bytes: bool, start: int) -> Token:
    return Token("bytes", text.encode(), start) if is_bytes else Token("string", text, start)


def _has_newline(source: str, start: int, end: int) -> bool:
    return "\n" in source[start:end] or "\r" in source[start:end]


def _unterminated(source: str, start: int, triple: bool) -> CelSyntaxError:
    hint = "" if triple else " (a newline ends it; use \\n or a triple-quoted string)"
    return CelSyntaxError.at(source, start, f"unterminated string literal{hint}")
