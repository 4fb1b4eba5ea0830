"""``/v1/segments`` and ``/v1/computed-traits``: definitions, lifecycle, members, exports and
previews; profiles showing audiences; consent choices reaching the event log.

The app runs over a :class:`JourneyHarness`'s stores, so tests send events, call the API, then
let the harness's processors catch up (:func:`process`) and compare with what they stored.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from safar.api.audiences import audience_state, problems_with_live
from safar.definitions import load_audience, parse_audience
from safar.model.audiences import ComputedTrait, Segment
from safar.ports import KeyStore
from safar.runtime.audiences import fingerprint, live_definitions
from safar.runtime.batch import recompute
from safar.testing.journeys import JourneyHarness
from tests.api.conftest import EXAMPLES, harness_app

AUDIENCES = EXAMPLES / "audiences"
VIP_LAPSED = (AUDIENCES / "vip_lapsed.yaml").read_text()
REPEAT = (AUDIENCES / "repeat_buyers.yaml").read_text()
ORDERS_30D = (AUDIENCES / "orders_30d.yaml").read_text()
YAML = {"Content-Type": "application/yaml"}
OPTED_OUT = """\
id: opted-out
name: Said no to marketing email
where:
  consent: {channel: email, subscribed: false}
"""
VIPS = """\
id: vips
name: VIPs
where:
  trait: vip
  eq: true
"""
LOYAL_VIPS = """\
id: loyal-vips
name: VIPs who bought twice
where:
  all:
    - member: vips
    - member: repeat-buyers
"""


@pytest.fixture
def h() -> JourneyHarness:
    return JourneyHarness()


@pytest.fixture
def keys(h: JourneyHarness) -> KeyStore:
    return h.stores.keys


@pytest.fixture
def app(h: JourneyHarness) -> Starlette:
    return harness_app(h)


def process(h: JourneyHarness) -> None:
    """What the worker does after a publish: read the catalog again, then catch up."""
    h.audiences.refresh()
    h.reader.invalidate()
    h.run()


def shop(h: JourneyHarness) -> None:
    """u1: VIP, two big orders; u2: VIP, no orders; u3: one small order; u4: VIP, a phone, no
    orders; u5: two big orders, not VIP."""
    for user, traits in {
        "u1": {"vip": True, "email": "u1@example.com"},
        "u2": {"vip": True, "email": "u2@example.com"},
        "u3": {"vip": False, "email": "u3@example.com"},
        "u4": {"vip": True, "phone": "+14155550104"},
    }.items():
        h.identify(user, traits)
    h.send({"type": "identify", "userId": "u5", "anonymousId": 'a,"5"', "traits": {"vip": False}})
    for user, revenue in (("u1", 150), ("u1", 200), ("u3", 50), ("u5", 120), ("u5", 130)):
        h.track(user, "Order Completed", {"revenue": revenue})


def post(
    client: httpx.Client,
    headers: dict[str, str],
    text: str,
    *,
    path: str = "/v1/segments",
    publish: bool = False,
) -> httpx.Response:
    query = "?publish=true" if publish else ""
    return client.post(f"{path}{query}", content=text, headers={**headers, **YAML})


def published(
    client: httpx.Client, headers: dict[str, str], text: str, path: str = "/v1/segments"
) -> dict[str, Any]:
    response = post(client, headers, text, path=path, publish=True)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def live_shop(
    h: JourneyHarness, client: httpx.Client, headers: dict[str, str], *texts: str
) -> None:
    """The shop, with these segments and computed traits published and evaluated."""
    shop(h)
    for text in texts:
        path = "/v1/computed-traits" if "\ncompute:" in text else "/v1/segments"
        published(client, headers, text, path)
    process(h)


def ids_of(h: JourneyHarness, profile_ids: list[str]) -> set[str]:
    """The user ids of these profiles."""
    found = set()
    for profile_id in profile_ids:
        profile = next(p for p in h.stores.profiles.scan("", 100) if p.id == profile_id)
        found.add(profile.identifiers["user_id"][0])
    return found


# -- saving, publishing, reading -----------------------------------------------------------------


def test_a_yaml_file_is_saved_as_a_draft_then_published(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    response = post(client, write_headers, VIP_LAPSED)
    assert response.status_code == 201
    assert response.headers["location"] == "/v1/segments/vip-lapsed"
    body = response.json()
    assert (body["id"], body["kind"], body["version"], body["status"]) == (
        "vip-lapsed",
        "segment",
        1,
        "draft",
    )
    assert body["changed"] is True and body["published_at"] is None
    assert body["definition"]["where"]["kind"] == "all"
    assert "origin" not in body["definition"]

    response = client.post("/v1/segments/vip-lapsed/publish", headers=write_headers)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["version"]) == ("published", 1)
    live = h.stores.audience_catalog.get("vip-lapsed")
    assert live is not None and live.status == "published"


def test_a_json_document_publishes_and_the_same_again_changes_nothing(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    document = {"id": "vips", "name": "VIPs", "where": {"trait": "vip", "eq": True}}
    response = client.post("/v1/segments?publish=true", json=document, headers=write_headers)
    assert response.status_code == 201
    assert response.json()["published_at"] == response.json()["created_at"]
    h.clock.advance(seconds=1)
    again = client.post("/v1/segments?publish=true", json=document, headers=write_headers)
    assert again.status_code == 200
    assert (again.json()["changed"], again.json()["version"]) == (False, 1)
    changed = {**document, "name": "Our VIPs"}
    third = client.post("/v1/segments?publish=true", json=changed, headers=write_headers)
    assert (third.status_code, third.json()["version"]) == (201, 2)
    statuses = [v.status for v in h.stores.audience_catalog.versions("vips")]
    assert statuses == ["archived", "published"]


def test_saving_again_replaces_the_draft(
    client: httpx.Client, write_headers: dict[str, str], read_headers: dict[str, str]
) -> None:
    published(client, write_headers, VIPS)
    post(client, write_headers, VIPS.replace("name: VIPs", "name: Draft one"))
    body = post(client, write_headers, VIPS.replace("name: VIPs", "name: Draft two")).json()
    assert (body["version"], body["status"]) == (2, "draft")
    segment = client.get("/v1/segments/vips", headers=read_headers).json()
    assert [v["status"] for v in segment["versions"]] == ["published", "draft"]
    assert segment["name"] == "Draft two"
    assert segment["definition"]["name"] == "Draft two"
    assert segment["live_version"] == 1


def test_lists_show_size_and_state_as_the_processor_gets_there(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    shop(h)
    published(client, write_headers, VIP_LAPSED)
    published(client, write_headers, ORDERS_30D, "/v1/computed-traits")
    post(client, write_headers, REPEAT)  # a draft only
    listed = client.get("/v1/segments", headers=read_headers).json()["data"]
    assert [(s["id"], s["status"], s["state"], s["size"]) for s in listed] == [
        ("repeat-buyers", "draft", None, None),
        ("vip-lapsed", "published", "computing", 0),
    ]
    traits = client.get("/v1/computed-traits", headers=read_headers).json()["data"]
    assert [(t["id"], t["kind"], t["state"]) for t in traits] == [
        ("orders_30d", "computed_trait", "computing")
    ]
    assert "size" not in traits[0]

    process(h)
    listed = client.get("/v1/segments", headers=read_headers).json()["data"]
    assert [(s["id"], s["state"], s["size"]) for s in listed] == [
        ("repeat-buyers", None, None),
        ("vip-lapsed", "ready", 2),
    ]
    vip = listed[1]
    assert (vip["name"], vip["version"], vip["live_version"], vip["kind"]) == (
        "VIPs who have not ordered in 30 days",
        1,
        1,
        "segment",
    )
    traits = client.get("/v1/computed-traits", headers=read_headers).json()["data"]
    assert traits[0]["state"] == "ready"
    detail = client.get("/v1/segments/vip-lapsed", headers=read_headers).json()
    assert (detail["size"], detail["state"], len(detail["versions"])) == (2, "ready", 1)
    assert detail["definition"]["name"] == "VIPs who have not ordered in 30 days"


def test_state_follows_the_jobs_of_members_and_traits() -> None:
    trait, _ = load_audience(ORDERS_30D)
    segment = parse_audience("id: busy\nname: Busy\nwhere: {trait: orders_30d, gte: 2}\n")
    outer = parse_audience("id: outer\nname: Outer\nwhere: {member: busy}\n")
    assert isinstance(trait, ComputedTrait)
    assert isinstance(segment, Segment) and isinstance(outer, Segment)
    key = trait.aggregate.key
    segments = {"busy": segment, "outer": outer}
    traits = {"orders_30d": trait}
    done = {
        f"fold:{key}": "7:7",
        "scan:busy": f"{fingerprint(segment)}:done",
        "scan:outer": f"{fingerprint(outer)}:done",
    }
    assert audience_state(outer, segments, traits, done) == "ready"
    assert audience_state(trait, segments, traits, done) == "ready"
    # The trait republished: its history is being folded again.
    folding = {**done, f"fold:{key}": "9:3"}
    assert audience_state(trait, segments, traits, folding) == "computing"
    assert audience_state(outer, segments, traits, folding) == "computing"
    # The member segment changed condition: its scan starts over.
    scanning = {**done, "scan:busy": f"{fingerprint(segment)}:p000003"}
    assert audience_state(outer, segments, traits, scanning) == "computing"
    assert audience_state(segment, segments, traits, {**done, "scan:busy": "old:done"}) == (
        "computing"
    )


# -- problems and conflicts ----------------------------------------------------------------------


def test_problems_name_their_line_and_field(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    response = post(client, write_headers, VIPS.replace("  eq: true", "  eqq: true"))
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith(
        "the segment has 2 problem(s): line 4: where.trait: no operator"
    )
    problems = {p["field"]: p for p in body["problems"]}
    assert problems["where.eqq"]["line"] == 5
    assert "did you mean 'eq'" in problems["where.eqq"]["message"]
    response = post(client, write_headers, VIPS + "webhook: ftp://x\n")
    [problem] = response.json()["problems"]
    assert (problem["line"], problem["field"]) == (6, "webhook")
    assert h.stores.audience_catalog.all() == []

    bad = "id: spend\ncompute:\n  event: Order Completed\n  kind: sum\n"
    response = post(client, write_headers, bad, path="/v1/computed-traits")
    assert response.status_code == 400
    [problem] = response.json()["problems"]
    assert problem["field"] == "compute.value" and problem["line"] > 0
    assert response.json()["error"].startswith("the computed trait has")


def test_a_file_of_the_other_kind_is_refused(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    response = post(client, write_headers, ORDERS_30D)
    assert response.status_code == 400
    assert response.json()["location"] == "body"
    assert "/v1/computed-traits" in response.json()["error"]
    response = post(client, write_headers, VIPS, path="/v1/computed-traits")
    assert response.status_code == 400
    assert "/v1/segments" in response.json()["error"]
    journey = (EXAMPLES / "journeys" / "welcome.yaml").read_text()
    response = post(client, write_headers, journey)
    assert response.status_code == 400
    assert "neither a segment" in response.json()["problems"][0]["message"]


def test_an_id_held_by_the_other_kind_is_a_conflict(
    client: httpx.Client, write_headers: dict[str, str], read_headers: dict[str, str]
) -> None:
    published(client, write_headers, ORDERS_30D, "/v1/computed-traits")
    clash = VIPS.replace("id: vips", "id: orders_30d")
    response = post(client, write_headers, clash, publish=True)
    assert response.status_code == 409
    assert "already a computed trait" in response.json()["error"]
    response = client.get("/v1/segments/orders_30d", headers=read_headers)
    assert response.status_code == 404
    assert "/v1/computed-traits/orders_30d" in response.json()["error"]


def test_members_may_name_live_segments_but_not_close_a_cycle(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    response = post(client, write_headers, LOYAL_VIPS)
    assert response.status_code == 400
    fields = [(p["field"], p["line"]) for p in response.json()["problems"]]
    assert fields == [("where.all[0].member", 5), ("where.all[1].member", 6)]

    published(client, write_headers, VIPS)
    published(client, write_headers, REPEAT)
    published(client, write_headers, LOYAL_VIPS)
    # vips -> loyal-vips -> vips, through the published loyal-vips.
    cycle = VIPS.replace(
        "  trait: vip\n  eq: true",
        "  any:\n    - trait: vip\n      eq: true\n    - member: loyal-vips",
    )
    response = post(client, write_headers, cycle, publish=True)
    assert response.status_code == 400, response.text
    [problem] = response.json()["problems"]
    assert (problem["field"], problem["line"]) == ("where.any[1].member", 7)
    assert "'vips' -> 'loyal-vips' -> 'vips'" in problem["message"]
    assert "'loyal-vips' published" in problem["message"]


def test_cycles_through_live_segments_are_reported_once() -> None:
    a = parse_audience("id: a\nname: A\nwhere: {member: b}\n")
    b = parse_audience("id: b\nname: B\nwhere: {member: c}\n")
    c, lines = load_audience("id: c\nname: C\nwhere:\n  member: a\n", "c.yaml")
    versions = []
    for definition in (a, b):
        assert isinstance(definition, Segment)
        versions.append(_version(definition))
    [problem] = problems_with_live([c], {"c.yaml": lines}, versions)
    assert (problem.file, problem.line, problem.field) == ("c.yaml", 4, "where.member")
    assert "'c' -> 'a' -> 'b' -> 'c'" in problem.message
    # Replacing a live segment: its old references no longer count.
    fixed = parse_audience("id: b\nname: B\nwhere: {trait: x, exists: true}\n")
    assert problems_with_live([c, fixed], {"c.yaml": lines}, versions) == []


def _version(definition: Segment) -> Any:
    from safar.model.audiences import AudienceVersion

    return AudienceVersion(
        id=definition.id,
        version=1,
        kind="segment",
        status="published",
        definition=definition,
        created_at=0,
    )


def test_publishing_the_draft_needs_one_and_checks_it_again(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    response = client.post("/v1/segments/nobody/publish", headers=write_headers)
    assert response.status_code == 404
    published(client, write_headers, VIPS)
    response = client.post("/v1/segments/vips/publish", headers=write_headers)
    assert response.status_code == 409
    assert "no draft" in response.json()["error"]
    # A draft naming a live segment, which is archived before the draft is published.
    post(client, write_headers, "id: v2\nname: V2\nwhere: {member: vips}\n")
    assert client.post("/v1/segments/vips/archive", headers=write_headers).status_code == 200
    response = client.post("/v1/segments/v2/publish", headers=write_headers)
    assert response.status_code == 400
    assert response.json()["problems"][0]["field"] == "where.member"


def test_archiving(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers, VIPS, REPEAT, LOYAL_VIPS)
    assert h.profile("u1").segments == ["loyal-vips", "repeat-buyers", "vips"]
    response = client.post("/v1/segments/vips/archive", headers=write_headers)
    assert response.status_code == 409
    assert "loyal-vips" in response.json()["error"]
    response = client.post("/v1/segments/loyal-vips/archive", headers=write_headers)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["version"]) == ("archived", 1)
    # The profile stops showing it at once (the API's reader is told).
    profile = client.get("/v1/profiles/user_id:u1", headers=read_headers).json()
    assert profile["segments"] == ["repeat-buyers", "vips"]
    response = client.post("/v1/segments/loyal-vips/archive", headers=write_headers)
    assert response.status_code == 409
    listed = client.get("/v1/segments", headers=read_headers).json()["data"]
    first = listed[0]
    assert (first["id"], first["status"], first["size"], first["state"]) == (
        "loyal-vips",
        "archived",
        None,
        None,
    )
    response = client.post("/v1/computed-traits/vips/archive", headers=write_headers)
    assert response.status_code == 404
    published(client, write_headers, ORDERS_30D, "/v1/computed-traits")
    response = client.post("/v1/computed-traits/orders_30d/archive", headers=write_headers)
    assert (response.status_code, response.json()["kind"]) == (200, "computed_trait")


# -- members and exports -------------------------------------------------------------------------


def test_members_page_by_profile_id(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers, VIPS)
    first = client.get("/v1/segments/vips/members?limit=2", headers=read_headers).json()
    assert len(first["data"]) == 2 and first["next"] == first["data"][1]["profile_id"]
    second = client.get(
        f"/v1/segments/vips/members?limit=2&after={first['next']}", headers=read_headers
    ).json()
    assert len(second["data"]) == 1 and second["next"] is None
    members = first["data"] + second["data"]
    ids = [m["profile_id"] for m in members]
    assert ids == sorted(ids)
    assert ids_of(h, ids) == {"u1", "u2", "u4"}
    u1 = next(m for m in members if m["identifiers"]["user_id"] == ["u1"])
    assert u1["identifiers"]["email"] == ["u1@example.com"]
    stored = h.stores.audiences.memberships([u1["profile_id"]])[u1["profile_id"]]
    assert u1["since"] == _iso(stored.segments["vips"])
    exact = client.get("/v1/segments/vips/members?limit=3", headers=read_headers).json()
    assert len(exact["data"]) == 3 and exact["next"] is None


def _iso(ms: int) -> str:
    from safar.model.events import iso

    return iso(ms)


def test_members_of_unknown_or_unpublished_segments(
    client: httpx.Client, write_headers: dict[str, str], read_headers: dict[str, str]
) -> None:
    assert client.get("/v1/segments/nope/members", headers=read_headers).status_code == 404
    post(client, write_headers, VIPS)
    response = client.get("/v1/segments/vips/members", headers=read_headers)
    assert response.status_code == 409
    assert "not published" in response.json()["error"]
    response = client.get("/v1/segments/vips/members?limit=0", headers=read_headers)
    assert (response.status_code, response.json()["location"]) == (400, "limit")


def test_export_as_csv(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers, REPEAT)
    response = client.get("/v1/segments/repeat-buyers/export", headers=read_headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="repeat-buyers.csv"'
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["profile_id", "since", "user_id", "email", "phone", "anonymous_id"]
    by_user = {row[2]: row for row in rows[1:]}
    assert set(by_user) == {"u1", "u5"}
    assert by_user["u1"][3] == "u1@example.com" and by_user["u1"][4:] == ["", ""]
    # A value with a comma and quotes survives the round trip.
    assert by_user["u5"][5] == 'a,"5"'
    assert by_user["u1"][1].endswith("Z")
    assert [row[0] for row in rows[1:]] == sorted(row[0] for row in rows[1:])


def test_export_as_jsonl_pages_through_every_member(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import safar.api.audiences as module

    monkeypatch.setattr(module, "EXPORT_PAGE", 1)
    live_shop(h, client, write_headers, VIPS)
    response = client.get("/v1/segments/vips/export?format=jsonl", headers=read_headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('filename="vips.jsonl"')
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [r["user_id"] for r in rows] == [
        r["user_id"] for r in sorted(rows, key=lambda r: r["profile_id"])
    ]
    assert {r["user_id"] for r in rows} == {"u1", "u2", "u4"}
    u4 = next(r for r in rows if r["user_id"] == "u4")
    assert (u4["phone"], u4["email"]) == ("+14155550104", None)
    assert u4["identifiers"] == {"user_id": ["u4"], "phone": ["+14155550104"]}
    assert set(u4) == {
        "profile_id", "since", "user_id", "email", "phone", "anonymous_id", "identifiers"
    }  # fmt: skip


def test_export_refuses_an_unknown_format(
    client: httpx.Client, write_headers: dict[str, str], read_headers: dict[str, str]
) -> None:
    published(client, write_headers, VIPS)
    response = client.get("/v1/segments/vips/export?format=xlsx", headers=read_headers)
    assert (response.status_code, response.json()["location"]) == (400, "format")
    assert client.get("/v1/segments/nope/export", headers=read_headers).status_code == 404


# -- previews ------------------------------------------------------------------------------------


def test_a_segment_preview_finds_what_the_processor_finds(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers, VIPS, ORDERS_30D)
    draft = LOYAL_VIPS.replace("member: repeat-buyers", "trait: orders_30d\n      gte: 2")
    response = client.post(
        "/v1/segments/preview?sample=1", content=draft, headers={**write_headers, **YAML}
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert (preview["size"], preview["evaluated"]) == (1, 5)
    assert isinstance(preview["took_ms"], int)
    [sample] = preview["sample"]
    assert sample["identifiers"]["user_id"] == ["u1"]
    assert sample["traits"]["orders_30d"] == 2
    assert sample["segments"] == ["loyal-vips", "vips"]
    # Nothing stored.
    assert h.stores.audience_catalog.get("loyal-vips") is None

    published(client, write_headers, draft)
    process(h)
    members = client.get("/v1/segments/loyal-vips/members", headers=read_headers).json()["data"]
    assert [m["profile_id"] for m in members] == [sample["id"]]


def test_a_preview_equals_batch_recompute_and_can_be_limited(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    live_shop(h, client, write_headers, VIPS)
    response = client.post(
        "/v1/segments/preview?sample=100", content=VIP_LAPSED, headers={**write_headers, **YAML}
    )
    preview = response.json()
    segments, traits = live_definitions(h.stores.audience_catalog.all())
    draft = parse_audience(VIP_LAPSED)
    assert isinstance(draft, Segment)
    expected = recompute(
        [*segments, draft],
        traits,
        h.stores.profiles,
        h.stores.events,
        h.stores.delivery,
        h.clock.now_ms(),
    )
    inside = sorted(pid for pid, result in expected.items() if "vip-lapsed" in result.segments)
    assert [p["id"] for p in preview["sample"]] == inside
    assert preview["size"] == len(inside) == 2
    limited = client.post(
        "/v1/segments/preview?limit=2&sample=0",
        content=VIP_LAPSED,
        headers={**write_headers, **YAML},
    ).json()
    assert (limited["evaluated"], limited["sample"]) == (2, [])
    assert limited["size"] <= 2
    for query, location in (("sample=101", "sample"), ("limit=0", "limit"), ("limit=x", "limit")):
        response = client.post(
            f"/v1/segments/preview?{query}", content=VIPS, headers={**write_headers, **YAML}
        )
        assert (response.status_code, response.json()["location"]) == (400, location)


def test_a_preview_reports_problems_and_the_other_kind(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/segments/preview", content=LOYAL_VIPS, headers={**write_headers, **YAML}
    )
    assert response.status_code == 400
    assert response.json()["problems"][0]["field"] == "where.all[0].member"
    response = client.post(
        "/v1/segments/preview", content=ORDERS_30D, headers={**write_headers, **YAML}
    )
    assert response.status_code == 400 and response.json()["location"] == "body"


def test_a_computed_trait_preview_summarizes_values(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    shop(h)
    h.track("u2", "Product Viewed", {"category": "kettles"})
    h.track("u2", "Product Viewed", {"category": "kettles"})
    h.track("u3", "Product Viewed", {"category": "teapots"})
    h.track("u1", "Product Viewed", {"category": "teapots"})
    h.track("u5", "Product Viewed", {"category": "kettles"})
    revenue = (AUDIENCES / "revenue_90d.yaml").read_text()
    response = client.post(
        "/v1/computed-traits/preview?sample=2", content=revenue, headers={**write_headers, **YAML}
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["evaluated"] == 5
    # A sum is 0 for customers without orders.
    assert preview["summary"] == {"count": 5, "min": 0, "max": 350, "top": []}
    assert len(preview["sample"]) == 2
    assert all(set(s) == {"profile_id", "identifiers", "value"} for s in preview["sample"])

    favourite = (AUDIENCES / "favourite_category.yaml").read_text()
    preview = client.post(
        "/v1/computed-traits/preview", content=favourite, headers={**write_headers, **YAML}
    ).json()
    summary = preview["summary"]
    assert (summary["count"], summary["min"], summary["max"]) == (4, None, None)
    assert summary["top"] == [{"value": "kettles", "count": 2}, {"value": "teapots", "count": 2}]
    by_user = {s["identifiers"]["user_id"][0]: s["value"] for s in preview["sample"]}
    assert by_user == {"u1": "teapots", "u2": "kettles", "u3": "teapots", "u5": "kettles"}


# -- profiles and consent ------------------------------------------------------------------------


def test_profiles_show_segments_and_computed_traits(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers, REPEAT, ORDERS_30D)
    profile = client.get("/v1/profiles/user_id:u1", headers=read_headers).json()
    assert profile["segments"] == ["repeat-buyers"]
    assert profile["traits"]["orders_30d"] == 2
    assert profile["traits"]["vip"] is True
    other = client.get("/v1/profiles/email:u3@example.com", headers=read_headers).json()
    assert (other["segments"], other["traits"]["orders_30d"]) == ([], 1)


def test_a_consent_choice_is_an_event_that_moves_consent_segments(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers, OPTED_OUT)
    assert client.get("/v1/segments/opted-out", headers=read_headers).json()["size"] == 0
    before = h.stores.events.last_seq()
    choice = {"channel": "email", "category": "marketing", "subscribed": False}
    response = client.put("/v1/profiles/user_id:u2/consent", json=choice, headers=write_headers)
    assert response.status_code == 200
    [event] = h.stores.events.read(before, 10)
    assert (event.type, event.name, event.user_id) == ("track", "Consent Changed", "u2")
    payload = event.payload()
    assert payload["properties"] == {
        "channel": "email",
        "category": "marketing",
        "subscribed": False,
        "source": "api",
    }
    profile_id = h.profile("u2").id
    assert event.message_id == f"consent:{profile_id}:email:marketing:false:{h.clock.now_ms()}"
    # The same request again at the same instant is the same event.
    client.put("/v1/profiles/user_id:u2/consent", json=choice, headers=write_headers)
    assert h.stores.events.last_seq() == before + 1
    process(h)
    segment = client.get("/v1/segments/opted-out", headers=read_headers).json()
    assert segment["size"] == 1
    assert h.profile("u2").segments == ["opted-out"]


# -- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/segments"),
        ("GET", "/v1/segments/vips"),
        ("GET", "/v1/segments/vips/members"),
        ("GET", "/v1/segments/vips/export"),
        ("GET", "/v1/computed-traits"),
        ("GET", "/v1/computed-traits/orders_30d"),
    ],
)
def test_reading_needs_a_key(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/v1/segments",
        "/v1/segments/preview",
        "/v1/segments/vips/publish",
        "/v1/segments/vips/archive",
        "/v1/computed-traits",
        "/v1/computed-traits/preview",
        "/v1/computed-traits/orders_30d/publish",
        "/v1/computed-traits/orders_30d/archive",
    ],
)
def test_changes_and_previews_need_the_write_scope(
    client: httpx.Client, read_headers: dict[str, str], path: str
) -> None:
    assert client.post(path, content=VIPS, headers={**YAML}).status_code == 401
    response = client.post(path, content=VIPS, headers={**read_headers, **YAML})
    assert response.status_code == 403


def test_bodies_must_be_yaml_or_json_text(
    client: httpx.Client, write_headers: dict[str, str]
) -> None:
    response = client.post(
        "/v1/segments", content=VIPS, headers={**write_headers, "Content-Type": "text/csv"}
    )
    assert (response.status_code, response.json()["location"]) == (400, "Content-Type")
    response = client.post("/v1/segments", content=b"\xff\xfe", headers={**write_headers, **YAML})
    assert (response.status_code, response.json()["location"]) == (400, "body")
    response = client.post(
        "/v1/segments?publish=maybe", content=VIPS, headers={**write_headers, **YAML}
    )
    assert (response.status_code, response.json()["location"]) == (400, "publish")
