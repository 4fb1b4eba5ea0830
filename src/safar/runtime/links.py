"""Signed links in messages: unsubscribe, open pixel, click redirect.

A token is the URL-safe base64 of a small JSON object, a dot, and a truncated HMAC-SHA256 of
it with the installation's secret. Nobody can forge one, so the endpoints that act on them
(unsubscribe a customer, record an open or a click) need no other authentication.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from safar.errors import ConfigError, ValidationError

_SIGNATURE_BYTES = 16
_HREF = re.compile(r"""href=(["'])(https?://[^"']+)\1""", re.IGNORECASE)


def load_secret(path: Path) -> bytes:
    """The installation's link secret, created (readable only by its owner) on first use.

    Created whole or not at all: written to a temporary file, flushed, then linked into place,
    so a crash never leaves an empty or partial secret, and of two processes starting at once
    the first to link wins and both read its secret. An existing file that is not a secret is
    refused rather than used: links signed with a weak key could be forged.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".link-secret-")
        try:
            with os.fdopen(fd, "w") as file:  # mkstemp creates it readable by its owner only
                file.write(secrets.token_bytes(32).hex())
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise ConfigError(
            f"{path} does not hold a valid link secret; remove it to make a new one"
            " (links in messages already sent will stop working)"
        )
    return secret


class Links:
    """Makes and checks signed links under ``base_url`` (the public URL of the API)."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    def token(self, claims: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(msgspec.json.encode(claims)).rstrip(b"=")
        return f"{body.decode()}.{self._sign(body)}"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this installation signed. Raises ValidationError otherwise."""
        body, _, signature = token.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body.encode())):
            raise ValidationError("the link is not valid (bad or missing signature)", "token")
        padded = body + "=" * (-len(body) % 4)
        claims = msgspec.json.decode(base64.urlsafe_b64decode(padded))
        if not isinstance(claims, dict):
            raise ValidationError("the link is not valid", "token")
        return claims

    def unsubscribe_url(self, claims: dict[str, Any]) -> str:
        return f"{self.base_url}/l/u/{self.token(claims)}"

    def open_url(self, claims: dict[str, Any]) -> str:
        return f"{self.base_url}/l/o/{self.token(claims)}"

    def status_url(self, claims: dict[str, Any]) -> str:
        return f"{self.base_url}/l/s/{self.token(claims)}"

    def click_url(self, claims: dict[str, Any], target: str) -> str:
        return f"{self.base_url}/l/c/{self.token({**claims, 'url': target})}"

    def track_html(self, html: str, claims: dict[str, Any]) -> str:
        """Route the links of an HTML message through click tracking and add an open pixel."""

        def wrap(match: re.Match[str]) -> str:
            quote_char, target = match.group(1), match.group(2)
            if target.startswith(self.base_url):
                return match.group(0)
            url = self.click_url(claims, target)
            return f"href={quote_char}{url}{quote_char}"

        tracked = _HREF.sub(wrap, html)
        pixel = (
            f'<img src="{self.open_url(claims)}" width="1" height="1" alt="" style="display:none">'
        )
        lower = tracked.lower()
        end = lower.rfind("</body>")
        if end == -1:
            return tracked + pixel
        return tracked[:end] + pixel + tracked[end:]

    def _sign(self, body: bytes) -> str:
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def safe_target(url: str) -> str:
    """Only http(s) targets may be redirected to (no ``javascript:``, no data URLs)."""
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise ValidationError("the link target must be an http(s) URL", "url")
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")
