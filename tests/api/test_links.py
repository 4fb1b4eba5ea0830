"""The public link endpoints: unsubscribe, open pixel, click redirect."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from safar.model.messages import Consent
from safar.model.profiles import Profile
from safar.runtime.internal import SOURCE_ID
from safar.runtime.links import Links
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.testing import FakeClock
from tests.api.conftest import FakeProfiles

T0 = 1_767_225_600_000
BASE = "http://testserver"
CLAIMS: dict[str, Any] = {
    "k": "m1",
    "p": "prof_old",
    "i": ["user_id", "42"],
    "j": "abandoned-cart",
    "s": "send_email",
    "c": "email",
    "g": "marketing",
}
TARGET = "https://shop.example.com/fa/cart?cart_id=7"


def sara(profiles: FakeProfiles) -> Profile:
    # The message went to prof_old, since merged into prof_sara.
    return profiles.add(
        Profile(
            id="prof_sara",
            identifiers={"user_id": ["42"]},
            traits={},
            first_seen=T0,
            last_seen=T0,
            merged_from=["prof_old"],
        )
    )


def path(url: str) -> str:
    assert url.startswith(BASE)
    return url.removeprefix(BASE)


def logged(events: MemoryEventLog) -> list[Any]:
    return events.read(0, 1000)


# -- unsubscribe ---------------------------------------------------------------------------------


def test_get_shows_a_confirmation_page_and_changes_nothing(
    client: httpx.Client,
    links: Links,
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
    events: MemoryEventLog,
) -> None:
    sara(profiles)
    response = client.get(path(links.unsubscribe_url(CLAIMS)))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in response.text
    assert "marketing emails" in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in response.headers["cache-control"]
    assert stores.consents(["prof_sara", "prof_old"]) == []
    assert logged(events) == []


def test_post_unsubscribes_once_even_when_clicked_twice(
    client: httpx.Client,
    links: Links,
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
    events: MemoryEventLog,
    clock: FakeClock,
) -> None:
    sara(profiles)
    url = path(links.unsubscribe_url(CLAIMS))
    first = client.post(url)
    assert first.status_code == 200
    assert "You are unsubscribed" in first.text
    clock.advance(seconds=3)
    assert client.post(url).status_code == 200
    # Under the profile holding the identifier now, where the policy gate reads consent.
    assert stores.consents(["prof_sara", "prof_old"]) == [
        Consent(
            profile_id="prof_sara",
            channel="email",
            category="marketing",
            subscribed=False,
            at=T0 + 3000,
            source="link",
        )
    ]
    (event,) = logged(events)
    assert (event.source_id, event.message_id) == (SOURCE_ID, "m1:unsubscribed")
    assert (event.name, event.user_id) == ("Unsubscribed", "42")
    assert event.payload()["properties"] == {
        "channel": "email",
        "category": "marketing",
        "message_key": "m1",
        "journey_id": "abandoned-cart",
    }


def test_one_click_unsubscribe(
    client: httpx.Client,
    links: Links,
    stores: MemoryJourneyStores,
    events: MemoryEventLog,
) -> None:
    # RFC 8058: the mailbox provider POSTs this form body to the List-Unsubscribe URL. With no
    # profile holding the identifier, consent goes to the profile the message was sent to.
    response = client.post(
        path(links.unsubscribe_url(CLAIMS)),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    (consent,) = stores.consents(["prof_old"])
    assert (consent.channel, consent.category, consent.subscribed) == ("email", "marketing", False)
    assert [e.name for e in logged(events)] == ["Unsubscribed"]


def forged(links: Links) -> list[str]:
    token = links.token(CLAIMS)
    body, _, signature = token.partition(".")
    other = Links(b"another installation's secret!!", BASE).token(CLAIMS)
    flipped = ("A" if body[5] != "A" else "B").join((body[:5], body[6:]))
    return [
        f"{flipped}.{signature}",  # altered claims
        f"{body}.{signature[:-2]}",  # truncated signature
        body,  # no signature
        other,  # another secret
        "not-a-token",
        f"{body}.{signature[:-1]}é",  # non-ASCII
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_forged_unsubscribe_links_are_refused(
    client: httpx.Client,
    links: Links,
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
    events: MemoryEventLog,
    index: int,
    method: str,
) -> None:
    sara(profiles)
    response = client.request(method, f"/l/u/{forged(links)[index]}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "This link is not valid" in response.text
    assert stores.consents(["prof_sara", "prof_old"]) == []
    assert logged(events) == []


def test_a_signed_token_without_message_claims_is_refused(
    client: httpx.Client, links: Links, events: MemoryEventLog
) -> None:
    token = links.token({"k": "m1", "p": "prof_sara"})
    assert client.post(f"/l/u/{token}").status_code == 400
    assert client.get(f"/l/o/{token}").status_code == 400
    assert logged(events) == []


# -- opens ---------------------------------------------------------------------------------------


def test_open_pixel_is_an_uncached_gif_and_only_the_first_open_counts(
    client: httpx.Client, links: Links, events: MemoryEventLog
) -> None:
    url = path(links.open_url(CLAIMS))
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content.startswith(b"GIF89a")
        width, height = (int.from_bytes(response.content[i : i + 2], "little") for i in (6, 8))
        assert (width, height) == (1, 1)
        assert "no-cache" in response.headers["cache-control"]
    (event,) = logged(events)
    assert (event.name, event.message_id) == ("Email Opened", "m1:opened")
    assert event.payload()["properties"] == {
        "message_key": "m1",
        "journey_id": "abandoned-cart",
        "step_id": "send_email",
        "channel": "email",
    }


def test_open_with_a_bad_token_is_400(
    client: httpx.Client, links: Links, events: MemoryEventLog
) -> None:
    response = client.get(f"/l/o/{forged(links)[0]}")
    assert response.status_code == 400
    assert response.json()["location"] == "token"
    assert logged(events) == []


# -- clicks --------------------------------------------------------------------------------------


def test_click_redirects_and_records_each_link_once(
    client: httpx.Client, links: Links, events: MemoryEventLog
) -> None:
    url = path(links.click_url(CLAIMS, TARGET))
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["location"] == TARGET
        assert response.headers["referrer-policy"] == "no-referrer"
    other = client.get(path(links.click_url(CLAIMS, "https://shop.example.com/")))
    assert other.status_code == 302
    first, second = logged(events)
    digest = hashlib.sha1(TARGET.encode()).hexdigest()[:10]
    assert (first.name, first.message_id) == ("Email Clicked", f"m1:clicked:{digest}")
    assert first.payload()["properties"] == {
        "message_key": "m1",
        "journey_id": "abandoned-cart",
        "step_id": "send_email",
        "channel": "email",
        "url": TARGET,
    }
    assert second.payload()["properties"]["url"] == "https://shop.example.com/"


def test_tracked_html_links_lead_through_the_click_endpoint(
    client: httpx.Client, links: Links
) -> None:
    html = links.track_html(f'<p><a href="{TARGET}">cart</a></p>', CLAIMS)
    tracked = html.split('href="', 1)[1].split('"', 1)[0]
    assert client.get(path(tracked)).headers["location"] == TARGET


@pytest.mark.parametrize(
    "target", ["javascript:alert(document.cookie)", "data:text/html,hi", "//evil.example"]
)
def test_click_refuses_targets_that_are_not_http(
    client: httpx.Client, links: Links, events: MemoryEventLog, target: str
) -> None:
    response = client.get(path(links.click_url(CLAIMS, target)))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert logged(events) == []


def test_click_without_a_target_or_with_a_forged_token_is_400(
    client: httpx.Client, links: Links, events: MemoryEventLog
) -> None:
    assert client.get(f"/l/c/{links.token(CLAIMS)}").status_code == 400
    token = links.token({**CLAIMS, "url": TARGET})
    body, _, signature = token.partition(".")
    evil = Links(b"x" * 32, BASE).token({**CLAIMS, "url": "https://evil.example"})
    assert client.get(f"/l/c/{evil}").status_code == 400
    assert client.get(f"/l/c/{body}.{signature[::-1]}").status_code == 400
    assert logged(events) == []


# -- delivery reports ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", [("Message Delivered", "m1:delivered")]),
        ("undelivered", [("Message Failed", "m1:provider-failed")]),
        ("failed", [("Message Failed", "m1:provider-failed")]),
        ("queued", []),
    ],
)
def test_provider_delivery_reports_become_events_once(
    client: httpx.Client,
    links: Links,
    events: MemoryEventLog,
    status: str,
    expected: list[tuple[str, str]],
) -> None:
    url = path(links.status_url({**CLAIMS, "c": "sms"}))
    for _ in range(2):
        response = client.post(url, data={"MessageStatus": status, "MessageSid": "SM1"})
        assert response.status_code == 204
    assert [(e.name, e.message_id) for e in logged(events)] == expected
    for event in logged(events):
        assert event.payload()["properties"]["provider_status"] == status


def test_a_delivery_report_with_a_forged_token_is_refused(
    client: httpx.Client, links: Links, events: MemoryEventLog
) -> None:
    token = links.status_url(CLAIMS).rsplit("/", 1)[1]
    response = client.post(f"/l/s/{token[:-2]}xx", data={"MessageStatus": "delivered"})
    assert response.status_code == 400
    assert logged(events) == []
