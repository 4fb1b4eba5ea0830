"""The profile processor: the event log folded into profiles, through real stores."""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safar.config import IdentitySettings
from safar.core.identity import IdentityRules, edge_key, extract
from safar.core.partition import partition
from safar.core.traits import replay, values
from safar.errors import StoreError
from safar.model.events import AppendResult, Event
from safar.model.profiles import Edge, Identifier, Profile, ProfileUpdate, TraitWrite
from safar.ports import ProfileStore
from safar.runtime.profiler import ProfileProcessor, time_ordered_id
from safar.stores.memory.profiles import MemoryProfileStore
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.profiles import SqliteProfileStore
from safar.testing import FakeClock, wait_until

U1: Identifier = ("user_id", "u1")
U2: Identifier = ("user_id", "u2")
A1: Identifier = ("anonymous_id", "a1")
A2: Identifier = ("anonymous_id", "a2")


class ListLog:
    """An :class:`~safar.ports.EventLog` in a list that never deduplicates, so tests can replay
    the same message twice (as after the dedupe window)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def append(self, events: Sequence[Event]) -> AppendResult:
        for event in events:
            self.events.append(msgspec.structs.replace(event, seq=len(self.events) + 1))
        return AppendResult(len(events), 0, len(self.events))

    def read(self, after_seq: int, limit: int) -> list[Event]:
        return self.events[after_seq : after_seq + limit]

    def get(self, seqs: Collection[int]) -> list[Event]:
        return [self.events[s - 1] for s in sorted(set(seqs)) if 0 < s <= len(self.events)]

    def last_seq(self) -> int:
        return len(self.events)

    def count(self) -> int:
        return len(self.events)


_mids = itertools.count(1)


def ev(
    kind: str = "track",
    *,
    user: str | None = None,
    anon: str | None = None,
    ts: int = 1_000,
    mid: str | None = None,
    **body: Any,
) -> Event:
    return Event(
        source_id="web",
        message_id=mid or f"m{next(_mids)}",
        type=kind,
        user_id=user,
        anonymous_id=anon,
        timestamp=ts,
        received_at=ts,
        body=msgspec.json.encode(body),
    )


def counter_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"p{next(counter)}"


@contextmanager
def open_store(kind: str) -> Iterator[ProfileStore]:
    if kind == "memory":
        yield MemoryProfileStore()
        return
    # A file, not ":memory:": each thread gets its own connection, so its own memory database.
    with tempfile.TemporaryDirectory() as directory:
        db = Database(Path(directory) / "safar.db", synchronous="normal")
        try:
            yield SqliteProfileStore(db)
        finally:
            db.close()


class Harness:
    def __init__(
        self,
        store: ProfileStore,
        identity: IdentitySettings | None = None,
        *,
        pipelined: bool = False,
    ) -> None:
        self.log = ListLog()
        self.store = store
        self.clock = FakeClock()
        self.processor = ProfileProcessor(
            self.log,
            store,
            identity or IdentitySettings(),
            self.clock,
            new_id=counter_ids(),
            pipelined=pipelined,
        )

    def send(self, *events: Event, batch: int = 5000) -> None:
        self.log.append(events)
        while self.processor.run_once(batch):
            pass

    def find(self, identifier: Identifier) -> Profile:
        profile = self.store.find(identifier)
        assert profile is not None, identifier
        return profile


#: Where profiles are stored, and whether each update is applied on a thread of its own while
#: the next batch is computed (ADR 16).
KINDS = [("memory", False), ("sqlite", False), ("memory", True), ("sqlite", True)]


@pytest.fixture(params=KINDS, ids=["memory", "sqlite", "memory, pipelined", "sqlite, pipelined"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    kind, pipelined = request.param
    with open_store(kind) as store:
        yield Harness(store, pipelined=pipelined)


# -- behaviour ------------------------------------------------------------------------------------


def test_anonymous_history_merges_into_the_known_profile(harness: Harness) -> None:
    harness.send(ev(user="u1", ts=1), ev(anon="a1", ts=2), ev("page", anon="a1", ts=3))
    known, anonymous = harness.find(U1), harness.find(A1)
    assert known.id != anonymous.id
    harness.send(ev("identify", user="u1", anon="a1", ts=4, mid="m-login", traits={"plan": "pro"}))
    merged = harness.find(A1)
    assert merged.id == known.id
    assert merged.identifiers == {"anonymous_id": ["a1"], "user_id": ["u1"]}
    assert merged.merged_from == [anonymous.id]
    assert (merged.first_seen, merged.last_seen) == (1, 4)
    assert harness.store.timeline(known.id, 10) == [4, 3, 2, 1]
    (record,) = harness.store.merges(known.id)
    assert (record.into, record.other, record.refused, record.message_id) == (
        known.id,
        anonymous.id,
        False,
        "m-login",
    )
    assert record.at == harness.clock.now_ms()
    assert harness.store.merges(anonymous.id) == [record]


def test_a_batch_placing_thousands_of_identifiers_keeps_each_ones_history(
    harness: Harness,
) -> None:
    people = 2500  # 5,000 identifiers: more than one statement of placements in SQLite
    harness.send(
        *(
            ev("identify", user=f"u{n}", ts=n, traits={"email": f"p{n}@x.io"})
            for n in range(people)
        ),
        batch=people,
    )
    harness.send(*(ev(user=f"u{n}", ts=people + n) for n in range(0, people, 7)))
    for n in (0, 1, 1999, 2000, 2001, people - 1):
        profile = harness.find(("email", f"p{n}@x.io"))
        assert profile.identifiers == {"email": [f"p{n}@x.io"], "user_id": [f"u{n}"]}
        later = [people + n] if n % 7 == 0 else []
        assert [
            harness.log.get([seq])[0].timestamp for seq in harness.store.timeline(profile.id, 10)
        ] == [*later, n]


def test_history_and_identify_in_one_batch(harness: Harness) -> None:
    harness.send(
        ev(anon="a1", ts=1),
        ev("identify", user="u1", anon="a1", ts=2, traits={"email": "S@X.io"}),
        ev(user="u1", ts=3),
    )
    profile = harness.find(("email", "s@x.io"))
    assert profile.identifiers == {
        "anonymous_id": ["a1"],
        "email": ["s@x.io"],
        "user_id": ["u1"],
    }
    assert harness.store.timeline(profile.id, 10) == [3, 2, 1]
    assert harness.store.merges(profile.id) == []  # nothing existed to merge


def test_a_merge_that_breaks_a_limit_is_refused_and_recorded(harness: Harness) -> None:
    harness.send(ev("identify", user="u1", anon="a1", ts=1))
    harness.send(ev("identify", user="u2", anon="a1", ts=2, mid="m-shared"))
    first, second = harness.find(U1), harness.find(U2)
    assert first.id != second.id
    assert first.identifiers == {"anonymous_id": ["a1"], "user_id": ["u1"]}
    assert second.identifiers == {"user_id": ["u2"]}
    (record,) = harness.store.merges(second.id)
    assert (record.into, record.other, record.refused, record.message_id) == (
        second.id,
        first.id,
        True,
        "m-shared",
    )
    assert "at most 1 user_id" in record.reason
    assert harness.store.merges(first.id) == [record]
    assert harness.store.timeline(second.id, 10) == [2]  # attributed to u2, the higher priority


def test_reprocessing_the_same_events_changes_nothing_but_the_timeline(harness: Harness) -> None:
    events = [
        ev(anon="a1", ts=1),
        ev("identify", user="u1", anon="a1", ts=2, traits={"plan": "pro"}),
        ev("identify", user="u2", anon="a1", ts=3, traits={"plan": "free"}),
        ev("alias", user="u1", ts=4, previousId="a2"),
    ]
    harness.send(*events)
    before = {i: harness.find(i) for i in (U1, U2, A1, A2)}
    merges = {i: harness.store.merges(p.id) for i, p in before.items()}
    history = harness.store.trait_history(before[U1].id, 10)
    harness.send(*events)  # the same messages again, past the dedupe window
    assert {i: harness.find(i) for i in (U1, U2, A1, A2)} == before
    assert {i: harness.store.merges(p.id) for i, p in before.items()} == merges
    assert harness.store.trait_history(before[U1].id, 10) == history
    assert harness.store.timeline(before[U1].id, 10) == [8, 6, 5, 4, 2, 1]


def test_last_write_wins_by_timestamp_not_arrival(harness: Harness) -> None:
    harness.send(ev("identify", user="u1", ts=20, mid="m-new", traits={"name": "Sara", "x": 1}))
    harness.send(ev("identify", user="u1", ts=10, mid="m-old", traits={"name": "Sarah"}))
    profile = harness.find(U1)
    assert profile.traits == {"name": "Sara", "x": 1}
    history = harness.store.trait_history(profile.id, 10)
    assert [(c.key, c.value, c.message_id, c.seq) for c in history] == [
        ("name", "Sara", "m-new", 1),
        ("x", 1, "m-new", 1),
        ("name", "Sarah", "m-old", 2),
    ]


def test_traits_of_merged_profiles_combine_per_key(harness: Harness) -> None:
    harness.send(
        ev("identify", anon="a1", ts=5, traits={"plan": "trial", "color": "red"}),
        ev("identify", user="u1", ts=3, traits={"plan": "pro", "name": "Sara"}),
    )
    harness.send(ev(user="u1", anon="a1", ts=9))
    assert harness.find(A1).traits == {"color": "red", "name": "Sara", "plan": "trial"}


def test_find_by_a_merged_away_identifier_returns_the_survivor(harness: Harness) -> None:
    harness.send(ev(anon="a1", ts=1), ev(anon="a2", ts=1), ev(user="u1", ts=1))
    harness.send(ev("alias", user="u1", anon="a2", ts=2, previousId="a1"))
    survivor = harness.find(U1)
    assert harness.find(A1).id == harness.find(A2).id == survivor.id
    assert len(survivor.merged_from) == 2
    assert len(harness.store.merges(survivor.id)) == 2


def test_a_late_earlier_event_moves_an_identifier_with_its_traits(harness: Harness) -> None:
    harness.send(
        ev("identify", anon="a1", ts=1, traits={"color": "red"}),
        ev("identify", user="u2", anon="a1", ts=5, mid="m-later"),
        ev("identify", user="u1", ts=6, traits={"name": "Ann"}),
    )
    u1, u2 = harness.find(U1), harness.find(U2)
    assert harness.find(A1).id == u2.id
    assert u2.traits == {"color": "red"}
    harness.send(ev(user="u1", anon="a1", ts=3, mid="m-earlier"))  # arrives late
    moved = harness.find(A1)
    assert moved.id == u1.id
    assert moved.traits == {"color": "red", "name": "Ann"}
    assert harness.find(U2).traits == {}
    assert harness.find(U2).identifiers == {"user_id": ["u2"]}
    assert harness.store.timeline(u1.id, 10) == [4, 3, 1]
    records = harness.store.merges(u1.id)
    assert [(r.into, r.other, r.refused, r.message_id) for r in records] == [
        (u1.id, u2.id, False, "m-earlier"),
        (u2.id, u1.id, True, "m-later"),
    ]
    assert records[0].reason.startswith("moved anonymous_id:a1")


def test_blocked_values_never_link_people(harness: Harness) -> None:
    harness.send(
        ev(user="u1", anon="undefined", ts=1),
        ev(user="u2", anon="undefined", ts=2),
        ev(user="null", anon="a1", ts=3),
        ev("identify", user="u1", ts=4, traits={"email": "n/a", "crm_id": "unknown"}),
    )
    assert harness.find(U1).identifiers == {"user_id": ["u1"]}
    assert harness.find(U2).identifiers == {"user_id": ["u2"]}
    assert harness.find(A1).identifiers == {"anonymous_id": ["a1"]}
    assert harness.store.find(("user_id", "null")) is None
    assert harness.store.find(("anonymous_id", "undefined")) is None


def test_a_trait_name_holding_nul_is_left_out(harness: Harness) -> None:
    harness.send(ev("identify", user="u1", ts=1, traits={"a\x00b": 1, "plan": "pro"}))
    assert harness.find(U1).traits == {"plan": "pro"}


def test_a_trait_name_over_256_characters_is_left_out(harness: Harness) -> None:
    long = "k" * 257
    harness.send(ev("identify", user="u1", ts=1, traits={long: 1, "k" * 256: 2, "plan": "pro"}))
    assert harness.find(U1).traits == {"k" * 256: 2, "plan": "pro"}


def test_events_naming_nobody_are_counted_and_skipped(harness: Harness) -> None:
    harness.log.append([ev(user=" ", ts=1), ev(anon="null", ts=2), ev(user="u1", ts=3)])
    assert harness.processor.run_once() == 3
    harness.processor.settle()  # pipelined, the batch was applied in the background
    assert harness.store.processed_seq() == 3
    assert harness.store.timeline(harness.find(U1).id, 10) == [3]
    assert harness.processor.run_once() == 0


def test_external_ids_and_phones_link_profiles(harness: Harness) -> None:
    harness.send(
        ev(user="u1", ts=1, context={"externalIds": [{"id": "C-1", "type": "crm_id"}]}),
        ev("identify", anon="a9", ts=2, traits={"crm_id": "C-1", "phone": "(415) 555-2671"}),
    )
    profile = harness.find(("phone", "+14155552671"))
    assert profile.identifiers == {
        "anonymous_id": ["a9"],
        "crm_id": ["C-1"],
        "phone": ["+14155552671"],
        "user_id": ["u1"],
    }


def test_a_known_person_with_a_new_combination_keeps_one_profile(harness: Harness) -> None:
    harness.send(ev("identify", user="u1", anon="a1", ts=1, traits={"email": "s@x.io"}))
    profile = harness.find(U1)
    harness.send(
        ev(user="u1", anon="a1", ts=2), ev(anon="a1", ts=3, context={"traits": {"email": "s@x.io"}})
    )
    assert harness.find(A1) == msgspec.structs.replace(profile, last_seen=3)
    assert harness.store.merges(profile.id) == []


def test_run_processes_until_stopped(harness: Harness) -> None:
    stop = threading.Event()
    worker = threading.Thread(
        target=harness.processor.run, args=(stop,), kwargs={"idle_wait": 0.01}
    )
    worker.start()
    try:
        harness.log.append([ev(user="u1", ts=1), ev(anon="a1", ts=2)])
        wait_until(lambda: harness.store.processed_seq() == 2, timeout=10)
        harness.log.append([ev(user="u1", anon="a1", ts=3)])
        wait_until(lambda: harness.store.find(A1) == harness.store.find(U1), timeout=10)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive()


class FlakyStore:
    """Delegates to a real store; its first ``apply`` fails as a busy database would."""

    def __init__(self, store: ProfileStore) -> None:
        self.store = store
        self.failures = 1

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        self.store.apply(update)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_run_retries_after_a_retryable_store_error(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryProfileStore()
    flaky = FlakyStore(store)
    log = ListLog()
    log.append([ev(user="u1", ts=1)])
    processor = ProfileProcessor(log, flaky, IdentitySettings(), FakeClock())  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        ProfileProcessor(log, FlakyStore(store), IdentitySettings(), FakeClock()).run_once()  # type: ignore[arg-type]
    stop = threading.Event()
    worker = threading.Thread(target=processor.run, args=(stop,), kwargs={"idle_wait": 0.01})
    worker.start()
    try:
        wait_until(lambda: store.processed_seq() == 1, timeout=10)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert "database is locked" in caplog.text


def test_run_stops_on_errors_that_retrying_cannot_fix() -> None:
    class Broken(FlakyStore):
        def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
            raise ValueError("bug")

    log = ListLog()
    log.append([ev(user="u1", ts=1)])
    processor = ProfileProcessor(log, Broken(MemoryProfileStore()), IdentitySettings(), FakeClock())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bug"):
        processor.run(threading.Event(), idle_wait=0.01)


def test_a_failed_background_apply_is_raised_and_processing_starts_again_from_the_store() -> None:
    store = MemoryProfileStore()
    log = ListLog()
    log.append([ev(user="u1", ts=1), ev(anon="a1", ts=2), ev(user="u1", anon="a1", ts=3)])
    flaky = cast(ProfileStore, FlakyStore(store))
    processor = ProfileProcessor(log, flaky, IdentitySettings(), FakeClock(), pipelined=True)
    assert processor.run_once(1) == 1  # its apply fails, in the background
    with pytest.raises(StoreError, match="locked"):
        processor.run_once(1)
    assert store.processed_seq() == 0
    while processor.run_once(1):
        pass
    assert store.processed_seq() == 3
    assert store.find(A1) == store.find(U1) is not None


class GatedStore(FlakyStore):
    """Holds back the apply of the update up to ``held`` until the processor settles (or reads
    a cluster anyway), and records how far the store had got at each read."""

    def __init__(self, store: ProfileStore, held: int) -> None:
        super().__init__(store)
        self.held = held
        self.allow = threading.Event()
        self.read_at: list[tuple[str, int]] = []

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        if update.processed_seq == self.held:
            self.allow.wait(timeout=10)
        self.store.apply(update)

    def load(self, *args: Any) -> Any:
        self.read_at.append(("load", self.store.processed_seq()))
        return self.store.load(*args)

    def load_clusters(self, *args: Any) -> Any:
        self.read_at.append(("load_clusters", self.store.processed_seq()))
        self.allow.set()  # so that a processor that did not settle goes on, and fails below
        return self.store.load_clusters(*args)

    def trait_writes(self, *args: Any) -> Any:
        self.read_at.append(("trait_writes", self.store.processed_seq()))
        self.allow.set()
        return self.store.trait_writes(*args)


def gated_processor(log: ListLog, gated: GatedStore) -> ProfileProcessor:
    """A pipelined processor over ``gated`` whose :meth:`settle` lets the held apply go."""
    processor = ProfileProcessor(
        log, cast(ProfileStore, gated), IdentitySettings(), FakeClock(), pipelined=True
    )
    settle = processor.settle

    def settle_and_allow() -> None:
        gated.allow.set()
        settle()

    processor.settle = settle_and_allow  # type: ignore[method-assign]
    return processor


def test_a_pipelined_batch_that_merges_reads_clusters_once_the_batch_before_is_in() -> None:
    store = MemoryProfileStore()
    gated = GatedStore(store, held=2)
    log = ListLog()
    log.append([ev(user="u1", ts=1), ev(anon="a1", ts=2), ev(user="u1", anon="a1", ts=3)])
    processor = gated_processor(log, gated)
    for _ in range(3):
        gated.read_at.clear()  # only the last batch's reads
        assert processor.run_once(1) == 1
    # Its new edge is looked up at once (the batch before did not write it); its clusters
    # only once that batch is in.
    assert gated.read_at == [("load", 1), ("load_clusters", 2)]
    processor.settle()
    assert store.find(A1) == store.find(U1) is not None


def test_a_pipelined_processor_that_forgot_its_memory_reads_once_the_batch_before_is_in() -> None:
    store = MemoryProfileStore()
    gated = GatedStore(store, held=2)
    log = ListLog()
    log.append([ev(user="u1", ts=1), ev(anon="a1", ts=2), ev(user="u2", ts=3)])
    processor = gated_processor(log, gated)
    processor.run_once(1)
    processor._known.limit = 0  # it forgets all it remembers after each batch from now on
    processor.run_once(1)
    gated.read_at.clear()
    processor.run_once(1)
    assert gated.read_at == [("load", 2)]
    processor.settle()
    assert store.processed_seq() == 3


def test_a_pipelined_run_returns_once_its_last_batch_is_in() -> None:
    stop = threading.Event()

    class StoppingLog(ListLog):
        """Stop is asked for while the first batch is read: it is still being applied when
        the run loop sees it."""

        def read(self, after_seq: int, limit: int) -> list[Event]:
            stop.set()
            return super().read(after_seq, limit)

    store = MemoryProfileStore()
    gated = GatedStore(store, held=1)
    log = StoppingLog()
    log.append([ev(user="u1", ts=1)])
    processor = ProfileProcessor(
        log, cast(ProfileStore, gated), IdentitySettings(), FakeClock(), pipelined=True
    )
    settle = processor.settle

    def settle_once_stopping() -> None:
        if stop.is_set():  # not the settle before the first read: nothing is in flight then
            gated.allow.set()
        settle()

    processor.settle = settle_once_stopping  # type: ignore[method-assign]
    processor.run(stop, idle_wait=0.01)
    processed = store.processed_seq()
    gated.allow.set()  # lets a run that did not settle finish in the background
    assert processed == 1


def test_default_profile_ids_sort_by_creation_time() -> None:
    clock = FakeClock()
    new_id = time_ordered_id(clock)
    first = new_id()
    clock.advance(ms=1)
    second = new_id()
    assert len(first) == 32 and first < second and first != new_id()


def test_a_forked_process_makes_other_profile_ids_than_its_parent() -> None:
    new_id = time_ordered_id(FakeClock())
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    assert len(theirs) == 32 and theirs != new_id()


# -- order independence ---------------------------------------------------------------------------

IDENTITY = IdentitySettings(limits={"user_id": 1, "email": 1})
RULES = IdentityRules(IDENTITY)

# Most events name one identifier, so that profiles exist apart before events link them.
users = st.sampled_from([None, None, None, "u1", "u2", "u3", "null"])
anons = st.sampled_from([None, None, "a1", "a2", "a3", "a4", "undefined"])
emails = st.sampled_from([None, None, "e1@x.io", " E1@X.io ", "e2@x.io", "n/a"])


@st.composite
def event_bodies(draw: st.DrawFn) -> tuple[str, str | None, str | None, dict[str, Any], int]:
    kind = draw(st.sampled_from(["track", "identify", "alias"]))
    user, anon, ts = draw(users), draw(anons), draw(st.integers(0, 8))
    body: dict[str, Any] = {}
    if kind == "identify":
        traits: dict[str, Any] = {"plan": draw(st.sampled_from(["free", "pro", 3]))}
        email = draw(emails)
        if email is not None:
            traits["email"] = email
        body["traits"] = traits
    elif kind == "alias":
        body["previousId"] = draw(anons)
    elif draw(st.booleans()):
        body["context"] = {"traits": {"email": draw(emails)}}
    return kind, user, anon, body, ts


def build(drawn: list[tuple[str, str | None, str | None, dict[str, Any], int]]) -> list[Event]:
    return [
        ev(kind, user=user, anon=anon, ts=ts, mid=f"m{n:02}", **body)
        for n, (kind, user, anon, body, ts) in enumerate(drawn)
    ]


Outcome = set[tuple[frozenset[Identifier], str]]


def expected(events: list[Event]) -> Outcome:
    """The specification: partition of all distinct edges; traits by last write per cell."""
    nodes: set[Identifier] = set()
    edges: dict[str, Edge] = {}
    writes: list[TraitWrite] = []
    for event in events:
        identifiers, traits = extract(event, RULES)
        if not identifiers:
            continue
        nodes.update(identifiers)
        if len(identifiers) > 1:
            key = edge_key(identifiers)
            e = Edge(
                key=key,
                identifiers=identifiers,
                timestamp=event.timestamp,
                message_id=event.message_id,
            )
            known = edges.get(key)
            if known is None or (e.timestamp, e.message_id) < (known.timestamp, known.message_id):
                edges[key] = e
        for key, value in (traits or {}).items():
            writes.append(
                TraitWrite(
                    identifier=identifiers[0],
                    key=key,
                    value=value,
                    timestamp=event.timestamp,
                    message_id=event.message_id,
                    seq=0,
                )
            )
    outcome: Outcome = set()
    for cell in partition(nodes, edges.values(), RULES).cells:
        traits = values(replay(w for w in writes if w.identifier in cell))
        outcome.add((frozenset(cell), msgspec.json.encode(traits).decode()))
    return outcome


def observed(store: ProfileStore, events: list[Event]) -> Outcome:
    outcome: Outcome = set()
    for event in events:
        for identifier in extract(event, RULES).identifiers:
            profile = store.find(identifier)
            assert profile is not None
            cell = frozenset((k, v) for k, vs in profile.identifiers.items() for v in vs)
            outcome.add((cell, msgspec.json.encode(profile.traits).decode()))
    return outcome


def process(
    store: ProfileStore, events: list[Event], batches: list[int], pipelined: bool = False
) -> None:
    """Process ``events`` in batches of the sizes given, repeated (all at once if none)."""
    log = ListLog()
    log.append(events)
    processor = ProfileProcessor(
        log, store, IDENTITY, FakeClock(), new_id=counter_ids(), pipelined=pipelined
    )
    sizes = itertools.cycle(batches or [len(events)])
    while processor.run_once(next(sizes)):
        pass
    assert store.processed_seq() == len(events)


scenario = st.lists(event_bodies(), min_size=4, max_size=24)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(scenario, st.data())
def test_any_order_and_batching_gives_the_same_profiles(
    drawn: list[tuple[str, str | None, str | None, dict[str, Any], int]], data: st.DataObject
) -> None:
    events = build(drawn)
    want = expected(events)
    order = data.draw(st.permutations(events), label="order")
    for batches in ([1], data.draw(st.lists(st.integers(1, 6), max_size=8), label="batches")):
        store = MemoryProfileStore()
        process(store, order, batches)
        assert observed(store, events) == want


@pytest.mark.parametrize(("kind", "pipelined"), KINDS)
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(drawn=scenario, data=st.data())
def test_any_order_gives_the_same_profiles_in_every_store(
    kind: str,
    pipelined: bool,
    drawn: list[tuple[str, str | None, str | None, dict[str, Any], int]],
    data: st.DataObject,
) -> None:
    events = build(drawn)
    order = data.draw(st.permutations(events), label="order")
    batches = data.draw(st.lists(st.integers(1, 6), max_size=8), label="batches")
    with open_store(kind) as store:
        process(store, order, batches, pipelined)
        assert observed(store, events) == expected(events)
