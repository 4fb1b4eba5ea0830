"""Backends for the contract suites: each suite runs once per adapter, written against the port.

A :class:`Backend` opens adapters of one kind on one storage and can stop them the way a process
does. To run the suites against another adapter (PostgreSQL, …), subclass it and add a
``pytest.param`` to :data:`EVENT_LOG_BACKENDS` / :data:`KEY_STORE_BACKENDS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safar.model.messages import Message
from safar.model.runs import (
    EntryRecord,
    Instance,
    InstanceStatus,
    OutboxEntry,
    SendCommand,
    Visit,
)
from safar.ports import (
    AudienceCatalog,
    AudienceStore,
    DeliveryStore,
    EventLog,
    JourneyStore,
    KeyStore,
    LeaseStore,
    Outbox,
    ProfileStore,
    RunStore,
)
from safar.stores.memory.audiences import MemoryAudienceStores
from safar.stores.memory.events import MemoryEventLog
from safar.stores.memory.journeys import MemoryJourneyStores
from safar.stores.memory.keys import MemoryKeyStore
from safar.stores.memory.leases import MemoryLeaseStore
from safar.stores.memory.profiles import MemoryProfileStore
from safar.stores.sqlite.audiences import SqliteAudienceCatalog, SqliteAudienceStore
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.delivery import SqliteDeliveryStore
from safar.stores.sqlite.events import SqliteEventLog
from safar.stores.sqlite.journeys import SqliteJourneyStore
from safar.stores.sqlite.keys import SqliteKeyStore
from safar.stores.sqlite.leases import SqliteLeaseStore
from safar.stores.sqlite.outbox import SqliteOutbox
from safar.stores.sqlite.profiles import SqliteProfileStore
from safar.stores.sqlite.runs import SqliteRunStore
from safar.testing import FakeClock
from tests.services import postgres_schema_url

DAY_MS = 24 * 3600 * 1000


@dataclass
class JourneyStores:
    """The four journey ports of one backend, as one process opens them (one object may
    implement several)."""

    journeys: JourneyStore
    runs: RunStore
    outbox: Outbox
    delivery: DeliveryStore


@dataclass
class AudienceStores:
    """The two audience ports of one backend, as one process opens them."""

    catalog: AudienceCatalog
    store: AudienceStore


class Backend:
    """Opens adapters of one kind on one storage (a directory for file-backed ones)."""

    #: Whether an adapter opened later sees what earlier ones stored (a restart, another process).
    #: In-memory adapters cannot be reopened: they hand back the one instance.
    shares_storage = True

    def __init__(self, directory: Path, clock: FakeClock) -> None:
        self.directory = directory
        self.clock = clock

    def event_log(self, *, dedupe_window_ms: int = DAY_MS) -> EventLog:
        """An event log on this storage, opened as a new process (or a restarted one) would."""
        raise NotImplementedError

    def key_store(self) -> KeyStore:
        """A key store on this storage, opened as a new process would."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop every adapter opened so far cleanly, as a process does when it exits."""

    def stored_bytes(self) -> bytes:
        """Everything this backend has stored, to check that a secret never reaches storage."""
        raise NotImplementedError

    def fail_appends_of(self, message_id: str) -> bool:
        """Make the storage reject any append holding ``message_id``; False if not supported."""
        return False

    def journey_stores(self) -> JourneyStores:
        """The journey stores on this storage, opened as a new process would."""
        raise NotImplementedError

    def fail_commits_visiting(self, instance_id: str) -> bool:
        """Make the storage reject, half-way, a run commit holding a visit of ``instance_id``;
        False if not supported."""
        return False

    def fail_settles_sending(self, message_key: str) -> bool:
        """Make the storage reject, half-way, a settle recording a send of ``message_key``;
        False if not supported."""
        return False

    def audience_stores(self) -> AudienceStores:
        """The audience stores on this storage, opened as a new process would."""
        raise NotImplementedError

    def fail_commits_emitting(self, message_id: str) -> bool:
        """Make the storage reject, half-way, an audience commit emitting ``message_id``;
        False if not supported."""
        return False

    def lease_store(self) -> LeaseStore:
        """A lease store on this storage, opened as a new process would."""
        raise NotImplementedError

    def profile_store(self) -> ProfileStore:
        """A profile store on this storage, opened as a new process would."""
        raise NotImplementedError


class MemoryBackend(Backend):
    shares_storage = False

    def __init__(self, directory: Path, clock: FakeClock) -> None:
        super().__init__(directory, clock)
        self._events: MemoryEventLog | None = None
        self._keys: MemoryKeyStore | None = None
        self._journeys: MemoryJourneyStores | None = None
        self._audiences: MemoryAudienceStores | None = None
        self._leases = MemoryLeaseStore()
        self._profiles: MemoryProfileStore | None = None

    def event_log(self, *, dedupe_window_ms: int = DAY_MS) -> EventLog:
        if self._events is None:
            self._events = MemoryEventLog(self.clock, dedupe_window_ms=dedupe_window_ms)
        return self._events

    def key_store(self) -> KeyStore:
        if self._keys is None:
            self._keys = MemoryKeyStore(self.clock)
        return self._keys

    def stored_bytes(self) -> bytes:
        return repr([vars(store) for store in (self._events, self._keys) if store]).encode()

    def journey_stores(self) -> JourneyStores:
        if self._journeys is None:
            self._journeys = MemoryJourneyStores()
        one = self._journeys
        return JourneyStores(journeys=one, runs=one, outbox=one, delivery=one)

    def audience_stores(self) -> AudienceStores:
        if self._audiences is None:
            self._audiences = MemoryAudienceStores()
        return AudienceStores(catalog=self._audiences, store=self._audiences)

    def lease_store(self) -> LeaseStore:
        return self._leases

    def profile_store(self) -> ProfileStore:
        if self._profiles is None:
            self._profiles = MemoryProfileStore()
        return self._profiles


class SqliteBackend(Backend):
    """Each adapter gets its own :class:`Database`, i.e. its own connections, like a process."""

    def __init__(self, directory: Path, clock: FakeClock, *, flush_threshold: int = 50_000) -> None:
        super().__init__(directory, clock)
        self.path = directory / "safar.db"
        self._flush_threshold = flush_threshold
        self._databases: list[Database] = []
        self._event_logs: list[SqliteEventLog] = []

    def _database(self) -> Database:
        db = Database(self.path)
        self._databases.append(db)
        return db

    def event_log(self, *, dedupe_window_ms: int = DAY_MS) -> EventLog:
        log = SqliteEventLog(
            self._database(),
            self.clock,
            dedupe_window_ms=dedupe_window_ms,
            flush_threshold=self._flush_threshold,
        )
        self._event_logs.append(log)
        return log

    def key_store(self) -> KeyStore:
        return SqliteKeyStore(self._database(), self.clock)

    def shutdown(self) -> None:
        for log in self._event_logs:
            log.close()
        for db in self._databases:
            db.close()
        self._event_logs.clear()
        self._databases.clear()

    def stored_bytes(self) -> bytes:
        return b"".join(path.read_bytes() for path in sorted(self.directory.glob("safar.db*")))

    def journey_stores(self) -> JourneyStores:
        db = self._database()
        return JourneyStores(
            journeys=SqliteJourneyStore(db),
            runs=SqliteRunStore(db),
            outbox=SqliteOutbox(db),
            delivery=SqliteDeliveryStore(db),
        )

    def fail_commits_visiting(self, instance_id: str) -> bool:
        self.journey_stores()  # the tables exist before the trigger
        return self._fail_inserts("journey_visits", f"NEW.instance_id = '{instance_id}'")

    def fail_settles_sending(self, message_key: str) -> bool:
        self.journey_stores()
        return self._fail_inserts("journey_sends", f"NEW.message_key = '{message_key}'")

    def audience_stores(self) -> AudienceStores:
        db = self._database()
        return AudienceStores(catalog=SqliteAudienceCatalog(db), store=SqliteAudienceStore(db))

    def lease_store(self) -> LeaseStore:
        return SqliteLeaseStore(self._database())

    def profile_store(self) -> ProfileStore:
        return SqliteProfileStore(self._database())

    def fail_commits_emitting(self, message_id: str) -> bool:
        self.audience_stores()
        return self._fail_inserts("audience_emits", f"NEW.message_id = '{message_id}'")

    def _fail_inserts(self, table: str, condition: str) -> bool:
        with self._database().write() as conn:
            conn.execute(
                f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} WHEN {condition}"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        return True

    def fail_appends_of(self, message_id: str) -> bool:
        db = self._database()
        with db.write() as conn:
            conn.execute(
                "CREATE TRIGGER fail_append BEFORE INSERT ON event_segments"
                f" WHEN instr(NEW.data, CAST('{message_id}' AS BLOB)) > 0"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        return True


class PostgresBackend(Backend):
    """Each backend is a fresh schema on the test server; each adapter gets its own pool, like a
    process. Adapters are imported when first opened, so the other suites run without them."""

    def __init__(self, directory: Path, clock: FakeClock) -> None:
        super().__init__(directory, clock)
        self.url = postgres_schema_url()
        self._databases: list[Any] = []
        self._event_logs: list[Any] = []

    def _database(self) -> Any:
        from safar.stores.postgres.db import PgDatabase

        db = PgDatabase(self.url, max_size=2, name="contract")
        self._databases.append(db)
        return db

    def event_log(self, *, dedupe_window_ms: int = DAY_MS) -> EventLog:
        from safar.stores.postgres.events import PgEventLog

        log = PgEventLog(self._database(), self.clock, dedupe_window_ms=dedupe_window_ms)
        self._event_logs.append(log)
        return log

    def key_store(self) -> KeyStore:
        from safar.stores.postgres.keys import PgKeyStore

        return PgKeyStore(self._database(), self.clock)

    def shutdown(self) -> None:
        for log in self._event_logs:
            log.close()
        for db in self._databases:
            db.close()
        self._event_logs.clear()
        self._databases.clear()

    def stored_bytes(self) -> bytes:
        db = self._database()
        with db.read() as conn:
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = current_schema()"
                )
            ]
            rows = [
                text
                for table in tables
                for (text,) in conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" AS t')
            ]
        return "\n".join(rows).encode()

    def journey_stores(self) -> JourneyStores:
        from safar.stores.postgres.delivery import PgDeliveryStore
        from safar.stores.postgres.journeys import PgJourneyStore
        from safar.stores.postgres.outbox import PgOutbox
        from safar.stores.postgres.runs import PgRunStore

        db = self._database()
        return JourneyStores(
            journeys=PgJourneyStore(db),
            runs=PgRunStore(db),
            outbox=PgOutbox(db),
            delivery=PgDeliveryStore(db),
        )

    def audience_stores(self) -> AudienceStores:
        from safar.stores.postgres.audiences import PgAudienceCatalog, PgAudienceStore

        db = self._database()
        return AudienceStores(catalog=PgAudienceCatalog(db), store=PgAudienceStore(db))

    def lease_store(self) -> LeaseStore:
        from safar.stores.postgres.leases import PgLeaseStore

        return PgLeaseStore(self._database())

    def profile_store(self) -> ProfileStore:
        from safar.stores.postgres.profiles import PgProfileStore

        return PgProfileStore(self._database())

    def fail_appends_of(self, message_id: str) -> bool:
        self.event_log()
        return self._fail_inserts("events", f"NEW.message_id = '{message_id}'")

    def fail_commits_visiting(self, instance_id: str) -> bool:
        self.journey_stores()
        return self._fail_inserts("journey_visits", f"NEW.instance_id = '{instance_id}'")

    def fail_settles_sending(self, message_key: str) -> bool:
        self.journey_stores()
        return self._fail_inserts("journey_sends", f"NEW.message_key = '{message_key}'")

    def fail_commits_emitting(self, message_id: str) -> bool:
        self.audience_stores()
        return self._fail_inserts("audience_emits", f"NEW.message_id = '{message_id}'")

    def _fail_inserts(self, table: str, condition: str) -> bool:
        with self._database().write() as conn:
            conn.execute(
                f"CREATE FUNCTION fail_{table}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN IF {condition} THEN RAISE EXCEPTION 'injected failure'; END IF;"
                " RETURN NEW; END $$"
            )
            conn.execute(
                f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}"
                f" FOR EACH ROW EXECUTE FUNCTION fail_{table}()"
            )
        return True


EVENT_LOG_BACKENDS = [
    pytest.param(MemoryBackend, id="memory"),
    pytest.param(SqliteBackend, id="sqlite"),
    # Flushes dedupe keys to the generation tables after nearly every append, so the suites
    # exercise the on-disk half of deduplication, not only the in-process one.
    pytest.param(functools.partial(SqliteBackend, flush_threshold=3), id="sqlite-flush3"),
    pytest.param(PostgresBackend, id="postgres", marks=pytest.mark.postgres),
]
KEY_STORE_BACKENDS = [
    pytest.param(MemoryBackend, id="memory"),
    pytest.param(SqliteBackend, id="sqlite"),
    pytest.param(PostgresBackend, id="postgres", marks=pytest.mark.postgres),
]

BackendFactory = Callable[[], Backend]


def _fresh_backends(
    kind: Callable[[Path, FakeClock], Backend], root: Path, clock: FakeClock
) -> Iterator[BackendFactory]:
    """A factory of backends of ``kind``, each in a new directory under ``root``; all are shut
    down when the test ends."""
    made: list[Backend] = []

    def make() -> Backend:
        directory = root / f"backend-{len(made)}"
        directory.mkdir(parents=True)
        backend = kind(directory, clock)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.shutdown()


@pytest.fixture(params=EVENT_LOG_BACKENDS)
def make_event_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[BackendFactory]:
    """Makes fresh, empty backends, for tests (hypothesis) that need a new one per example."""
    yield from _fresh_backends(request.param, tmp_path / "events", clock)


@pytest.fixture
def event_backend(make_event_backend: BackendFactory) -> Backend:
    return make_event_backend()


@pytest.fixture
def event_log(event_backend: Backend) -> EventLog:
    return event_backend.event_log()


@pytest.fixture(params=KEY_STORE_BACKENDS)
def key_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Backend]:
    backend: Backend = request.param(tmp_path, clock)
    yield backend
    backend.shutdown()


@pytest.fixture
def key_store(key_backend: Backend) -> KeyStore:
    return key_backend.key_store()


JOURNEY_BACKENDS = [
    pytest.param(MemoryBackend, id="memory"),
    pytest.param(SqliteBackend, id="sqlite"),
    pytest.param(PostgresBackend, id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=JOURNEY_BACKENDS)
def make_journey_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[BackendFactory]:
    """Makes fresh, empty backends for the journey and audience suites (hypothesis needs one
    per example)."""
    yield from _fresh_backends(request.param, tmp_path / "journeys", clock)


@pytest.fixture
def journey_backend(make_journey_backend: BackendFactory) -> Backend:
    return make_journey_backend()


@pytest.fixture
def stores(journey_backend: Backend) -> JourneyStores:
    return journey_backend.journey_stores()


@pytest.fixture(params=KEY_STORE_BACKENDS)
def lease_backend(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Backend]:
    backend: Backend = request.param(tmp_path, clock)
    yield backend
    backend.shutdown()


@pytest.fixture
def audience_backend(make_journey_backend: BackendFactory) -> Backend:
    return make_journey_backend()


@pytest.fixture
def audiences(audience_backend: Backend) -> AudienceStores:
    return audience_backend.audience_stores()


# -- Builders for the journey suites ----------------------------------------------------------


def instance(
    id_: str,
    profile_id: str = "p1",
    *,
    journey_id: str = "welcome",
    version: int = 1,
    status: InstanceStatus = "active",
    entered_at: int = 0,
    wake_at: int | None = None,
    step: str = "start",
    context: dict[str, Any] | None = None,
) -> Instance:
    return Instance(
        id=id_,
        journey_id=journey_id,
        version=version,
        profile_id=profile_id,
        identifier=("user_id", f"u-{profile_id}"),
        status=status,
        step=step,
        entered_at=entered_at,
        entry_key=f"m-{id_}",
        context=context if context is not None else {},
        wake_at=wake_at,
    )


def outbox_entry(key: str, profile_id: str = "p1", *, due: int = 0) -> OutboxEntry:
    message = Message(
        key=key,
        journey_id="welcome",
        version=1,
        step_id="send_1",
        instance_id=f"in-{key}",
        profile_id=profile_id,
        identifier=("user_id", f"u-{profile_id}"),
        channel="email",
        template="welcome",
        category="marketing",
        priority=50,
        created_at=due,
        context={"journey": {"plan": "pro", "name": "سارا"}},
    )
    return OutboxEntry(
        key=key, command=SendCommand(message=message), profile_id=profile_id, due=due
    )


def entry_record(profile_id: str, journey_id: str = "welcome", *, entries: int = 1) -> EntryRecord:
    return EntryRecord(
        journey_id=journey_id,
        profile_id=profile_id,
        entries=entries,
        active=1,
        last_entered_at=entries * 1000,
    )


def visit(instance_id: str, at: int, step: str = "start", outcome: str = "entered") -> Visit:
    return Visit(
        instance_id=instance_id, journey_id="welcome", version=1, step=step, at=at, outcome=outcome
    )
