"""Server-level routes (``/``, ``/healthz``, ``/openapi.json``, ``/docs``) and error rendering."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from safar.api.errors import EXCEPTION_HANDLERS
from safar.errors import (
    AuthError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SafarError,
    StoreError,
    ValidationError,
)
from safar.ingest.http import BATCH_PATHS, SINGLE_PATHS
from safar.stores.memory.events import MemoryEventLog
from safar.testing import FakeClock
from tests.api.conftest import FakeProfiles, asgi_client, track

TRACKING_PATHS = {
    f"/v1/{name}"
    for name in ("batch", "import", "track", "identify", "page", "screen", "group", "alias")
}


def fill(clock: FakeClock, events: MemoryEventLog, profiles: FakeProfiles) -> None:
    events.append([track(clock, n, user_id="42") for n in range(5)])
    profiles.processed = 3


def test_healthz(
    client: httpx.Client, clock: FakeClock, events: MemoryEventLog, profiles: FakeProfiles
) -> None:
    fill(clock, events, profiles)
    clock.advance(seconds=90)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "events": 5,
        "processed_seq": 3,
        "lag": 2,
        "time": "2026-01-01T00:01:30.000Z",
    }


def test_healthz_on_an_empty_installation(client: httpx.Client) -> None:
    body = client.get("/healthz").json()
    assert (body["events"], body["processed_seq"], body["lag"]) == (0, 0, 0)


def test_home_page(
    client: httpx.Client, clock: FakeClock, events: MemoryEventLog, profiles: FakeProfiles
) -> None:
    fill(clock, events, profiles)
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "customer journey orchestration" in page
    for link in ("/docs", "/openapi.json", "/healthz"):
        assert f'href="{link}"' in page
    assert '<dd id="events">5</dd>' in page
    assert '<dd id="processed">3</dd>' in page
    assert '<dd id="lag">2</dd>' in page


def served_operations(app: Starlette) -> set[tuple[str, str]]:
    """(path, method) of every route the app serves; HEAD is Starlette's automatic GET twin."""
    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def test_openapi_lists_every_served_route(client: httpx.Client, app: Starlette) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.1.")
    served = served_operations(app)
    assert len(served) >= 8
    assert served <= documented_operations(document)
    # And nothing is documented that is not served, except tracking, which ingestion serves.
    extra = {path for path, _ in documented_operations(document) - served}
    assert extra == TRACKING_PATHS


def test_openapi_describes_tracking_with_write_key_auth(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["writeKey"]["scheme"] == "basic"
    for path in TRACKING_PATHS:
        operation = document["paths"][path]["post"]
        assert operation["security"] == [{"writeKey": []}]
        assert "requestBody" in operation


def test_documented_tracking_paths_are_served_by_ingestion() -> None:
    served = {*BATCH_PATHS, *SINGLE_PATHS}
    assert served >= TRACKING_PATHS


def test_openapi_is_self_consistent(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"dangling $ref {ref}"
            target = target[part]

    operation_ids = []
    schemes = document["components"]["securitySchemes"]
    for path, item in document["paths"].items():
        for operation in item.values():
            operation_ids.append(operation["operationId"])
            assert operation["responses"], path
            assert all(name in schemes for req in operation.get("security", []) for name in req)
            declared = set(re.findall(r"{(\w+)}", path))
            params = operation.get("parameters", [])
            in_path = {
                (
                    document["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                    if "$ref" in p
                    else p
                )["name"]
                for p in params
            }
            assert declared <= in_path, path
    assert len(operation_ids) == len(set(operation_ids))


def test_profile_routes_need_an_api_key_in_the_document(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        if path.startswith("/v1/profiles"):
            for operation in item.values():
                assert operation["security"] == [{"apiKey": []}]
                assert {"401", "403", "404"} <= set(operation["responses"])


def test_docs_page_lists_every_operation_without_remote_assets(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    response = client.get("/docs")
    assert response.status_code == 200
    page = response.text
    for path, item in document["paths"].items():
        assert f"<code>{path}</code>" in page
        for operation in item.values():
            assert f'id="{operation["operationId"]}"' in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)


@pytest.fixture
def raising() -> Iterator[Any]:
    def call(exc: Exception, *, challenge: str | None = None) -> httpx.Response:
        def endpoint(request: Request) -> Response:
            if challenge is not None:
                request.state.auth_challenge = challenge
            raise exc

        app = Starlette(routes=[Route("/boom", endpoint)], exception_handlers=EXCEPTION_HANDLERS)
        with asgi_client(app) as client:
            return client.get("/boom")

    yield call


@pytest.mark.parametrize(
    ("exc", "status", "body"),
    [
        (
            ValidationError("must be a string", "batch[3].userId"),
            400,
            {"error": "batch[3].userId: must be a string", "location": "batch[3].userId"},
        ),
        (PayloadTooLarge("batch over 500 KB"), 400, {"error": "batch over 500 KB"}),
        (NotFound("no journey 'welcome'"), 404, {"error": "no journey 'welcome'"}),
        (StoreError("database is locked"), 500, {"error": "database is locked"}),
        (SafarError("something odd"), 500, {"error": "something odd"}),
    ],
)
def test_safar_errors_become_json(raising: Any, exc: Exception, status: int, body: Any) -> None:
    response = raising(exc)
    assert response.status_code == status
    assert response.json() == body


def test_rate_limited_says_when_to_retry(raising: Any) -> None:
    response = raising(RateLimited("too many events for this write key", retry_after=1.2))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json() == {"error": "too many events for this write key", "retry_after": 1.2}


def test_auth_challenge_can_be_chosen_per_request(raising: Any) -> None:
    default = raising(AuthError("no key"))
    assert default.headers["www-authenticate"] == 'Bearer realm="safar"'
    basic = raising(AuthError("unknown write key"), challenge='Basic realm="safar"')
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"] == 'Basic realm="safar"'


def test_unknown_route_and_wrong_method_are_json(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}
    wrong = client.post("/healthz")
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"]
    assert wrong.json() == {"error": "Method Not Allowed"}
