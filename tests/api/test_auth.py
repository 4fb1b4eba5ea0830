"""Bearer API keys and scopes: :class:`safar.api.auth.ApiKeyAuth`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from safar.api.auth import ApiKeyAuth, api_key_of
from safar.api.errors import EXCEPTION_HANDLERS
from safar.stores.memory.keys import MemoryKeyStore
from tests.api.conftest import asgi_client, bearer

PROFILE_PATHS = [
    "/v1/profiles/user_id:42",
    "/v1/profiles/user_id:42/events",
    "/v1/profiles/user_id:42/traits/history",
    "/v1/profiles/user_id:42/merges",
]


def assert_401(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="safar"'
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    for word in words:
        assert word in message


@pytest.mark.parametrize("path", PROFILE_PATHS)
def test_no_key_is_401(client: httpx.Client, path: str) -> None:
    assert_401(client.get(path), "missing API key", "Bearer")


@pytest.mark.parametrize("path", PROFILE_PATHS)
def test_unknown_key_is_401(client: httpx.Client, keys: MemoryKeyStore, path: str) -> None:
    keys.create_api_key("reader", "read")
    assert_401(client.get(path, headers=bearer("sk_not_a_key")), "unknown API key")


@pytest.mark.parametrize("header", ["Basic d2s6", "Bearer", "Bearer   ", "Token abc", "abc"])
def test_malformed_authorization_is_401(client: httpx.Client, header: str) -> None:
    response = client.get(PROFILE_PATHS[0], headers={"Authorization": header})
    assert_401(response, "Bearer <api key>")


def test_write_key_of_a_source_is_not_an_api_key(
    client: httpx.Client, keys: MemoryKeyStore
) -> None:
    source = keys.create_source("web")
    assert_401(client.get(PROFILE_PATHS[0], headers=bearer(source.write_key)), "unknown")


def test_read_key_passes_profile_auth(client: httpx.Client, read_headers: dict[str, str]) -> None:
    # Authenticated, so the request reaches the endpoint, which finds no such profile.
    assert client.get(PROFILE_PATHS[0], headers=read_headers).status_code == 404


def test_scheme_is_case_insensitive(client: httpx.Client, keys: MemoryKeyStore) -> None:
    _, secret = keys.create_api_key("reader", "read")
    response = client.get(PROFILE_PATHS[0], headers={"Authorization": f"bearer  {secret}"})
    assert response.status_code == 404


def whoami(request: Request) -> Response:
    key = api_key_of(request)
    return JSONResponse({"name": key.name, "scope": key.scope, "async": False})


async def whoami_async(request: Request) -> Response:
    key = api_key_of(request)
    return JSONResponse({"name": key.name, "scope": key.scope, "async": True})


@pytest.fixture
def admin_client(keys: MemoryKeyStore) -> Iterator[httpx.Client]:
    """An app whose two routes need the admin scope, one sync and one async endpoint."""
    admin = ApiKeyAuth(keys).require("admin")
    app = Starlette(
        routes=[
            Route("/admin/sync", admin(whoami)),
            Route("/admin/async", admin(whoami_async)),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    with asgi_client(app) as client:
        yield client


@pytest.mark.parametrize("path", ["/admin/sync", "/admin/async"])
@pytest.mark.parametrize("scope", ["read", "write"])
def test_key_without_the_scope_is_403(
    admin_client: httpx.Client, keys: MemoryKeyStore, path: str, scope: str
) -> None:
    _, secret = keys.create_api_key("ops", scope)
    response = admin_client.get(path, headers=bearer(secret))
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert response.json() == {
        "error": f"API key 'ops' has scope '{scope}'; this call needs 'admin'"
    }


@pytest.mark.parametrize(("path", "is_async"), [("/admin/sync", False), ("/admin/async", True)])
def test_key_with_the_scope_reaches_the_endpoint(
    admin_client: httpx.Client, keys: MemoryKeyStore, path: str, is_async: bool
) -> None:
    _, secret = keys.create_api_key("root", "admin")
    response = admin_client.get(path, headers=bearer(secret))
    assert response.status_code == 200
    assert response.json() == {"name": "root", "scope": "admin", "async": is_async}


@pytest.mark.parametrize("path", ["/admin/sync", "/admin/async"])
def test_guarded_endpoints_of_both_kinds_refuse_anonymous_calls(
    admin_client: httpx.Client, path: str
) -> None:
    assert_401(admin_client.get(path), "missing API key")


def test_wrapped_endpoint_keeps_its_name(keys: MemoryKeyStore) -> None:
    guarded = ApiKeyAuth(keys).require("read")(whoami)
    assert guarded.__name__ == "whoami"


def test_unknown_scope_is_refused_when_wiring(keys: MemoryKeyStore) -> None:
    with pytest.raises(ValueError, match="read, write, admin"):
        ApiKeyAuth(keys).require("superuser")


def test_api_key_of_outside_a_guarded_endpoint() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(RuntimeError, match=r"ApiKeyAuth\.require"):
        api_key_of(request)
