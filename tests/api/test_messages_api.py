"""Decisions, consent and the in-app inbox under ``/v1/profiles/{ref}``; ``/v1/outbox/dead``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from safar.model.messages import Consent, Decision, InboxItem, Message
from safar.model.profiles import Profile
from safar.model.runs import EventCommand, OutboxEntry, SendCommand
from safar.ports import JourneyUpdate, Settlement
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.testing import FakeClock
from tests.api.conftest import FakeProfiles, add_sara

T0 = 1_767_225_600_000
CONSENT = "/v1/profiles/user_id:42/consent"


def sara(profiles: FakeProfiles) -> Profile:
    return add_sara(profiles, T0)


def message(key: str, profile_id: str) -> Message:
    return Message(
        key=key,
        journey_id="abandoned-cart",
        version=1,
        step_id="send_email",
        instance_id="i1",
        profile_id=profile_id,
        identifier=("user_id", "42"),
        channel="email",
        template="cart_reminder",
        category="marketing",
        priority=60,
        created_at=T0,
    )


def queue(stores: MemoryJourneyStores, key: str, profile_id: str = "prof_sara") -> None:
    entry = OutboxEntry(
        key=key,
        command=SendCommand(message=message(key, profile_id)),
        profile_id=profile_id,
        due=T0,
    )
    stores.commit(JourneyUpdate(outbox=[entry]))


def decide(
    stores: MemoryJourneyStores, key: str, at: int, outcome: Any, rule: str = "", **extra: Any
) -> None:
    """A message queued and settled by the dispatcher with this decision."""
    profile_id = extra.pop("profile_id", "prof_sara")
    queue(stores, key, profile_id)
    decision = Decision(
        message_key=key,
        profile_id=profile_id,
        journey_id="abandoned-cart",
        step_id="send_email",
        channel="email",
        category="marketing",
        at=at,
        outcome=outcome,
        rule=rule,
        **extra,
    )
    stores.settle([Settlement(key=key, status="done", decision=decision)])


# -- decisions -----------------------------------------------------------------------------------


def test_decisions_newest_first_explain_why_no_email(
    client: httpx.Client,
    read_headers: dict[str, str],
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
) -> None:
    sara(profiles)
    decide(stores, "m1", T0, "sent")
    decide(
        stores,
        "m2",
        T0 + 2000,
        "delayed",
        "quiet_hours",
        detail="22:00-08:00 Asia/Tehran",
        until=T0 + 3_600_000,
    )
    decide(stores, "m3", T0 + 1000, "suppressed", "consent", profile_id="prof_old")
    response = client.get("/v1/profiles/email:Sara@Example.com/decisions", headers=read_headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [d["message_key"] for d in data] == ["m2", "m3", "m1"]
    assert data[0] == {
        "message_key": "m2",
        "journey_id": "abandoned-cart",
        "step_id": "send_email",
        "channel": "email",
        "category": "marketing",
        "at": "2026-01-01T00:00:02.000Z",
        "outcome": "delayed",
        "rule": "quiet_hours",
        "detail": "22:00-08:00 Asia/Tehran",
        "until": "2026-01-01T01:00:00.000Z",
    }
    assert (data[1]["outcome"], data[1]["rule"], data[1]["until"]) == (
        "suppressed",
        "consent",
        None,
    )
    limited = client.get("/v1/profiles/user_id:42/decisions?limit=2", headers=read_headers)
    assert [d["message_key"] for d in limited.json()["data"]] == ["m2", "m3"]


def test_decisions_errors(client: httpx.Client, read_headers: dict[str, str]) -> None:
    assert client.get("/v1/profiles/user_id:9/decisions", headers=read_headers).status_code == 404
    response = client.get("/v1/profiles/user_id:9/decisions?limit=x", headers=read_headers)
    assert (response.status_code, response.json()["location"]) == (400, "limit")


# -- consent -------------------------------------------------------------------------------------


def test_consent_set_and_visible(
    client: httpx.Client,
    read_headers: dict[str, str],
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
    clock: FakeClock,
) -> None:
    sara(profiles)
    assert client.get(CONSENT, headers=read_headers).json() == {"data": []}
    choice = {"channel": "email", "category": "marketing", "subscribed": False}
    response = client.put(CONSENT, json=choice, headers=write_headers)
    assert response.status_code == 200
    assert response.json() == {
        **choice,
        "at": "2026-01-01T00:00:00.000Z",
        "source": "api",
    }
    clock.advance(seconds=1)
    client.put(CONSENT, json={**choice, "category": "*", "channel": "sms"}, headers=write_headers)
    data = client.get(CONSENT, headers=read_headers).json()["data"]
    assert [(c["channel"], c["category"], c["subscribed"]) for c in data] == [
        ("email", "marketing", False),
        ("sms", "*", False),
    ]
    clock.advance(seconds=1)
    client.put(CONSENT, json={**choice, "subscribed": True}, headers=write_headers)
    # What the policy gate reads: the latest choice, under the current profile id.
    assert stores.consents(["prof_sara"])[0] == Consent(
        profile_id="prof_sara",
        channel="email",
        category="marketing",
        subscribed=True,
        at=T0 + 2000,
        source="api",
    )


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"channel": "pigeon", "category": "marketing", "subscribed": False}, "channel"),
        ({"channel": "email", "category": " ", "subscribed": False}, "category"),
        ({"channel": "email", "category": "x" * 101, "subscribed": False}, "category"),
        ({"channel": "email", "category": "a\u0000b", "subscribed": False}, "category"),
        ({"channel": "email", "category": "marketing"}, "subscribed"),
        ({"channel": "email", "category": "marketing", "subscribed": "no"}, "subscribed"),
        ({"channel": "email", "category": "marketing", "subscribed": True, "x": 1}, "x"),
        ([], "body"),
    ],
)
def test_bad_consent_names_the_field(
    client: httpx.Client,
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
    body: Any,
    location: str,
) -> None:
    sara(profiles)
    response = client.put(CONSENT, json=body, headers=write_headers)
    assert response.status_code == 400
    assert response.json()["location"] == location
    assert stores.consents(["prof_sara"]) == []


def test_consent_errors_and_scopes(
    client: httpx.Client, read_headers: dict[str, str], write_headers: dict[str, str]
) -> None:
    choice = {"channel": "email", "category": "marketing", "subscribed": False}
    assert client.put(CONSENT, json=choice, headers=write_headers).status_code == 404
    assert client.get(CONSENT, headers=read_headers).status_code == 404
    assert client.put(CONSENT, json=choice, headers=read_headers).status_code == 403
    assert client.put(CONSENT, json=choice).status_code == 401


# -- inbox ---------------------------------------------------------------------------------------


def item(n: int, profile_id: str = "prof_sara") -> InboxItem:
    return InboxItem(
        id=f"n{n}",
        profile_id=profile_id,
        created_at=T0 + n * 1000,
        subject=f"خبر {n}",
        text="hello",
        data={"url": "/cart"},
    )


def test_inbox_read_and_dismiss(
    client: httpx.Client,
    read_headers: dict[str, str],
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
    clock: FakeClock,
) -> None:
    sara(profiles)
    for n in (1, 2):
        stores.add_inbox(item(n))
    stores.add_inbox(item(3, "prof_old"))
    inbox = "/v1/profiles/user_id:42/inbox"
    data = client.get(inbox, headers=read_headers).json()["data"]
    assert [i["id"] for i in data] == ["n3", "n2", "n1"]
    assert data[1] == {
        "id": "n2",
        "created_at": "2026-01-01T00:00:02.000Z",
        "subject": "خبر 2",
        "text": "hello",
        "data": {"url": "/cart"},
        "read_at": None,
        "dismissed_at": None,
    }
    clock.advance(seconds=10)
    read = client.post(f"{inbox}/n1/read", headers=write_headers)
    assert read.status_code == 200
    assert read.json()["read_at"] == "2026-01-01T00:00:10.000Z"
    dismissed = client.post(f"{inbox}/n3/dismiss", headers=write_headers)
    assert dismissed.json()["dismissed_at"] == "2026-01-01T00:00:10.000Z"
    assert [i["id"] for i in client.get(inbox, headers=read_headers).json()["data"]] == [
        "n2",
        "n1",
    ]
    everything = client.get(f"{inbox}?include_dismissed=true", headers=read_headers).json()
    assert [i["id"] for i in everything["data"]] == ["n3", "n2", "n1"]


def test_inbox_errors(
    client: httpx.Client,
    read_headers: dict[str, str],
    write_headers: dict[str, str],
    profiles: FakeProfiles,
    stores: MemoryJourneyStores,
) -> None:
    sara(profiles)
    stores.add_inbox(item(1, "prof_someone_else"))
    inbox = "/v1/profiles/user_id:42/inbox"
    assert client.post(f"{inbox}/n1/read", headers=write_headers).status_code == 404
    assert client.post(f"{inbox}/nope/dismiss", headers=write_headers).status_code == 404
    assert client.post(f"{inbox}/n1/read", headers=read_headers).status_code == 403
    assert client.post(f"{inbox}/n1/read").status_code == 401
    response = client.get(f"{inbox}?include_dismissed=maybe", headers=read_headers)
    assert (response.status_code, response.json()["location"]) == (400, "include_dismissed")
    assert client.get("/v1/profiles/user_id:9/inbox", headers=read_headers).status_code == 404


# -- dead letters --------------------------------------------------------------------------------


def test_dead_letters_need_admin(
    client: httpx.Client,
    read_headers: dict[str, str],
    write_headers: dict[str, str],
    admin_headers: dict[str, str],
    stores: MemoryJourneyStores,
) -> None:
    queue(stores, "m1")
    event = EventCommand(key="e1", type="track", identifier=("user_id", "42"), timestamp=T0)
    stores.commit(
        JourneyUpdate(outbox=[OutboxEntry(key="e1", command=event, profile_id="p2", due=T0)])
    )
    stores.settle([Settlement(key="m1", status="retry", due=T0 + 1000, error="timeout")])
    stores.settle([Settlement(key="m1", status="dead", error="SMTP 550 mailbox unavailable")])
    stores.settle([Settlement(key="e1", status="dead", error="store down")])
    assert client.get("/v1/outbox/dead").status_code == 401
    for headers in (read_headers, write_headers):
        response = client.get("/v1/outbox/dead", headers=headers)
        assert response.status_code == 403
        assert "needs 'admin'" in response.json()["error"]
    response = client.get("/v1/outbox/dead", headers=admin_headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data == [
        {
            "key": "e1",
            "kind": "event",
            "journey_id": None,
            "profile_id": "p2",
            "due": "2026-01-01T00:00:00.000Z",
            "attempts": 0,
            "last_error": "store down",
        },
        {
            "key": "m1",
            "kind": "send",
            "journey_id": "abandoned-cart",
            "profile_id": "prof_sara",
            "due": "2026-01-01T00:00:01.000Z",
            "attempts": 1,
            "last_error": "SMTP 550 mailbox unavailable",
        },
    ]
    limited = client.get("/v1/outbox/dead?limit=1", headers=admin_headers).json()["data"]
    assert [letter["key"] for letter in limited] == ["e1"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/profiles/user_id:42/decisions",
        "/v1/profiles/user_id:42/consent",
        "/v1/profiles/user_id:42/inbox",
    ],
)
def test_reads_need_an_api_key(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
