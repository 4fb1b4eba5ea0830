"""Sources (owners of write keys) and management API keys."""

from __future__ import annotations

from typing import Final

import msgspec

SCOPES: Final = ("read", "write", "admin")


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """Where events come from (a website, an app, a CRM). Events authenticate with its write key."""

    id: str
    name: str
    write_key: str
    created_at: int


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A management API key. Only a hash of the secret is stored; ``scope`` is read, write or admin.

    ``admin`` implies ``write``, which implies ``read``.
    """

    id: str
    name: str
    scope: str
    created_at: int

    def allows(self, needed: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(needed)
