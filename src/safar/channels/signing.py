"""Webhook signatures: ``X-Safar-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"<timestamp>.<body>"`` with the shared secret, where ``<timestamp>`` is the value of
``X-Safar-Timestamp`` (Unix seconds) and ``<body>`` the exact request body bytes. Signing the
timestamp lets receivers refuse replays of an old request."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Safar-Signature"
TIMESTAMP_HEADER = "X-Safar-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Safar-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    *,
    signature: str,
    timestamp: str,
    body: bytes,
    now_s: int,
    tolerance_s: int = 300,
) -> bool:
    """For receivers: whether ``signature`` is valid for ``body`` and ``timestamp`` is within
    ``tolerance_s`` of ``now_s``. Compares in constant time."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now_s - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)
