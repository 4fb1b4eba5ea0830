"""Profile state written under an earlier layout opens, migrated, and identity resolution goes on
from it: the edges, once keyed by their hash, now in rowid order with a unique index on it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from safar.config import IdentitySettings
from safar.model.profiles import ClusterView
from safar.runtime.profiler import ProfileProcessor
from safar.stores.sqlite import profiles
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.profiles import SqliteProfileStore
from tests.test_profiler import Harness, ev

IDENTIFIERS = [("user_id", "u1"), ("anonymous_id", "a1"), ("email", "x@shop.example")]
IDENTIFIERS += [("user_id", "u2"), ("anonymous_id", "a2"), ("anonymous_id", "a3")]


def _clusters(store: SqliteProfileStore) -> ClusterView:
    placed = store.load(IDENTIFIERS, [])
    view = store.load_clusters({p.cluster_id for p in placed.placements.values()}, [])
    for cluster in view.clusters.values():
        cluster.edges.sort(key=lambda e: e.key)
    return view


def test_edges_from_before_the_rowid_layout_are_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(tmp_path / "safar.db", synchronous="normal")
    monkeypatch.setattr(profiles, "_MIGRATIONS", profiles._MIGRATIONS[:2])
    harness = Harness(SqliteProfileStore(db))
    harness.send(
        ev("identify", user="u1", anon="a1", traits={"email": "x@shop.example"}),
        ev(user="u2", anon="a2", ts=2_000),
        ev(anon="a3", ts=3_000),
    )
    before = _clusters(harness.store)  # type: ignore[arg-type]  # a SqliteProfileStore
    keys = [e.key for c in before.clusters.values() for e in c.edges]
    stamps = harness.store.load(IDENTIFIERS, keys).edges
    monkeypatch.undo()

    migrated = SqliteProfileStore(db)  # the layout of now
    with db.read() as conn:
        (version,) = conn.execute(
            "SELECT version FROM schema_versions WHERE component = 'profiles'"
        ).fetchone()
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(profile_edges)")}
    assert version == len(profiles._MIGRATIONS)
    assert {"profile_edges_key", "profile_edges_cluster"} <= indexes
    assert _clusters(migrated) == before
    assert migrated.load(IDENTIFIERS, keys).edges == stamps and len(stamps) == 2

    # Going on from it: an edge joins a3 to u2's cluster, and an earlier copy of a stored edge
    # replaces the stored one (an upsert by key).
    ids = itertools.count(1)
    processor = ProfileProcessor(
        harness.log, migrated, IdentitySettings(), harness.clock, new_id=lambda: f"q{next(ids)}"
    )
    harness.log.append([ev(user="u2", anon="a3", ts=4_000), ev(user="u2", anon="a2", ts=1_500)])
    while processor.run_once():
        pass
    joined = migrated.find(("anonymous_id", "a3"))
    assert joined is not None and joined == migrated.find(("user_id", "u2"))
    after = _clusters(migrated)
    edges = {e.identifiers: e.timestamp for c in after.clusters.values() for e in c.edges}
    assert edges[(("user_id", "u2"), ("anonymous_id", "a2"))] == 1_500
    assert len(edges) == 3
    db.close()
