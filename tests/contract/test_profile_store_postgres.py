"""What the PostgreSQL profile store must get right beyond the port's contract: plans that stay
good whatever the statistics, row ids it has to look up, and a statement failing midway."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from safar.errors import StoreError
from safar.model.profiles import MergeRecord, Placement, ProfileState, ProfileUpdate
from safar.stores.postgres.db import PgDatabase
from safar.stores.postgres.profiles import _PLACEMENTS_OF, PgProfileStore
from tests.services import postgres_schema_url

pytestmark = pytest.mark.postgres

U1 = ("user_id", "u1")
A1 = ("anonymous_id", "a1")


@pytest.fixture
def url() -> str:
    return postgres_schema_url()


Opener = Callable[[], PgProfileStore]


@pytest.fixture
def open_store(url: str) -> Iterator[Opener]:
    """Opens stores on one schema, each with a pool of its own, as processes would."""
    pools: list[PgDatabase] = []

    def open_one() -> PgProfileStore:
        db = PgDatabase(url, max_size=2)
        pools.append(db)
        return PgProfileStore(db)

    yield open_one
    for pool in pools:
        pool.close()


def first_batch() -> ProfileUpdate:
    return ProfileUpdate(
        after_seq=0,
        processed_seq=2,
        placements={U1: Placement("p1", "p1"), A1: Placement("p1", "p1")},
        seen={U1: (100, 100), A1: (100, 200)},
        profiles=[ProfileState(id="p1")],
        timeline=[(U1, 1), (A1, 2)],
    )


def test_identifier_lookups_probe_the_unique_key_on_a_table_never_analyzed(
    open_store: Opener, url: str
) -> None:
    """A generic plan made while the table is small and has no statistics must still look each
    identifier up by its key: the plan is kept as the table grows, until the next ANALYZE.
    (``type = $1 AND value = ANY($2)`` was planned here as a scan of every identifier of the
    type, filtered.)"""
    open_store()
    lookup = _PLACEMENTS_OF.replace("%b", "$1", 1).replace("%b", "$2", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO profile_identities(type, value, profile_id, cluster_id)"
            " SELECT t, 'v' || g, 'p' || g, 'p' || g FROM generate_series(1, 100) AS g,"
            " unnest(ARRAY['user_id', 'anonymous_id']) AS t"
        )
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE lookup(text[], text[]) AS {lookup}")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN EXECUTE lookup('{a}', '{b}')"))
    assert "Index Scan using profile_identities_type_value_key" in plan, plan
    assert "(type = w.type) AND (value = w.value)" in plan, plan
    assert "Filter" not in plan, plan


def test_a_store_opened_afresh_files_history_under_identifiers_placed_before(
    open_store: Opener,
) -> None:
    open_store().apply(first_batch())
    reopened = open_store()  # remembers no row ids: it has to look them up
    reopened.apply(
        ProfileUpdate(
            after_seq=2,
            processed_seq=3,
            seen={U1: (300, 300)},
            timeline=[(U1, 3)],
        )
    )
    found = reopened.find(A1)
    assert found is not None and (found.first_seen, found.last_seen) == (100, 300)
    assert reopened.timeline("p1", 10) == [3, 2, 1]


def test_a_statement_failing_midway_leaves_nothing_behind(
    open_store: Opener,
) -> None:
    store = open_store()
    broken = first_batch()
    # PostgreSQL refuses a NUL in text; the placements went out before this statement.
    broken.merges = [
        MergeRecord(into="p1", other="p\x000", reason="r", refused=False, message_id="m", at=1)
    ]
    with pytest.raises(StoreError, match="0x00"):
        store.apply(broken)
    assert store.processed_seq() == 0
    assert store.find(U1) is None
    store.apply(first_batch())  # the same store, and its pool, still work
    found = store.find(U1)
    assert found is not None and found.id == "p1"
    assert store.timeline("p1", 10) == [2, 1]
