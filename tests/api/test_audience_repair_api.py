"""``POST /v1/segments/{id}/repair`` and ``POST /v1/computed-traits/{id}/repair``: requests the
audience processor carries out in the background (see tests/audiences/test_repair.py for what a
repair does); the app runs over a :class:`JourneyHarness`'s stores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from safar.model.audiences import SEGMENT_ENTERED
from safar.ports import AudienceUpdate, KeyStore
from safar.runtime import audiences as processor_module
from safar.testing.journeys import JourneyHarness
from tests.api.conftest import harness_app

YAML = {"Content-Type": "application/yaml"}
VIPS = "id: vips\nname: VIPs\nwhere:\n  trait: vip\n  eq: true\n"
REVENUE = (
    "id: revenue\ncompute:\n  event: Order Completed\n  kind: sum\n  value: properties.revenue\n"
)
BIG = "id: big\nname: Big spenders\nwhere:\n  trait: revenue\n  gte: 200\n"


@pytest.fixture
def h() -> JourneyHarness:
    return JourneyHarness()


@pytest.fixture
def keys(h: JourneyHarness) -> KeyStore:
    return h.stores.keys


@pytest.fixture
def app(h: JourneyHarness) -> Starlette:
    return harness_app(h)


def live_shop(h: JourneyHarness, client: httpx.Client, headers: dict[str, str]) -> None:
    """u1 (VIP) spent 350, u2 (VIP) nothing; vips, revenue and big published and evaluated."""
    h.identify("u1", {"vip": True})
    h.identify("u2", {"vip": True})
    h.track("u1", "Order Completed", {"revenue": 150})
    h.track("u1", "Order Completed", {"revenue": 200})
    for path, text in (
        ("/v1/segments", VIPS),
        ("/v1/computed-traits", REVENUE),
        ("/v1/segments", BIG),
    ):
        response = client.post(f"{path}?publish=true", content=text, headers={**headers, **YAML})
        assert response.status_code == 201, response.text
    h.audiences.refresh()
    h.run()


def states(client: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    found = {}
    for path in ("/v1/segments", "/v1/computed-traits"):
        for row in client.get(path, headers=headers).json()["data"]:
            found[row["id"]] = row["state"]
    return found


def test_a_repair_is_accepted_then_computing_then_ready(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live_shop(h, client, write_headers)
    response = client.post("/v1/computed-traits/revenue/repair", headers=write_headers)
    assert response.status_code == 202
    body = response.json()
    assert (body["id"], body["kind"], body["version"], body["status"]) == (
        "revenue",
        "computed_trait",
        1,
        "published",
    )
    assert body["repairs_requested"] == 1
    again = client.post("/v1/computed-traits/revenue/repair", headers=write_headers)
    assert again.json()["repairs_requested"] == 2
    # Nothing changes until the processor picks the request up.
    assert states(client, read_headers) == {"vips": "ready", "big": "ready", "revenue": "ready"}
    monkeypatch.setattr(processor_module, "HISTORY_PAGE", 2)
    h.audiences.refresh()
    h.audiences.run_jobs()
    assert states(client, read_headers) == {
        "vips": "ready",
        "big": "computing",
        "revenue": "computing",
    }
    h.run()
    assert states(client, read_headers) == {"vips": "ready", "big": "ready", "revenue": "ready"}


def test_a_repaired_segment_gets_back_a_lost_member(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    live_shop(h, client, write_headers)
    u2 = h.profile("u2").id
    [lost] = h.stores.audiences.memberships([u2]).values()
    lost.segments.clear()
    h.stores.audiences.commit(AudienceUpdate(memberships=[lost]))
    h.clock.advance(seconds=1)
    after = h.stores.events.last_seq()
    response = client.post("/v1/segments/vips/repair", headers=write_headers)
    assert (response.status_code, response.json()["kind"]) == (202, "segment")
    h.audiences.refresh()
    h.run()
    members = client.get("/v1/segments/vips/members", headers=write_headers).json()["data"]
    assert {m["profile_id"] for m in members} == {h.profile("u1").id, u2}
    entered = [e for e in h.stores.events.read(after, 100) if e.name == SEGMENT_ENTERED]
    assert [(e.user_id, e.payload()["properties"]["segment_id"]) for e in entered] == [
        ("u2", "vips")
    ]


def test_what_cannot_be_repaired(
    client: httpx.Client,
    write_headers: dict[str, str],
    read_headers: dict[str, str],
    h: JourneyHarness,
) -> None:
    live_shop(h, client, write_headers)
    draft = "id: draft\nname: Draft\nwhere:\n  trait: vip\n  eq: false\n"
    client.post("/v1/segments", content=draft, headers={**write_headers, **YAML})
    client.post("/v1/segments/big/archive", headers=write_headers)
    cases = [
        ("/v1/segments/nobody/repair", write_headers, 404, "no segment 'nobody'"),
        ("/v1/segments/revenue/repair", write_headers, 404, "is a computed trait"),
        ("/v1/computed-traits/vips/repair", write_headers, 404, "is a segment"),
        ("/v1/segments/draft/repair", write_headers, 409, "'draft' is not published"),
        ("/v1/segments/big/repair", write_headers, 409, "'big' is not published"),
        ("/v1/segments/vips/repair", read_headers, 403, ""),
        ("/v1/segments/vips/repair", {}, 401, ""),
    ]
    for path, headers, status, message in cases:
        response = client.post(path, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert message in response.text, path
    assert h.stores.audience_catalog.repairs() == {}
