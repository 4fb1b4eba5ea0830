"""Random ids and secrets for key stores, and the hash API key secrets are stored as.

Every adapter uses these so ids and secrets look the same whatever the backend: ``src_…`` and
``key_…`` ids, ``wk_…`` write keys, ``sk_…`` API key secrets. The prefixes make a leaked secret
recognizable (to people and to secret scanners) and tell the two kinds of key apart.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

from safar.errors import ValidationError
from safar.model.keys import SCOPES

SOURCE_ID_PREFIX: Final = "src_"
API_KEY_ID_PREFIX: Final = "key_"
WRITE_KEY_PREFIX: Final = "wk_"
API_SECRET_PREFIX: Final = "sk_"

# Ids only need to be unique, not secret: 64 bits are plenty. Secrets get 192/256 bits.
_ID_BYTES: Final = 8
_WRITE_KEY_BYTES: Final = 24
_API_SECRET_BYTES: Final = 32


def new_source_id() -> str:
    """A new random source id, e.g. ``src_9f86d081884c7d65``."""
    return SOURCE_ID_PREFIX + secrets.token_hex(_ID_BYTES)


def new_api_key_id() -> str:
    """A new random API key id, e.g. ``key_2c26b46b68ffc68f``."""
    return API_KEY_ID_PREFIX + secrets.token_hex(_ID_BYTES)


def new_write_key() -> str:
    """A new random write key, ``wk_`` followed by 32 URL-safe characters."""
    return WRITE_KEY_PREFIX + secrets.token_urlsafe(_WRITE_KEY_BYTES)


def new_api_secret() -> str:
    """A new random API key secret, ``sk_`` followed by 43 URL-safe characters."""
    return API_SECRET_PREFIX + secrets.token_urlsafe(_API_SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of ``secret``: what key stores keep instead of an API key secret.

    A plain fast hash (no salt, no key stretching) is enough because the secrets are 256-bit random
    strings, not passwords: there is nothing to guess, and lookups stay a single indexed probe.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scope(scope: str) -> None:
    """Raise :class:`ValidationError` unless ``scope`` is one of :data:`safar.model.keys.SCOPES`."""
    if scope not in SCOPES:
        allowed = ", ".join(SCOPES)
        raise ValidationError(f"scope must be one of {allowed}; got {scope!r}", location="scope")
