"""A request path or query holding NUL is refused before any route (``safar.api.guard``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from safar.testing import FakeClock
from tests.api.conftest import asgi_client


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["id"], "q": request.query_params.get("q")})


def guarded() -> Starlette:
    from safar.api.guard import RefuseNul

    return Starlette(routes=[Route("/things/{id}", echo)], middleware=[Middleware(RefuseNul)])


@pytest.mark.parametrize(
    ("url", "location"), [("/things/a%00b", "path"), ("/things/a?q=x%00", "query")]
)
def test_nul_is_refused_naming_where(url: str, location: str) -> None:
    with asgi_client(guarded()) as client:
        response = client.get(url)
    assert response.status_code == 400
    assert response.json()["location"] == location
    assert "NUL" in response.json()["error"]


def test_other_text_goes_through() -> None:
    with asgi_client(guarded()) as client:
        response = client.get("/things/%E2%80%AEevil?q=%2500%20%D8%B3")
    assert response.status_code == 200
    assert response.json() == {"id": "\u202eevil", "q": "%00 \u0633"}


def test_the_served_app_refuses_nul(tmp_path: Path) -> None:
    from safar.app import create_app
    from safar.config import load_settings
    from safar.stores.bundle import open_stores

    settings = load_settings(data_dir=tmp_path, environ={})
    with open_stores(settings, FakeClock()) as stores:
        app = create_app(stores=stores, settings=settings, clock=FakeClock())
        with asgi_client(app) as client:
            refused = client.get("/v1/journeys/a%00b")
            unknown = client.get("/v1/journeys/ab")
    assert refused.status_code == 400 and refused.json()["location"] == "path"
    assert unknown.status_code == 401  # past the guard: no key given
