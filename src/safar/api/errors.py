"""Turn errors into JSON responses, for the management API and the app that serves it.

Every error body is ``{"error": "<what was wrong and what to do>"}``; validation errors add
``location`` and rate limits add ``retry_after``. Register :data:`EXCEPTION_HANDLERS` (or the two
handlers one by one) with Starlette's ``exception_handlers``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from safar.errors import AuthError, RateLimited, SafarError, ValidationError

#: The challenge sent with a 401 unless whoever authenticated the request chose another.
BEARER_CHALLENGE: Final = 'Bearer realm="safar"'


def error_response(exc: SafarError, *, challenge: str | None = None) -> JSONResponse:
    """The JSON response for ``exc``, with the status it carries.

    A 401 gets a ``WWW-Authenticate`` header: ``challenge`` when given (ingestion passes a Basic
    one), else :data:`BEARER_CHALLENGE`.
    """
    body: dict[str, Any] = {"error": exc.message}
    headers: dict[str, str] = {}
    if isinstance(exc, ValidationError) and exc.location:
        body["location"] = exc.location
    if isinstance(exc, RateLimited):
        body["retry_after"] = exc.retry_after
        # Retry-After takes whole seconds; rounding down would invite a retry that is refused again.
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.status == 401:
        headers["WWW-Authenticate"] = challenge or BEARER_CHALLENGE
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def safar_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`SafarError` and its subclasses.

    The 401 challenge can be chosen per request by setting ``request.state.auth_challenge``
    before raising (ingestion sets a Basic one for write keys).
    """
    if not isinstance(exc, SafarError):
        raise exc
    challenge = (
        getattr(request.state, "auth_challenge", None) if isinstance(exc, AuthError) else None
    )
    return error_response(exc, challenge=challenge)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette exception handler that renders routing errors (404, 405 …) as JSON too."""
    if not isinstance(exc, HTTPException):
        raise exc
    if exc.status_code in (204, 304):
        # These statuses must not carry a body.
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


#: Pass as ``Starlette(exception_handlers=EXCEPTION_HANDLERS)``.
EXCEPTION_HANDLERS: Final[Mapping[type[Exception], ExceptionHandler]] = {
    SafarError: safar_error_handler,
    HTTPException: http_error_handler,
}
