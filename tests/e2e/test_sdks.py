"""The real tracking SDKs pointed at a live ``safar serve``, results read via the profile API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rudderstack.analytics as rudder
import segment.analytics as segment

from tests.e2e.live import LiveServer

pytestmark = pytest.mark.slow


def _errors() -> tuple[list[Any], Any]:
    seen: list[Any] = []
    return seen, lambda error, items: seen.append(error)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_python_sdk(live: LiveServer, gzip: bool) -> None:
    errors, on_error = _errors()
    client = segment.Client(
        live.write_key, host=live.url, gzip=gzip, sync_mode=True, max_retries=0, on_error=on_error
    )
    earlier = datetime.now(tz=UTC) - timedelta(hours=1)
    client.track(anonymous_id="anon-seg", event="Product Viewed", properties={"sku": "k-1"})
    client.page(anonymous_id="anon-seg", name="Pricing", properties={"path": "/pricing"})
    client.identify(
        user_id="seg-42",
        anonymous_id="anon-seg",
        traits={"email": "  Sara@Example.COM ", "name": "سارا", "plan": "pro"},
    )
    client.identify(user_id="seg-42", traits={"plan": "free"}, timestamp=earlier)
    client.track(user_id="seg-42", event="Order Completed", properties={"revenue": 30})
    client.group(user_id="seg-42", group_id="acme", traits={"name": "Acme"})
    client.screen(user_id="seg-42", name="Home")
    client.alias(previous_id="anon-seg-2", user_id="seg-42")
    client.flush()
    assert errors == []

    live.wait_processed()
    status, profile = live.profile("email:sara@example.com")
    assert status == 200, profile
    assert profile["identifiers"]["user_id"] == ["seg-42"]
    assert set(profile["identifiers"]["anonymous_id"]) == {"anon-seg", "anon-seg-2"}
    # The later-sent identify is older by its timestamp, so it must not win.
    assert profile["traits"]["plan"] == "pro"
    assert profile["traits"]["name"] == "سارا"

    events = live.events("user_id:seg-42")
    kinds = [(e["type"], e.get("event") or e.get("name")) for e in events]
    # The anonymous history moved into the known profile, newest first.
    assert ("track", "Product Viewed") in kinds
    assert ("page", "Pricing") in kinds
    assert kinds.index(("track", "Order Completed")) < kinds.index(("track", "Product Viewed"))
    assert {"group", "screen", "alias"} <= {e["type"] for e in events}
    assert all(e["messageId"] for e in events)
    assert len({e["messageId"] for e in events}) == len(events)


def test_rudderstack_python_sdk(live: LiveServer) -> None:
    errors, on_error = _errors()
    client = rudder.Client(
        live.write_key, host=live.url, sync_mode=True, max_retries=0, on_error=on_error
    )
    client.identify(user_id="rud-7", anonymous_id="anon-rud", traits={"email": "li@example.org"})
    client.track(user_id="rud-7", event="Ticket Opened", properties={"subject": "退货"})
    client.track(anonymous_id="anon-rud", event="Products Searched", properties={"query": "壶"})
    client.flush()
    assert errors == []

    live.wait_processed()
    status, profile = live.profile("anonymous_id:anon-rud")
    assert status == 200, profile
    assert profile["identifiers"]["user_id"] == ["rud-7"]
    # rudder-sdk-python sends identify traits in context.traits.
    assert profile["traits"]["email"] == "li@example.org"
    names = {e.get("event") for e in live.events("user_id:rud-7")}
    assert {"Ticket Opened", "Products Searched"} <= names


def test_unknown_write_key_is_refused_to_the_sdk(live: LiveServer) -> None:
    client = segment.Client("wk_not-a-key", host=live.url, sync_mode=True, max_retries=0)
    with pytest.raises(segment.request.APIError) as caught:
        client.track(user_id="x", event="Nope")
    # The SDK reads Segment's error shape: a code and a message naming the problem.
    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"
    assert "unknown write key" in caught.value.message
