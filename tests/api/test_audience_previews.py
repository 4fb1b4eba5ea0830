"""``POST /v1/segments/preview`` and ``/v1/computed-traits/preview`` over the kept warehouse: a
preview sees the events and merges processed since the one before, and answers as the direct
path (``limit``) does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from safar.ports import KeyStore
from safar.testing.journeys import JourneyHarness
from tests.api.conftest import harness_app

YAML = {"Content-Type": "application/yaml"}
BIG_SPENDERS = """\
id: big-spenders
name: Two large orders in 30 days
where:
  performed: Order Completed
  where: event.properties.revenue > 100
  at_least: 2
  within: 30d
"""
REVENUE = """\
id: revenue_30d
compute: {event: Order Completed, kind: sum, value: properties.revenue, within: 30d}
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


def order(h: JourneyHarness, who: dict[str, str], revenue: float) -> None:
    h.send({**who, "event": "Order Completed", "properties": {"revenue": revenue}})


def previewed(
    client: httpx.Client, headers: dict[str, str], text: str, path: str, query: str = ""
) -> dict[str, Any]:
    response = client.post(f"{path}/preview{query}", content=text, headers={**headers, **YAML})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    assert isinstance(found.pop("took_ms"), int)
    return found


def test_a_segment_preview_sees_new_events_and_merges(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    h.identify("u1", {"email": "u1@example.com"})
    h.identify("u2", {"email": "u2@example.com"})
    for revenue in (150, 200):
        order(h, {"userId": "u1"}, revenue)
        order(h, {"anonymousId": "a1"}, revenue)  # a visitor not known yet
    found = previewed(client, write_headers, BIG_SPENDERS, "/v1/segments")
    assert (found["size"], found["evaluated"]) == (2, 3)
    anonymous = next(p for p in found["sample"] if "anonymous_id" in p["identifiers"])
    assert anonymous["identifiers"] == {"anonymous_id": ["a1"]}

    # The visitor turns out to be u2; u2 had no orders of their own.
    h.send({"type": "identify", "userId": "u2", "anonymousId": "a1", "traits": {}})
    found = previewed(client, write_headers, BIG_SPENDERS, "/v1/segments")
    assert (found["size"], found["evaluated"]) == (2, 2)
    merged = next(p for p in found["sample"] if "anonymous_id" in p["identifiers"])
    assert merged["id"] == h.profile("u2").id
    assert merged["identifiers"]["user_id"] == ["u2"]
    assert merged["segments"] == ["big-spenders"]

    # New orders count; old ones leave the window.
    h.advance(days=20)
    order(h, {"userId": "u1"}, 300)
    order(h, {"userId": "u1"}, 400)
    h.advance(days=15)
    found = previewed(client, write_headers, BIG_SPENDERS, "/v1/segments")
    assert found["size"] == 1
    assert [p["identifiers"]["user_id"] for p in found["sample"]] == [["u1"]]
    direct = previewed(client, write_headers, BIG_SPENDERS, "/v1/segments", "?limit=1000")
    assert direct == found


def test_a_computed_trait_preview_sees_new_events_and_merges(
    client: httpx.Client, write_headers: dict[str, str], h: JourneyHarness
) -> None:
    order(h, {"userId": "u1"}, 100)
    order(h, {"anonymousId": "a1"}, 40)
    order(h, {"anonymousId": "a1"}, 2.5)
    found = previewed(client, write_headers, REVENUE, "/v1/computed-traits", "?sample=5")
    assert found["summary"] == {"count": 2, "min": 42.5, "max": 100, "top": []}

    h.send({"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {}})
    order(h, {"userId": "u2"}, 7)
    found = previewed(client, write_headers, REVENUE, "/v1/computed-traits", "?sample=5")
    assert found["summary"] == {"count": 2, "min": 7, "max": 142.5, "top": []}
    values = {s["identifiers"]["user_id"][0]: s["value"] for s in found["sample"]}
    assert values == {"u1": 142.5, "u2": 7}
    direct = previewed(client, write_headers, REVENUE, "/v1/computed-traits", "?sample=5&limit=9")
    assert direct == found
