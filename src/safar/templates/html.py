"""HTML helpers for e-mail: the plain-text part derived from HTML, and the document wrapper that
carries the language and direction (right to left for Persian and Arabic)."""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser
from typing import Final

from safar.templates.locales import Direction

_BLOCKS: Final = frozenset(
    {"p", "div", "br", "tr", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
    | {"blockquote", "section", "article", "header", "footer", "title"}
)
_SKIPPED: Final = frozenset({"script", "style", "head"})
_HTML_TAG: Final = re.compile(r"<html\b[^>]*>", re.IGNORECASE)
_BODY_TAG: Final = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._links: list[str | None] = []
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skip += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "a":
            self._links.append(dict(attrs).get("href"))
            self._link_text.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href, text = self._links.pop(), self._link_text.pop()
            # The text part must keep links usable: the cart URL is the point of the message.
            if (
                href
                and href.startswith(("http://", "https://", "mailto:"))
                and href != text.strip()
            ):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        # As a browser shows it: line breaks and runs of spaces in the source are one space.
        data = re.sub(r"\s+", " ", data)
        self.parts.append(data)
        if self._link_text:
            self._link_text[-1] += data


def html_to_text(html: str) -> str:
    """A readable plain-text version of ``html``: tags dropped, blocks as lines, links kept."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def mark_direction(html: str, locale: str, direction: Direction) -> str:
    """``html`` as a document that states its language and direction.

    A fragment is wrapped in a full document (``<html dir="rtl" lang="fa">`` and a body ``div``
    with ``dir``, since some web mail clients drop the ``html`` element's attributes). An existing
    ``<html>`` (and ``<body>``) tag gets ``dir`` and ``lang`` unless the author set them.
    """
    lang = escape(locale)
    match = _HTML_TAG.search(html)
    if match is None:
        align = "right" if direction == "rtl" else "left"
        return (
            f'<!DOCTYPE html>\n<html dir="{direction}" lang="{lang}">\n'
            '<head><meta charset="utf-8"></head>\n'
            f'<body dir="{direction}">\n'
            f'<div dir="{direction}" style="direction:{direction};text-align:{align}">\n'
            f"{html}\n</div>\n</body>\n</html>\n"
        )
    html = html[: match.start()] + _with_attrs(match.group(), direction, lang) + html[match.end() :]
    body = _BODY_TAG.search(html)
    if body is not None:
        tag = _with_attrs(body.group(), direction, None)
        html = html[: body.start()] + tag + html[body.end() :]
    return html


def _with_attrs(tag: str, direction: Direction, lang: str | None) -> str:
    extra = ""
    if not re.search(r"\sdir\s*=", tag, re.IGNORECASE):
        extra += f' dir="{direction}"'
    if lang is not None and not re.search(r"\slang\s*=", tag, re.IGNORECASE):
        extra += f' lang="{lang}"'
    return tag[:-1] + extra + ">" if extra else tag
