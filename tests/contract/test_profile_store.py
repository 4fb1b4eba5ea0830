"""The :class:`safar.ports.ProfileStore` contract, run against every adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from safar.core.assignment import partition_of
from safar.core.identity import edge_key
from safar.errors import StoreError
from safar.model.profiles import (
    Edge,
    Identifier,
    MergeRecord,
    Placement,
    ProfileState,
    ProfileUpdate,
    StampedValue,
    TraitWrite,
)
from safar.ports import ProfileStore
from safar.stores.memory.profiles import MemoryProfileStore
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.profiles import SqliteProfileStore

U1: Identifier = ("user_id", "u1")
U2: Identifier = ("user_id", "u2")
A1: Identifier = ("anonymous_id", "a1")
A2: Identifier = ("anonymous_id", "a2")
E1: Identifier = ("email", "e1@x.io")

#: Opens the store under test; calling it again opens the same storage anew where the adapter
#: can (a restart), else returns the same instance.
Opener = Callable[[], ProfileStore]


class InTheBackground:
    """A store whose every ``apply`` is made as the pipelined processor makes it (ADR 16)."""

    def __init__(self, store: ProfileStore) -> None:
        self.store = store

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        self.store.apply(update, background=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "sqlite, applied in the background",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    if request.param == "memory":
        store = MemoryProfileStore()
        yield lambda: store
        return
    if request.param == "postgres":
        # Imported here, as the contract conftest does, so the other params run without them.
        from safar.stores.postgres.db import PgDatabase
        from safar.stores.postgres.profiles import PgProfileStore
        from tests.services import postgres_schema_url

        url = postgres_schema_url()
        pools: list[PgDatabase] = []

        def open_postgres() -> ProfileStore:
            db = PgDatabase(url, max_size=2)
            pools.append(db)
            return PgProfileStore(db)

        yield open_postgres
        for pool in pools:
            pool.close()
        return
    databases: list[Database] = []

    def open_sqlite() -> ProfileStore:
        db = Database(tmp_path / "safar.db")
        databases.append(db)
        store = SqliteProfileStore(db)
        if request.param == "sqlite":
            return store
        return InTheBackground(store)  # type: ignore[return-value]

    yield open_sqlite
    for db in databases:
        db.close()


@pytest.fixture
def store(open_store: Opener) -> ProfileStore:
    return open_store()


def edge(ts: int, mid: str, *identifiers: Identifier) -> Edge:
    return Edge(key=edge_key(identifiers), identifiers=identifiers, timestamp=ts, message_id=mid)


def trait(
    identifier: Identifier, key: str, value: object, ts: int, mid: str, seq: int
) -> TraitWrite:
    return TraitWrite(
        identifier=identifier, key=key, value=value, timestamp=ts, message_id=mid, seq=seq
    )


def merge(into: str, other: str, mid: str, *, refused: bool = False, at: int = 1) -> MergeRecord:
    return MergeRecord(
        into=into, other=other, reason="because", refused=refused, message_id=mid, at=at
    )


def seed(store: ProfileStore) -> None:
    """Profile p1 = {u1, a1, e1} (cluster c1), profile p2 = {u2} (cluster c2), seqs 1-4."""
    store.apply(
        ProfileUpdate(
            after_seq=0,
            processed_seq=4,
            placements={
                U1: Placement("p1", "c1"),
                A1: Placement("p1", "c1"),
                E1: Placement("p1", "c1"),
                U2: Placement("p2", "c2"),
            },
            seen={A1: (100, 150), U1: (200, 200), U2: (300, 300)},
            edges=[("c1", edge(200, "m2", U1, A1, E1))],
            profiles=[
                ProfileState(
                    id="p1",
                    traits={"name": StampedValue("Sara", 200, "m2")},
                    merged_from=["p0"],
                ),
                ProfileState(id="p2"),
            ],
            timeline=[(A1, 1), (U1, 2), (U2, 3), (A1, 4)],
            trait_writes=[
                trait(U1, "name", "Sara", 200, "m2", 2),
                trait(U1, "plan", "pro", 200, "m2", 2),
                trait(U2, "name", "Bob", 300, "m3", 3),
            ],
            merges=[merge("p1", "p0", "m2"), merge("p2", "p1", "m3", refused=True)],
        )
    )


def test_an_empty_store(store: ProfileStore) -> None:
    assert store.processed_seq() == 0
    assert store.find(U1) is None
    assert store.timeline("p1", 10) == []
    assert store.trait_history("p1", 10) == []
    assert store.merges("p1") == []
    view = store.load([U1], [edge_key([U1, A1])])
    assert (view.placements, view.edges) == ({}, {})
    clusters = store.load_clusters(["c1"], ["p1"])
    assert (clusters.clusters, clusters.profiles) == ({}, {})
    assert store.trait_writes([U1]) == []


def test_find_by_any_identifier(store: ProfileStore) -> None:
    seed(store)
    assert store.processed_seq() == 4
    for identifier in (U1, A1, E1):
        profile = store.find(identifier)
        assert profile is not None
        assert profile.id == "p1"
        assert profile.identifiers == {
            "anonymous_id": ["a1"],
            "email": ["e1@x.io"],
            "user_id": ["u1"],
        }
        assert profile.traits == {"name": "Sara"}
        assert (profile.first_seen, profile.last_seen) == (100, 200)
        assert profile.merged_from == ["p0"]
    other = store.find(U2)
    assert other is not None and other.id == "p2" and other.traits == {}
    assert store.find(("user_id", "nobody")) is None


def test_find_many_equals_find_per_identifier(store: ProfileStore) -> None:
    seed(store)
    nobody: Identifier = ("user_id", "nobody")
    found = store.find_many([U1, A1, E1, U2, nobody])
    assert set(found) == {U1, A1, E1, U2}
    for identifier, profile in found.items():
        assert profile == store.find(identifier)
    assert found[U1] == found[A1] == found[E1]
    assert store.find_many([]) == {}


def test_scan_walks_every_profile_in_id_order(store: ProfileStore) -> None:
    seed(store)
    assert [p.id for p in store.scan("", 10)] == ["p1", "p2"]
    (first,) = store.scan("", 1)
    assert first == store.find(U1)
    assert [p.id for p in store.scan("p1", 10)] == ["p2"]
    assert store.scan("p2", 10) == [] and store.scan("", 0) == []


def test_a_partitioned_scan_pages_through_the_partitions_profiles_only(
    store: ProfileStore,
) -> None:
    users: list[Identifier] = [("user_id", f"u{n:02d}") for n in range(40)]
    store.apply(
        ProfileUpdate(
            after_seq=0,
            processed_seq=40,
            placements={u: Placement(f"p{n:02d}", f"c{n:02d}") for n, u in enumerate(users)},
            seen={u: (n, n) for n, u in enumerate(users)},
            profiles=[ProfileState(id=f"p{n:02d}") for n in range(40)],
            timeline=[(u, n + 1) for n, u in enumerate(users)],
        )
    )
    everyone = [p.id for p in store.scan("", 100)]
    for n in range(3):
        partition = (n, 3)
        expected = [pid for pid in everyone if partition_of(pid, 3) == n]
        assert 0 < len(expected) < 40
        # Pages smaller than what lies between two of the partition's profiles, and larger.
        for limit in (1, 2, 5, 100):
            walked: list[str] = []
            while page := store.scan(walked[-1] if walked else "", limit, partition):
                assert len(page) <= limit
                walked += [p.id for p in page]
            assert walked == expected
        (first,) = store.scan("", 1, partition)
        assert first == store.find(("user_id", f"u{first.id[1:]}"))


def test_a_profile_merged_away_while_a_page_is_read_does_not_end_the_scan(
    store: ProfileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(store)
    store.apply(
        ProfileUpdate(
            after_seq=4,
            processed_seq=5,
            placements={("user_id", "u3"): Placement("p3", "c3")},
            seen={("user_id", "u3"): (400, 400)},
            profiles=[ProfileState(id="p3")],
            timeline=[(("user_id", "u3"), 5)],
        )
    )
    # p1 disappears between the read of the page's ids and the loading of its profiles, as
    # when the profile processor merges it into another meanwhile.
    if isinstance(store, MemoryProfileStore):
        find = store.find
        monkeypatch.setattr(store, "find", lambda i: None if i == A1 else find(i))
    elif isinstance(store, SqliteProfileStore):
        find_many = store.find_many
        monkeypatch.setattr(
            store,
            "find_many",
            lambda ids: {i: p for i, p in find_many(ids).items() if p.id != "p1"},
        )
    else:
        pytest.skip("no way to slip a merge between this store's two reads")
    # A full page still: a short one would tell the caller the walk is over.
    assert [p.id for p in store.scan("", 2)] == ["p2", "p3"]


def test_timeline_is_newest_first_across_identifiers_and_pages(store: ProfileStore) -> None:
    seed(store)
    assert store.timeline("p1", 10) == [4, 2, 1]
    assert store.timeline("p1", 2) == [4, 2]
    assert store.timeline("p1", 10, before_seq=4) == [2, 1]
    assert store.timeline("p1", 1, before_seq=2) == [1]
    assert store.timeline("p1", 0) == []
    assert store.timeline("p2", 10) == [3]
    assert store.timeline("nobody", 10) == []


def test_trait_history_is_newest_first(store: ProfileStore) -> None:
    seed(store)
    history = store.trait_history("p1", 10)
    assert [(c.key, c.value, c.timestamp, c.message_id, c.seq) for c in history] == [
        ("name", "Sara", 200, "m2", 2),
        ("plan", "pro", 200, "m2", 2),
    ]
    assert [c.key for c in store.trait_history("p1", 1)] == ["name"]
    assert [c.value for c in store.trait_history("p2", 10)] == ["Bob"]


def test_merges_include_those_of_merged_profiles_oldest_first(store: ProfileStore) -> None:
    seed(store)
    assert store.merges("p1") == [merge("p1", "p0", "m2"), merge("p2", "p1", "m3", refused=True)]
    assert store.merges("p0") == [merge("p1", "p0", "m2")]
    assert store.merges("p2") == [merge("p2", "p1", "m3", refused=True)]


def test_load_finds_placements_and_edge_stamps(store: ProfileStore) -> None:
    seed(store)
    known = edge_key([U1, A1, E1])
    view = store.load([U1, U2, A2], [known, edge_key([U2, A2])])
    assert view.placements == {U1: Placement("p1", "c1"), U2: Placement("p2", "c2")}
    assert view.edges == {known: (200, "m2")}


def test_load_clusters_returns_members_edges_and_profiles(store: ProfileStore) -> None:
    seed(store)
    view = store.load_clusters(["c1", "nope"], ["p2"])
    (cluster,) = view.clusters.values()
    assert cluster.id == "c1"
    assert cluster.members == {U1: "p1", A1: "p1", E1: "p1"}
    assert cluster.edges == [edge(200, "m2", U1, A1, E1)]
    assert set(view.profiles) == {"p1", "p2"}
    assert view.profiles["p1"].traits == {"name": StampedValue("Sara", 200, "m2")}
    assert view.profiles["p1"].merged_from == ["p0"]


def test_trait_writes_are_returned_per_identifier(store: ProfileStore) -> None:
    seed(store)
    found = store.trait_writes([U1, A1])
    assert sorted(found, key=lambda w: w.key) == [
        trait(U1, "name", "Sara", 200, "m2", 2),
        trait(U1, "plan", "pro", 200, "m2", 2),
    ]


def test_an_update_from_a_stale_seq_is_refused_and_changes_nothing(store: ProfileStore) -> None:
    seed(store)
    stale = ProfileUpdate(
        after_seq=0,
        processed_seq=9,
        placements={A2: Placement("p9", "c9")},
        profiles=[ProfileState(id="p9")],
        timeline=[(A2, 9)],
    )
    with pytest.raises(StoreError, match="another processor"):
        store.apply(stale)
    assert store.processed_seq() == 4
    assert store.find(A2) is None


def test_naming_an_unplaced_identifier_is_refused(store: ProfileStore) -> None:
    with pytest.raises(StoreError, match="never placed"):
        store.apply(ProfileUpdate(after_seq=0, processed_seq=1, seen={A2: (1, 1)}))
    assert store.processed_seq() == 0


def test_identifiers_move_with_their_history(store: ProfileStore) -> None:
    seed(store)
    store.apply(
        ProfileUpdate(
            after_seq=4,
            processed_seq=5,
            placements={A1: Placement("p2", "c1"), U2: Placement("p2", "c1")},
            seen={A1: (50, 120)},
            edges=[("c1", edge(90, "m0", U2, A1))],
            profiles=[ProfileState(id="p2", traits={"plan": StampedValue("free", 90, "m0")})],
            timeline=[(U2, 5)],
        )
    )
    moved = store.find(A1)
    assert moved is not None and moved.id == "p2"
    assert moved.identifiers == {"anonymous_id": ["a1"], "user_id": ["u2"]}
    assert (moved.first_seen, moved.last_seen) == (50, 300)  # seen only widens
    assert moved.traits == {"plan": "free"}
    assert store.timeline("p2", 10) == [5, 4, 3, 1]
    assert store.timeline("p1", 10) == [2]
    view = store.load_clusters(["c1"], [])
    assert set(view.clusters["c1"].members) == {U1, A1, E1, U2}
    assert len(view.clusters["c1"].edges) == 2
    assert store.load_clusters(["c2"], []).clusters == {}


def test_deleted_profiles_are_gone(store: ProfileStore) -> None:
    seed(store)
    store.apply(
        ProfileUpdate(
            after_seq=4,
            processed_seq=5,
            placements={U2: Placement("p1", "c1")},
            deleted_profiles=["p2"],
            profiles=[ProfileState(id="p1", merged_from=["p0", "p2"])],
        )
    )
    assert store.load_clusters([], ["p2"]).profiles == {}
    found = store.find(U2)
    assert found is not None and found.id == "p1" and found.merged_from == ["p0", "p2"]
    assert store.timeline("p1", 10) == [4, 3, 2, 1]
    assert store.merges("p1")[-1] == merge("p2", "p1", "m3", refused=True)


def test_history_rows_and_merge_records_already_stored_are_skipped(store: ProfileStore) -> None:
    seed(store)
    store.apply(
        ProfileUpdate(
            after_seq=4,
            processed_seq=6,
            seen={U1: (200, 200)},
            timeline=[(U1, 2), (U1, 6)],
            trait_writes=[trait(U1, "name", "Sara", 200, "m2", 6)],
            merges=[merge("p1", "p0", "m2", at=99), merge("p1", "p0", "m6")],
        )
    )
    assert store.timeline("p1", 10) == [6, 4, 2, 1]
    assert [c.seq for c in store.trait_history("p1", 10)] == [2, 2]
    assert [m.message_id for m in store.merges("p1")] == ["m2", "m3", "m6"]
    assert store.merges("p1")[0].at == 1


def test_reshaped_lists_the_profiles_of_merges_and_moves_by_batch(store: ProfileStore) -> None:
    """Profiles on either side of a merge or move done by the batches whose processed_seq
    lies in the range; refused merges and re-stored records do not count again."""
    seed(store)
    assert store.reshaped(0, 4) == ["p0", "p1"]
    assert store.reshaped(0, 3) == []
    assert store.reshaped(4, 10) == []
    store.apply(
        ProfileUpdate(
            after_seq=4,
            processed_seq=7,
            placements={A1: Placement("p3", "c1")},
            profiles=[ProfileState(id="p3")],
            merges=[merge("p3", "p1", "m7"), merge("p1", "p0", "m2", at=99)],
        )
    )
    assert store.reshaped(4, 7) == ["p1", "p3"]
    assert store.reshaped(0, 7) == ["p0", "p1", "p3"]
    assert store.reshaped(5, 6) == []


def test_an_update_with_only_progress(store: ProfileStore) -> None:
    store.apply(ProfileUpdate(after_seq=0, processed_seq=42))
    assert store.processed_seq() == 42


def test_values_of_any_json_type_survive(store: ProfileStore) -> None:
    value = {"city": "تهران", "tags": ["a", 1, None, True], "score": 2.5}
    store.apply(
        ProfileUpdate(
            after_seq=0,
            processed_seq=1,
            placements={U1: Placement("p1", "p1")},
            seen={U1: (1, 1)},
            profiles=[ProfileState(id="p1", traits={"address": StampedValue(value, 1, "m1")})],
            timeline=[(U1, 1)],
            trait_writes=[trait(U1, "address", value, 1, "m1", 1)],
        )
    )
    found = store.find(U1)
    assert found is not None and found.traits == {"address": value}
    assert store.trait_history("p1", 1)[0].value == value
    assert store.load_clusters([], ["p1"]).profiles["p1"].traits["address"].value == value


def test_state_survives_reopening(open_store: Opener) -> None:
    seed(open_store())
    reopened = open_store()
    assert reopened.processed_seq() == 4
    found = reopened.find(E1)
    assert found is not None and found.id == "p1"
    assert reopened.timeline("p1", 10) == [4, 2, 1]
