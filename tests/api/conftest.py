"""Fixtures for the management API: real in-memory key store, event log and journey stores, a
fake profile reader, and signed links with a fixed secret.

The profile reader is a fake so tests can state exactly which profile holds which events,
trait changes and merges, without running the profile processor.

Requests go through :func:`asgi_client` rather than ``starlette.testclient``: Starlette 1.x warns
when its test client runs on ``httpx`` instead of ``httpx2``, and warnings are errors here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.applications import Starlette
from starlette.types import ASGIApp

from safar.api.errors import EXCEPTION_HANDLERS
from safar.api.routes import management_routes
from safar.config import IdentitySettings
from safar.model.events import Event
from safar.model.profiles import Identifier, MergeRecord, Profile, TraitChange
from safar.ports import Clock
from safar.runtime.links import Links
from safar.stores.memory.audiences import MemoryAudienceStores
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.stores.memory.keys import MemoryKeyStore
from safar.testing import FakeClock
from safar.testing.journeys import JourneyHarness

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEMPLATES = EXAMPLES / "templates"
LINK_SECRET = b"test-link-secret-0123456789abcdef"


class _PortalTransport(httpx.BaseTransport):
    """Runs each request through httpx's ASGI transport on a portal's event loop."""

    def __init__(self, app: ASGIApp, portal: BlockingPortal) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._portal.call(self._send, request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content)


@contextmanager
def asgi_client(app: ASGIApp) -> Iterator[httpx.Client]:
    """A synchronous httpx client calling ``app`` in-process (no lifespan events)."""
    with (
        start_blocking_portal() as portal,
        httpx.Client(
            transport=_PortalTransport(app, portal), base_url="http://testserver"
        ) as client,
    ):
        yield client


def add_sara(profiles: FakeProfiles, at: int) -> Profile:
    """Sara: user 42 with an email, into whose profile ``prof_old`` was merged."""
    return profiles.add(
        Profile(
            id="prof_sara",
            identifiers={"user_id": ["42"], "email": ["sara@example.com"]},
            traits={},
            first_seen=at,
            last_seen=at,
            merged_from=["prof_old"],
        )
    )


class FakeProfiles:
    """A :class:`safar.ports.ProfileReader` over plain dicts that tests fill directly."""

    def __init__(self) -> None:
        self.processed = 0
        self._profiles: dict[str, Profile] = {}
        self._index: dict[Identifier, str] = {}
        self._timelines: dict[str, list[int]] = {}
        self._traits: dict[str, list[TraitChange]] = {}
        self._merges: dict[str, list[MergeRecord]] = {}

    def add(self, profile: Profile) -> Profile:
        self._profiles[profile.id] = profile
        for kind, values in profile.identifiers.items():
            for value in values:
                self._index[kind, value] = profile.id
        return profile

    def add_events(self, profile_id: str, seqs: list[int]) -> None:
        self._timelines.setdefault(profile_id, []).extend(seqs)

    def add_trait_change(self, profile_id: str, change: TraitChange) -> None:
        self._traits.setdefault(profile_id, []).append(change)

    def add_merge(self, profile_id: str, record: MergeRecord) -> None:
        self._merges.setdefault(profile_id, []).append(record)

    def processed_seq(self) -> int:
        return self.processed

    def find(self, identifier: Identifier) -> Profile | None:
        profile_id = self._index.get(identifier)
        return None if profile_id is None else self._profiles[profile_id]

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        found = {identifier: self.find(identifier) for identifier in identifiers}
        return {identifier: profile for identifier, profile in found.items() if profile}

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        seqs = sorted(self._timelines.get(profile_id, []), reverse=True)
        return [seq for seq in seqs if before_seq is None or seq < before_seq][:limit]

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        changes = self._traits.get(profile_id, [])
        return sorted(changes, key=lambda change: change.seq, reverse=True)[:limit]

    def merges(self, profile_id: str) -> list[MergeRecord]:
        return list(self._merges.get(profile_id, []))


def track(
    clock: Clock,
    n: int,
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    name: str = "Viewed Product",
) -> Event:
    """A track event whose messageId is ``m<n>``."""
    body = {"type": "track", "event": name, "properties": {"n": n}}
    return Event(
        source_id="src_test",
        message_id=f"m{n}",
        type="track",
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        timestamp=clock.now_ms(),
        received_at=clock.now_ms(),
        body=msgspec.json.encode(body),
    )


def make_app(
    *,
    keys: MemoryKeyStore,
    events: MemoryEventLog,
    profiles: FakeProfiles,
    clock: Clock,
    identity: IdentitySettings | None = None,
    stores: MemoryJourneyStores | None = None,
    links: Links | None = None,
    templates_dir: Path | None = TEMPLATES,
    audiences: MemoryAudienceStores | None = None,
    partitions: int = 0,
) -> Starlette:
    """The management app; journey, run, outbox and delivery routes on ``stores`` (default: new
    empty ones), link routes with ``links`` (default: signed with :data:`LINK_SECRET`), audience
    routes on ``audiences`` (default: new empty ones), kept by ``partitions`` work-feed
    partitions (0: none)."""
    stores = stores if stores is not None else MemoryJourneyStores()
    audiences = audiences if audiences is not None else MemoryAudienceStores()
    routes = management_routes(
        keys=keys,
        events=events,
        profiles=profiles,
        clock=clock,
        identity=identity,
        journeys=stores,
        runs=stores,
        outbox=stores,
        delivery=stores,
        links=links or Links(LINK_SECRET, "http://testserver"),
        templates_dir=templates_dir,
        audience_catalog=audiences,
        audiences=audiences,
        partitions=partitions,
    )
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


def harness_app(h: JourneyHarness) -> Starlette:
    """The management app over a journey harness's stores (profiles kept by its processors,
    audiences by its audience processor), for tests that run the real pipeline."""
    s = h.stores
    routes = management_routes(
        keys=s.keys,
        events=s.events,
        profiles=s.profiles,
        clock=h.clock,
        journeys=s.journeys,
        runs=s.runs,
        outbox=s.outbox,
        delivery=s.delivery,
        audience_catalog=s.audience_catalog,
        audiences=s.audiences,
    )
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def keys(clock: FakeClock) -> MemoryKeyStore:
    return MemoryKeyStore(clock)


@pytest.fixture
def events(clock: FakeClock) -> MemoryEventLog:
    return MemoryEventLog(clock)


@pytest.fixture
def profiles() -> FakeProfiles:
    return FakeProfiles()


@pytest.fixture
def stores() -> MemoryJourneyStores:
    return MemoryJourneyStores()


@pytest.fixture
def audiences() -> MemoryAudienceStores:
    return MemoryAudienceStores()


@pytest.fixture
def links() -> Links:
    return Links(LINK_SECRET, "http://testserver")


@pytest.fixture
def app(
    keys: MemoryKeyStore,
    events: MemoryEventLog,
    profiles: FakeProfiles,
    clock: FakeClock,
    stores: MemoryJourneyStores,
    links: Links,
    audiences: MemoryAudienceStores,
) -> Starlette:
    return make_app(
        keys=keys,
        events=events,
        profiles=profiles,
        clock=clock,
        stores=stores,
        links=links,
        audiences=audiences,
    )


@pytest.fixture
def client(app: Starlette) -> Iterator[httpx.Client]:
    with asgi_client(app) as test_client:
        yield test_client


@pytest.fixture
def read_headers(keys: MemoryKeyStore) -> dict[str, str]:
    _, secret = keys.create_api_key("reader", "read")
    return bearer(secret)


@pytest.fixture
def write_headers(keys: MemoryKeyStore) -> dict[str, str]:
    _, secret = keys.create_api_key("writer", "write")
    return bearer(secret)


@pytest.fixture
def admin_headers(keys: MemoryKeyStore) -> dict[str, str]:
    _, secret = keys.create_api_key("admin", "admin")
    return bearer(secret)
