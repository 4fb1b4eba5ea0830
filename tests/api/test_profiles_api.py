"""``/v1/profiles/{ref}`` and its events, trait history and merges."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.api.profiles import decode_cursor, encode_cursor
from safar.config import IdentitySettings
from safar.errors import ValidationError
from safar.model.profiles import MergeRecord, Profile, TraitChange
from safar.ports import AudienceUpdate
from safar.stores.memory.audiences import MemoryAudienceStores
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.keys import MemoryKeyStore
from safar.testing import FakeClock
from tests.api.conftest import FakeProfiles, asgi_client, bearer, make_app, track

# 2026-01-01T00:00:00Z, FakeClock's default start.
T0 = 1_767_225_600_000


def sara(profiles: FakeProfiles) -> Profile:
    return profiles.add(
        Profile(
            id="prof_sara",
            identifiers={
                "user_id": ["42"],
                "email": ["sara@example.com"],
                "phone": ["+14155550100"],
                "anonymous_id": ["anon-1", "anon-2"],
            },
            traits={"name": "سارا", "plan": "pro"},
            first_seen=T0,
            last_seen=T0 + 1500,
            merged_from=["prof_anon2"],
        )
    )


def test_profile_by_user_id(
    client: httpx.Client,
    profiles: FakeProfiles,
    audiences: MemoryAudienceStores,
    read_headers: dict[str, str],
) -> None:
    sara(profiles)
    profiles.processed = 17
    # The profile is as current as the slower of the profile and audience processors.
    audiences.commit(AudienceUpdate(after_seq=0, processed_seq=20))
    response = client.get("/v1/profiles/user_id:42", headers=read_headers)
    assert response.status_code == 200
    assert response.json() == {
        "id": "prof_sara",
        "identifiers": {
            "user_id": ["42"],
            "email": ["sara@example.com"],
            "phone": ["+14155550100"],
            "anonymous_id": ["anon-1", "anon-2"],
        },
        "traits": {"name": "سارا", "plan": "pro"},
        "first_seen": "2026-01-01T00:00:00.000Z",
        "last_seen": "2026-01-01T00:00:01.500Z",
        "merged_from": ["prof_anon2"],
        "segments": [],
        "processed_seq": 17,
    }


def test_a_profile_is_as_current_as_the_slowest_audience_partition(
    keys: MemoryKeyStore,
    events: MemoryEventLog,
    profiles: FakeProfiles,
    clock: FakeClock,
    read_headers: dict[str, str],
) -> None:
    """On scale-out the partition owners keep audiences, each at its own cursor."""
    audiences = MemoryAudienceStores()
    app = make_app(
        keys=keys, events=events, profiles=profiles, clock=clock, audiences=audiences, partitions=3
    )
    sara(profiles)
    profiles.processed = 17
    for partition, seq in enumerate((30, 12, 25)):
        audiences.commit(AudienceUpdate(after_seq=0, processed_seq=seq, partition=partition))
    with asgi_client(app) as client:
        response = client.get("/v1/profiles/user_id:42", headers=read_headers)
    assert response.json()["processed_seq"] == 12


@pytest.mark.parametrize(
    "ref",
    [
        "email:sara@example.com",
        "email:Sara@Example.COM",
        "email:%20SARA@example.com%20",
        "email%3ASara%40Example.com",
        "Email:sara@example.com",
        "phone:+1 415-555-0100",
        "phone:(415) 555-0100",
        "phone:+۱ ۴۱۵ ۵۵۵ ۰۱۰۰",
        "phone:0014155550100",
        "anonymous_id:anon-2",
        "anonymousId:anon-2",
        "userId:42",
    ],
)
def test_ref_is_decoded_and_normalized(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str], ref: str
) -> None:
    sara(profiles)
    response = client.get(f"/v1/profiles/{ref}", headers=read_headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "prof_sara"


def test_phone_without_country_code_uses_the_configured_one(
    clock: FakeClock, keys: MemoryKeyStore, events: MemoryEventLog, profiles: FakeProfiles
) -> None:
    profiles.add(
        Profile(
            id="p", identifiers={"phone": ["+989123456789"]}, traits={}, first_seen=0, last_seen=0
        )
    )
    _, secret = keys.create_api_key("reader", "read")
    identity = IdentitySettings(default_country_code="98")
    app = make_app(keys=keys, events=events, profiles=profiles, clock=clock, identity=identity)
    with asgi_client(app) as client:
        response = client.get("/v1/profiles/phone:0912 345 6789", headers=bearer(secret))
    assert response.status_code == 200
    assert response.json()["id"] == "p"


@pytest.mark.parametrize("ref", ["email:not-an-email", "phone:12", "user_id:null", "user_id:%20"])
def test_value_that_never_identifies_anyone_is_400(
    client: httpx.Client, read_headers: dict[str, str], ref: str
) -> None:
    response = client.get(f"/v1/profiles/{ref}", headers=read_headers)
    assert response.status_code == 400
    assert response.json()["location"] == "ref"
    assert "never identifies anyone" in response.json()["error"]


def test_value_containing_colon(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str]
) -> None:
    profiles.add(
        Profile(id="p", identifiers={"crm_id": ["acct:7"]}, traits={}, first_seen=0, last_seen=0)
    )
    assert client.get("/v1/profiles/crm_id:acct:7", headers=read_headers).json()["id"] == "p"


def test_unknown_profile_is_404_naming_the_ref(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str]
) -> None:
    sara(profiles)
    for suffix in ("", "/events", "/traits/history", "/merges"):
        response = client.get(
            f"/v1/profiles/email:Nobody@Example.com{suffix}", headers=read_headers
        )
        assert response.status_code == 404
        assert "email:nobody@example.com" in response.json()["error"]


@pytest.mark.parametrize("ref", ["sara", ":42", "user_id:", "user%20id:42", "9x:1"])
@pytest.mark.parametrize("suffix", ["", "/events", "/traits/history", "/merges"])
def test_malformed_ref_is_400(
    client: httpx.Client, read_headers: dict[str, str], ref: str, suffix: str
) -> None:
    response = client.get(f"/v1/profiles/{ref}{suffix}", headers=read_headers)
    assert response.status_code == 400
    body = response.json()
    assert body["location"] == "ref"
    assert "user_id" in body["error"]


def seed_timeline(
    clock: FakeClock, events: MemoryEventLog, profiles: FakeProfiles, pattern: list[int]
) -> list[str]:
    """Append one event per entry: 0 Sara's user id, 1 her anonymous id, 2 someone else.

    Returns Sara's messageIds, newest first.
    """
    sara(profiles)
    mine: list[str] = []
    for n, who in enumerate(pattern):
        clock.advance(ms=1)
        event = (
            track(clock, n, user_id="42")
            if who == 0
            else track(clock, n, anonymous_id="anon-1")
            if who == 1
            else track(clock, n, user_id="someone-else")
        )
        seq = events.append([event]).last_seq
        if who != 2:
            profiles.add_events("prof_sara", [seq])
            mine.append(event.message_id)
    return mine[::-1]


def read_all_pages(client: httpx.Client, headers: dict[str, str], limit: int) -> list[list[Any]]:
    pages: list[list[Any]] = []
    url = f"/v1/profiles/user_id:42/events?limit={limit}"
    while True:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["data"])
        if body["next"] is None:
            return pages
        assert len(pages) <= 1000, "pagination does not end"
        url = f"/v1/profiles/user_id:42/events?limit={limit}&cursor={body['next']}"


@settings(max_examples=40, deadline=None)
@given(pattern=st.lists(st.integers(0, 2), max_size=40), limit=st.integers(1, 12))
def test_pagination_visits_every_event_once_newest_first(pattern: list[int], limit: int) -> None:
    clock = FakeClock()
    keys, events, profiles = MemoryKeyStore(clock), MemoryEventLog(clock), FakeProfiles()
    _, secret = keys.create_api_key("reader", "read")
    expected = seed_timeline(clock, events, profiles, pattern)
    app = make_app(keys=keys, events=events, profiles=profiles, clock=clock)
    with asgi_client(app) as client:
        pages = read_all_pages(client, bearer(secret), limit)
    seen = [item["messageId"] for page in pages for item in page]
    assert seen == expected
    assert all(len(page) == limit for page in pages[:-1])
    # The extra-row lookahead means a full last page is not followed by an empty one.
    assert len(pages) == max(1, -(-len(expected) // limit))


def test_event_items_are_segment_payloads(
    client: httpx.Client,
    clock: FakeClock,
    events: MemoryEventLog,
    profiles: FakeProfiles,
    read_headers: dict[str, str],
) -> None:
    seed_timeline(clock, events, profiles, [0, 1])
    response = client.get("/v1/profiles/email:sara@example.com/events", headers=read_headers)
    body = response.json()
    assert body["next"] is None
    newest, oldest = body["data"]
    assert newest["messageId"] == "m1"
    assert newest["type"] == "track"
    assert newest["event"] == "Viewed Product"
    assert newest["anonymousId"] == "anon-1"
    assert oldest["userId"] == "42"
    assert oldest["timestamp"] == "2026-01-01T00:00:00.001Z"


def test_default_limit_is_50(
    client: httpx.Client,
    clock: FakeClock,
    events: MemoryEventLog,
    profiles: FakeProfiles,
    read_headers: dict[str, str],
) -> None:
    seed_timeline(clock, events, profiles, [0] * 51)
    body = client.get("/v1/profiles/user_id:42/events", headers=read_headers).json()
    assert len(body["data"]) == 50
    assert body["next"] is not None


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "1.5", "", "١٠", "5 "])
@pytest.mark.parametrize("suffix", ["/events", "/traits/history"])
def test_bad_limit_is_400(
    client: httpx.Client,
    profiles: FakeProfiles,
    read_headers: dict[str, str],
    limit: str,
    suffix: str,
) -> None:
    sara(profiles)
    response = client.get(
        f"/v1/profiles/user_id:42{suffix}", params={"limit": limit}, headers=read_headers
    )
    assert response.status_code == 400
    assert response.json()["location"] == "limit"
    assert "1 to 1000" in response.json()["error"]


def test_limit_1000_is_allowed(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str]
) -> None:
    sara(profiles)
    response = client.get("/v1/profiles/user_id:42/events?limit=1000", headers=read_headers)
    assert response.status_code == 200
    assert response.json() == {"data": [], "next": None}


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor", ["", "nope", "!!!!", b64("seq:abc"), b64("seq:0"), b64("seq:-3"), b64("7"), "é"]
)
def test_bad_cursor_is_400(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str], cursor: str
) -> None:
    sara(profiles)
    response = client.get(
        "/v1/profiles/user_id:42/events", params={"cursor": cursor}, headers=read_headers
    )
    assert response.status_code == 400
    assert response.json()["location"] == "cursor"


@given(st.integers(1, 2**63))
def test_cursor_round_trip(seq: int) -> None:
    cursor = encode_cursor(seq)
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor) == seq


def test_cursor_decoding_rejects_padding_garbage() -> None:
    with pytest.raises(ValidationError):
        decode_cursor(encode_cursor(5) + "$")


def test_trait_history_newest_first_with_limit(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str]
) -> None:
    sara(profiles)
    for seq, plan in enumerate(["free", "pro", "team"], start=1):
        change = TraitChange(
            key="plan", value=plan, timestamp=T0 + seq, message_id=f"m{seq}", seq=seq
        )
        profiles.add_trait_change("prof_sara", change)
    response = client.get("/v1/profiles/user_id:42/traits/history?limit=2", headers=read_headers)
    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "key": "plan",
                "value": "team",
                "timestamp": "2026-01-01T00:00:00.003Z",
                "message_id": "m3",
                "seq": 3,
            },
            {
                "key": "plan",
                "value": "pro",
                "timestamp": "2026-01-01T00:00:00.002Z",
                "message_id": "m2",
                "seq": 2,
            },
        ]
    }


def test_merges_done_and_refused(
    client: httpx.Client, profiles: FakeProfiles, read_headers: dict[str, str]
) -> None:
    sara(profiles)
    done = MergeRecord(
        into="prof_sara",
        other="prof_anon2",
        reason="identify linked anonymous_id",
        refused=False,
        message_id="m1",
        at=T0,
    )
    refused = MergeRecord(
        into="prof_sara",
        other="prof_omid",
        reason="user_id limit 1 exceeded",
        refused=True,
        message_id="m2",
        at=T0 + 60_000,
    )
    profiles.add_merge("prof_sara", done)
    profiles.add_merge("prof_sara", refused)
    response = client.get("/v1/profiles/anonymous_id:anon-2/merges", headers=read_headers)
    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "into": "prof_sara",
                "other": "prof_anon2",
                "refused": False,
                "reason": "identify linked anonymous_id",
                "message_id": "m1",
                "at": "2026-01-01T00:00:00.000Z",
            },
            {
                "into": "prof_sara",
                "other": "prof_omid",
                "refused": True,
                "reason": "user_id limit 1 exceeded",
                "message_id": "m2",
                "at": "2026-01-01T00:01:00.000Z",
            },
        ]
    }
