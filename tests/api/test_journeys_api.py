"""``/v1/journeys``: definitions, lifecycle and entries; ``/v1/profiles/{ref}/journeys``."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from safar.config import IdentitySettings
from safar.core.identity import IdentityRules
from safar.model.journeys import Journey
from safar.model.profiles import Profile
from safar.model.runs import Instance, Visit
from safar.ports import JourneyUpdate
from safar.runtime.internal import SOURCE_ID
from safar.runtime.journeys import ENTRY_REQUEST_EVENT, JourneyRuntime
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.testing import FakeClock
from tests.api.conftest import EXAMPLES, FakeProfiles, add_sara

CART = (EXAMPLES / "journeys" / "abandoned_cart.yaml").read_text()
WELCOME = """\
id: welcome-call
name: Welcome call
stage: retention
entry:
  api: true
steps:
  - id: hello
    send: {channel: email, template: welcome_1}
"""
YAML = {"Content-Type": "application/yaml"}
T0 = 1_767_225_600_000


def sara(profiles: FakeProfiles) -> Profile:
    return add_sara(profiles, T0)


def create(
    client: httpx.Client, headers: dict[str, str], text: str = CART, **options: Any
) -> httpx.Response:
    if options:
        return client.post("/v1/journeys", json={"yaml": text, **options}, headers=headers)
    return client.post("/v1/journeys", content=text, headers={**headers, **YAML})


def publish(client: httpx.Client, headers: dict[str, str], text: str = CART) -> dict[str, Any]:
    response = create(client, headers, text, publish=True)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- creating and reading ------------------------------------------------------------------------


def test_a_yaml_body_is_saved_as_a_draft(
    client: httpx.Client, write_headers: dict[str, str], stores: MemoryJourneyStores
) -> None:
    response = create(client, write_headers)
    assert response.status_code == 201
    assert response.headers["location"] == "/v1/journeys/abandoned-cart"
    body = response.json()
    assert body["journey_id"] == "abandoned-cart"
    assert (body["version"], body["status"], body["changed"]) == (1, "draft", True)
    assert body["created_at"] == "2026-01-01T00:00:00.000Z"
    assert body["published_at"] is None
    assert body["definition"]["name"] == "Abandoned cart recovery"
    assert [step["kind"] for step in body["definition"]["steps"]][:3] == ["wait", "split", "send"]
    stored = stores.get("abandoned-cart")
    assert stored is not None and stored.status == "draft"


@pytest.mark.parametrize("media", ["text/yaml", "text/plain; charset=utf-8"])
def test_yaml_may_come_as_other_text_types(
    client: httpx.Client, write_headers: dict[str, str], media: str
) -> None:
    headers = {**write_headers, "Content-Type": media}
    response = client.post("/v1/journeys?publish=true", content=CART, headers=headers)
    assert response.status_code == 201
    assert response.json()["status"] == "published"


def test_saving_again_replaces_the_draft(
    client: httpx.Client, write_headers: dict[str, str], clock: FakeClock
) -> None:
    create(client, write_headers)
    clock.advance(seconds=5)
    renamed = CART.replace("Abandoned cart recovery", "Cart rescue")
    body = create(client, write_headers, renamed).json()
    assert (body["version"], body["status"]) == (1, "draft")
    assert body["definition"]["name"] == "Cart rescue"
    assert body["created_at"] == "2026-01-01T00:00:05.000Z"


def test_json_body_publishes_and_an_identical_publish_changes_nothing(
    client: httpx.Client, write_headers: dict[str, str], clock: FakeClock
) -> None:
    first = publish(client, write_headers)
    assert (first["version"], first["status"], first["changed"]) == (1, "published", True)
    assert first["published_at"] == "2026-01-01T00:00:00.000Z"
    clock.advance(seconds=1)
    again = create(client, write_headers, CART, publish=True)
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["version"] == 1


def test_publishing_a_change_makes_a_new_version_with_its_migration(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    publish(client, write_headers)
    changed = CART.replace("priority: 60", "priority: 70")
    migration = {"mode": "move", "steps": {"wait_day": "vip_check"}}
    response = create(client, write_headers, changed, publish=True, migration=migration)
    assert response.status_code == 201
    body = response.json()
    assert (body["version"], body["status"]) == (2, "published")
    assert body["migration"] == migration


def test_get_journey_lists_every_version(
    client: httpx.Client, write_headers: dict[str, str], read_headers: dict[str, str]
) -> None:
    publish(client, write_headers)
    create(client, write_headers, CART.replace("priority: 60", "priority: 61"))
    response = client.get("/v1/journeys/abandoned-cart", headers=read_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "abandoned-cart"
    assert [(v["version"], v["status"]) for v in body["versions"]] == [
        (1, "published"),
        (2, "draft"),
    ]
    assert body["versions"][1]["definition"]["policy"]["priority"] == 61


def test_get_unknown_journey_is_404(client: httpx.Client, read_headers: dict[str, str]) -> None:
    response = client.get("/v1/journeys/nope", headers=read_headers)
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_list_shows_each_journeys_newest_version(
    client: httpx.Client, write_headers: dict[str, str], read_headers: dict[str, str]
) -> None:
    assert client.get("/v1/journeys", headers=read_headers).json() == {"data": []}
    publish(client, write_headers)
    create(client, write_headers, CART.replace("priority: 60", "priority: 61"))
    create(client, write_headers, WELCOME)
    data = client.get("/v1/journeys", headers=read_headers).json()["data"]
    assert data == [
        {
            "id": "abandoned-cart",
            "name": "Abandoned cart recovery",
            "version": 2,
            "status": "draft",
            "stage": "purchase",
            "published_at": None,
            "live_version": 1,
            "entry": data[0]["entry"],
        },
        {
            "id": "welcome-call",
            "name": "Welcome call",
            "version": 1,
            "status": "draft",
            "stage": "retention",
            "published_at": None,
            "live_version": None,
            "entry": data[1]["entry"],
        },
    ]
    assert data[0]["entry"]["event"] == "Product Added"
    assert data[1]["entry"]["api"] is True


# -- problems ------------------------------------------------------------------------------------


def test_problems_name_line_and_field(client: httpx.Client, write_headers: dict[str, str]) -> None:
    broken = CART.replace("template: cart_coupon", "template: cart_cuopon").replace(
        "price >= 10", "price >="
    )
    response = create(client, write_headers, broken)
    assert response.status_code == 400
    body = response.json()
    assert body["problems"] == [
        {"line": 6, "field": "entry.where", "message": body["problems"][0]["message"]},
        {
            "line": 38,
            "field": "steps[6].send.template",
            "message": "no template 'cart_cuopon' (did you mean 'cart_coupon'?)",
        },
    ]
    assert body["problems"][0]["message"].startswith("bad condition")
    assert "2 problem(s)" in body["error"]
    assert "line 38: steps[6].send.template" in body["error"]


def test_a_missing_field_and_a_yaml_error_are_problems(
    client: httpx.Client, write_headers: dict[str, str], stores: MemoryJourneyStores
) -> None:
    missing = WELCOME.replace(", template: welcome_1", "")
    body = create(client, write_headers, missing).json()
    assert body["problems"] == [
        {"line": 8, "field": "steps[0].send.template", "message": "required but missing"}
    ]
    response = create(client, write_headers, "id: x\nname: y\nsteps: [\n")
    assert response.status_code == 400
    (problem,) = response.json()["problems"]
    assert problem["line"] == 4 and "YAML syntax error" in problem["message"]
    assert stores.all() == []


def test_templates_of_the_wrong_channel_are_problems(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    wrong = WELCOME.replace("channel: email", "channel: sms")
    response = create(client, write_headers, wrong, publish=True)
    assert response.status_code == 400
    (problem,) = response.json()["problems"]
    assert problem["line"] == 8
    assert problem["field"].startswith("steps[0].send")


def test_without_a_templates_directory_template_names_are_not_checked(
    keys: Any, events: MemoryEventLog, profiles: FakeProfiles, clock: FakeClock, tmp_path: Any
) -> None:
    from tests.api.conftest import asgi_client, bearer, make_app

    app = make_app(
        keys=keys, events=events, profiles=profiles, clock=clock, templates_dir=tmp_path / "no"
    )
    _, secret = keys.create_api_key("writer", "write")
    with asgi_client(app) as client:
        response = create(client, bearer(secret), WELCOME.replace("welcome_1", "anything"))
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"publish": True}, "yaml"),
        ({"yaml": 3}, "yaml"),
        ({"yaml": CART, "publish": "yes"}, "publish"),
        ({"yaml": CART, "publish": True, "migration": {"mode": "jump"}}, "migration.mode"),
        ({"yaml": CART, "colour": "blue"}, "colour"),
        ([CART], "body"),
        ({"yaml": CART, "migration": {"mode": "move"}}, "migration"),
    ],
)
def test_bad_json_bodies_name_the_field(
    client: httpx.Client, write_headers: dict[str, str], body: dict[str, Any], location: str
) -> None:
    response = client.post("/v1/journeys", json=body, headers=write_headers)
    assert response.status_code == 400
    assert response.json()["location"] == location


def test_unknown_content_type_and_bad_publish_flag_are_400(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/journeys", content=CART, headers={**write_headers, "Content-Type": "image/png"}
    )
    assert response.status_code == 400
    assert response.json()["location"] == "Content-Type"
    response = client.post("/v1/journeys?publish=maybe", content=CART, headers=YAML | write_headers)
    assert response.status_code == 400
    assert response.json()["location"] == "publish"
    response = client.post(
        "/v1/journeys", content="{", headers=write_headers | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_an_oversized_body_is_refused(client: httpx.Client, write_headers: dict[str, str]) -> None:
    response = create(client, write_headers, "#" * ((1 << 20) + 1))
    assert response.status_code == 400
    assert response.json()["location"] == "body"


@pytest.mark.parametrize("levels", [65, 5_000])
def test_a_body_nested_too_deep_is_refused(
    client: httpx.Client, write_headers: dict[str, str], levels: int
) -> None:
    # 5,000 levels made the decoder raise RecursionError: a 500, which clients retry.
    deep = b"[" * levels + b"]" * levels
    body = b'{"profile": "user_id:42", "context": {"x": ' + deep + b"}}"
    response = client.post("/v1/journeys/any/entries", content=body, headers=write_headers)
    assert response.status_code == 400
    assert response.json() == {
        "error": "body: nests objects and arrays more than 64 levels deep",
        "location": "body",
    }


# -- lifecycle -----------------------------------------------------------------------------------


def post(client: httpx.Client, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return client.post(path, headers=headers, **kw)


def test_draft_publish_pause_resume_stop(
    client: httpx.Client, write_headers: dict[str, str], clock: FakeClock
) -> None:
    base = "/v1/journeys/abandoned-cart"
    assert create(client, write_headers).json()["status"] == "draft"
    clock.advance(seconds=10)
    published = post(client, f"{base}/publish", write_headers)
    assert published.status_code == 200
    body = published.json()
    assert (body["version"], body["status"], body["changed"]) == (1, "published", True)
    assert body["published_at"] == "2026-01-01T00:00:10.000Z"

    # No draft left to publish.
    again = post(client, f"{base}/publish", write_headers)
    assert again.status_code == 409
    assert "no draft" in again.json()["error"]

    paused = post(client, f"{base}/pause", write_headers)
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    resumed = post(client, f"{base}/resume", write_headers)
    assert (resumed.status_code, resumed.json()["status"]) == (200, "published")
    stopped = post(client, f"{base}/stop", write_headers)
    assert (stopped.status_code, stopped.json()["status"]) == (200, "stopped")

    # A stopped journey stays stopped.
    for path in (f"{base}/pause", f"{base}/resume"):
        assert post(client, path, write_headers).status_code == 409
    assert create(client, write_headers, CART, publish=True).status_code == 409
    assert create(client, write_headers).status_code == 409


def test_publish_takes_a_migration_and_rechecks_the_draft(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    publish(client, write_headers)
    create(client, write_headers, CART.replace("priority: 60", "priority: 65"))
    migration = {"mode": "move", "steps": {}}
    response = post(
        client, "/v1/journeys/abandoned-cart/publish", write_headers, json={"migration": migration}
    )
    assert response.status_code == 200
    assert (response.json()["version"], response.json()["migration"]["mode"]) == (2, "move")
    bad = post(
        client, "/v1/journeys/abandoned-cart/publish", write_headers, json={"migration": "x"}
    )
    assert bad.status_code == 400


def test_pausing_a_draft_is_409_and_unknown_journeys_404(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    create(client, write_headers)
    assert post(client, "/v1/journeys/abandoned-cart/pause", write_headers).status_code == 409
    for action in ("publish", "pause", "resume", "stop"):
        response = post(client, f"/v1/journeys/nope/{action}", write_headers)
        assert response.status_code == 404, action


# -- entries -------------------------------------------------------------------------------------


def enter(client: httpx.Client, headers: dict[str, str], **body: Any) -> httpx.Response:
    return client.post("/v1/journeys/welcome-call/entries", json=body, headers=headers)


def entry_events(events: MemoryEventLog) -> list[Any]:
    return [e for e in events.read(0, 1000) if e.name == ENTRY_REQUEST_EVENT]


def test_an_entry_request_is_appended_once_per_request_id(
    client: httpx.Client,
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    events: MemoryEventLog,
) -> None:
    sara(profiles)
    publish(client, write_headers, WELCOME)
    context = {"coupon": "WELCOME10", "بسته": "طلایی"}
    for _ in range(2):  # a retry
        response = enter(
            client, write_headers, profile="user_id:42", request_id="r1", context=context
        )
        assert response.status_code == 202
        assert response.json() == {"request_id": "r1", "accepted": True, "profile_id": "prof_sara"}
    (event,) = entry_events(events)
    assert event.source_id == SOURCE_ID
    assert event.message_id == "entry:welcome-call:r1"
    assert event.user_id == "42"
    payload = event.payload()
    assert payload["properties"] == {"journey_id": "welcome-call", "context": context}


def test_without_a_request_id_each_request_enters(
    client: httpx.Client,
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    events: MemoryEventLog,
) -> None:
    sara(profiles)
    publish(client, write_headers, WELCOME)
    ids = {
        enter(client, write_headers, profile="email:Sara@Example.com").json()["request_id"]
        for _ in range(2)
    }
    assert len(ids) == 2
    found = entry_events(events)
    assert len(found) == 2
    # Not a user id: identity resolution reads the email from the context traits.
    assert found[0].payload()["context"]["traits"] == {"email": "sara@example.com"}


def test_the_runtime_enters_the_customer_and_the_profile_shows_it(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    profiles: FakeProfiles,
    events: MemoryEventLog,
    stores: MemoryJourneyStores,
    clock: FakeClock,
) -> None:
    sara(profiles)
    publish(client, write_headers, WELCOME)
    assert enter(client, write_headers, profile="user_id:42", request_id="r1").status_code == 202
    profiles.processed = events.last_seq()
    rules = IdentityRules(IdentitySettings())
    runtime = JourneyRuntime(events, profiles, stores, stores, rules, clock)
    assert runtime.run_events() == 1
    data = client.get("/v1/profiles/user_id:42/journeys", headers=read_headers).json()["data"]
    assert [(run["journey_id"], run["version"]) for run in data] == [("welcome-call", 1)]
    assert data[0]["entered_at"] == "2026-01-01T00:00:00.000Z"
    assert data[0]["visits"][0]["step"] == "hello"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("none", "no journey"),
        ("draft", "not published"),
        ("paused", "not published (paused)"),
        ("stopped", "not published (stopped)"),
        ("no_api", "does not take entries by API"),
    ],
)
def test_entries_need_a_published_journey_with_api_entry(
    client: httpx.Client,
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    events: MemoryEventLog,
    setup: str,
    message: str,
) -> None:
    sara(profiles)
    text = WELCOME if setup != "no_api" else WELCOME.replace("api: true", "event: Signed Up")
    if setup == "draft":
        create(client, write_headers, text)
    elif setup != "none":
        publish(client, write_headers, text)
    if setup in ("paused", "stopped"):
        action = {"paused": "pause", "stopped": "stop"}[setup]
        post(client, f"/v1/journeys/welcome-call/{action}", write_headers)
    response = enter(client, write_headers, profile="user_id:42")
    assert response.status_code == 404
    assert message in response.json()["error"]
    assert entry_events(events) == []


def test_a_draft_on_top_of_a_published_version_still_takes_entries(
    client: httpx.Client, write_headers: dict[str, str], profiles: FakeProfiles
) -> None:
    sara(profiles)
    publish(client, write_headers, WELCOME)
    create(client, write_headers, WELCOME.replace("Welcome call", "Welcome call v2"))
    assert enter(client, write_headers, profile="user_id:42").status_code == 202


def test_entries_need_a_known_profile(
    client: httpx.Client, write_headers: dict[str, str], events: MemoryEventLog
) -> None:
    publish(client, write_headers, WELCOME)
    response = enter(client, write_headers, profile="user_id:404")
    assert response.status_code == 404
    assert "user_id:404" in response.json()["error"]
    assert entry_events(events) == []


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, "profile"),
        ({"profile": 42}, "profile"),
        ({"profile": "no-colon"}, "profile"),
        ({"profile": "user_id:42", "request_id": "  "}, "request_id"),
        ({"profile": "user_id:42", "request_id": "x" * 201}, "request_id"),
        ({"profile": "user_id:42", "request_id": "r\u0000"}, "request_id"),
        ({"profile": "user_id:42", "context": []}, "context"),
    ],
)
def test_bad_entry_requests_name_the_field(
    client: httpx.Client,
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    body: dict[str, Any],
    location: str,
) -> None:
    sara(profiles)
    publish(client, write_headers, WELCOME)
    response = client.post("/v1/journeys/welcome-call/entries", json=body, headers=write_headers)
    assert response.status_code == 400
    assert response.json()["location"] == location


# -- a customer's journeys -----------------------------------------------------------------------


def instance(n: int, profile_id: str, entered_at: int, **fields: Any) -> Instance:
    return Instance(
        id=f"i{n}",
        journey_id="abandoned-cart",
        version=1,
        profile_id=profile_id,
        identifier=("user_id", "42"),
        entered_at=entered_at,
        **{"step": "wait_day", **fields},
    )


def test_profile_journeys_newest_first_with_visits_across_merged_profiles(
    client: httpx.Client,
    read_headers: dict[str, str],
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
) -> None:
    sara(profiles)
    old = instance(
        1,
        "prof_old",
        T0,
        status="exited",
        ended_at=T0 + 5000,
        exit_reason="exit step",
        step="split",
    )
    new = instance(2, "prof_sara", T0 + 60_000, wake_at=T0 + 86_460_000)
    visits = [
        Visit(
            instance_id="i1",
            journey_id="abandoned-cart",
            version=1,
            step="wait_for_order",
            at=T0,
            outcome="entered",
        ),
        Visit(
            instance_id="i1",
            journey_id="abandoned-cart",
            version=1,
            step="split",
            at=T0 + 5000,
            outcome="split:control",
        ),
        Visit(
            instance_id="i2",
            journey_id="abandoned-cart",
            version=1,
            step="wait_day",
            at=T0 + 60_000,
            outcome="waiting",
        ),
    ]
    stores.commit(JourneyUpdate(instances=[old, new], visits=visits))
    response = client.get("/v1/profiles/user_id:42/journeys", headers=read_headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [run["id"] for run in data] == ["i2", "i1"]
    assert data[0] == {
        "id": "i2",
        "journey_id": "abandoned-cart",
        "version": 1,
        "status": "active",
        "step": "wait_day",
        "entered_at": "2026-01-01T00:01:00.000Z",
        "ended_at": None,
        "exit_reason": None,
        "waiting_for": None,
        "wake_at": "2026-01-02T00:01:00.000Z",
        "visits": [{"step": "wait_day", "at": "2026-01-01T00:01:00.000Z", "outcome": "waiting"}],
    }
    assert data[1]["exit_reason"] == "exit step"
    assert [v["outcome"] for v in data[1]["visits"]] == ["entered", "split:control"]
    limited = client.get("/v1/profiles/user_id:42/journeys?limit=1", headers=read_headers)
    assert [run["id"] for run in limited.json()["data"]] == ["i2"]


def test_profile_journeys_errors(client: httpx.Client, read_headers: dict[str, str]) -> None:
    assert client.get("/v1/profiles/user_id:1/journeys", headers=read_headers).status_code == 404
    response = client.get("/v1/profiles/user_id:1/journeys?limit=0", headers=read_headers)
    assert (response.status_code, response.json()["location"]) == (400, "limit")
    assert client.get("/v1/profiles/bad/journeys", headers=read_headers).status_code == 400


# -- scopes --------------------------------------------------------------------------------------

READS = [
    ("GET", "/v1/journeys"),
    ("GET", "/v1/journeys/x"),
    ("GET", "/v1/profiles/user_id:42/journeys"),
]
WRITES = [
    ("POST", "/v1/journeys"),
    *[
        ("POST", f"/v1/journeys/x/{action}")
        for action in ("publish", "pause", "resume", "stop", "entries")
    ],
]


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_every_route_needs_an_api_key(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_changes_need_the_write_scope(
    client: httpx.Client,
    read_headers: dict[str, str],
    stores: MemoryJourneyStores,
    method: str,
    path: str,
) -> None:
    response = client.request(method, path, headers=read_headers, content=CART)
    assert response.status_code == 403
    assert "needs 'write'" in response.json()["error"]
    assert stores.all() == []


def test_version_documents_round_trip_the_definition(
    client: httpx.Client, write_headers: dict[str, str], stores: MemoryJourneyStores
) -> None:
    body = publish(client, write_headers)
    stored = stores.get("abandoned-cart")
    assert stored is not None
    assert msgspec.convert(body["definition"], Journey) == stored.definition
