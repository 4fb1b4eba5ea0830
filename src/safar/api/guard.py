"""Refuse request paths and query strings that hold the NUL character, before any route.

Nothing Safar names in a URL can hold NUL: definition ids follow ``ID_PATTERN``, identifiers
holding it are dropped, tokens are base64. Yet such a path would reach a store lookup, and
PostgreSQL refuses NUL in text outright (a 500 where the answer is "no such thing"). One check
here covers every route, present and future.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from safar.api.errors import error_response
from safar.errors import ValidationError

#: How NUL appears in a raw query string: a literal NUL cannot be sent in a request line.
_ENCODED_NUL: Final = b"%00"


class RefuseNul:
    """ASGI middleware: a 400 naming the path or the query when either holds NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if "\x00" in scope["path"]:
                where = "path"
            elif _ENCODED_NUL in scope.get("query_string", b""):
                where = "query"
            if where is not None:
                refused = ValidationError(
                    "holds the NUL character (%00), which no id, reference or token can contain",
                    where,
                )
                await error_response(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)
