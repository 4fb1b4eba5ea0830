"""Management API authentication: ``Authorization: Bearer <api key>`` with a scope per endpoint.

Wrap an endpoint with :meth:`ApiKeyAuth.require` and it runs only for a key whose scope allows
the call (``admin`` implies ``write`` implies ``read``); the key is then on
``request.state.api_key`` (see :func:`api_key_of`). Missing or unknown keys raise
:class:`~safar.errors.AuthError` (401), keys without the scope
:class:`~safar.errors.ForbiddenError` (403); :mod:`safar.api.errors` renders both.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from safar.errors import AuthError, ForbiddenError
from safar.model.keys import SCOPES, ApiKey
from safar.ports import KeyStore

SyncEndpoint = Callable[[Request], Response]
AsyncEndpoint = Callable[[Request], Awaitable[Response]]
Endpoint = SyncEndpoint | AsyncEndpoint


class ApiKeyAuth:
    """Resolves bearer API keys through a :class:`~safar.ports.KeyStore` and checks scopes."""

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys

    def authenticate(self, request: Request, scope: str) -> ApiKey:
        """The request's API key, if it allows ``scope``; raises AuthError or ForbiddenError."""
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.strip().partition(" ")
        secret = secret.strip()
        if not header:
            raise AuthError("missing API key: send the header Authorization: Bearer <api key>")
        if scheme.lower() != "bearer" or not secret:
            raise AuthError(
                "expected Authorization: Bearer <api key>"
                " (write keys with Basic authentication are for the tracking endpoints only)"
            )
        key = self._keys.api_key_by_secret(secret)
        if key is None:
            raise AuthError("unknown API key: check the key, or create a new one")
        if not key.allows(scope):
            raise ForbiddenError(
                f"API key {key.name!r} has scope {key.scope!r}; this call needs {scope!r}"
            )
        return key

    def require(self, scope: str) -> Callable[[Endpoint], AsyncEndpoint]:
        """Decorator: the endpoint runs only for requests whose API key allows ``scope``.

        Works on sync and async endpoints. Sync ones run in Starlette's thread pool together with
        the key lookup, as Starlette would run them unwrapped.
        """
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")

        def decorate(endpoint: Endpoint) -> AsyncEndpoint:
            if inspect.iscoroutinefunction(endpoint):
                async_endpoint = cast(AsyncEndpoint, endpoint)

                @functools.wraps(endpoint)
                async def guarded_async(request: Request) -> Response:
                    # The key store may hit a database: keep the lookup off the event loop.
                    key = await run_in_threadpool(self.authenticate, request, scope)
                    request.state.api_key = key
                    return await async_endpoint(request)

                return guarded_async

            sync_endpoint = cast(SyncEndpoint, endpoint)

            def run(request: Request) -> Response:
                request.state.api_key = self.authenticate(request, scope)
                return sync_endpoint(request)

            @functools.wraps(endpoint)
            async def guarded(request: Request) -> Response:
                return await run_in_threadpool(run, request)

            return guarded

        return decorate


def api_key_of(request: Request) -> ApiKey:
    """The API key a guarded endpoint's request was authenticated with."""
    key = getattr(request.state, "api_key", None)
    if not isinstance(key, ApiKey):
        raise RuntimeError("api_key_of() called outside an endpoint wrapped by ApiKeyAuth.require")
    return key
