"""The SQLite profile store writes the same rows, to the byte, whichever form it writes them in:
an ``executemany`` per table, or one statement over a JSON array (``apply(…, background=True)``,
as the pipelined profile processor calls it, ADR 16)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from safar.core.identity import edge_key
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
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.profiles import SqliteProfileStore

U1: Identifier = ("user_id", "u1")
#: Text that JSON escapes, and text beyond ASCII: both must reach the columns unchanged.
A1: Identifier = ("anonymous_id", 'a"1\\ \u200f\U0001f600')
E1: Identifier = ("email", "زهرا@example.com")
TABLES = (
    "profile_identities",
    "profile_seen",
    "profile_edges",
    "profiles",
    "profile_timeline",
    "profile_trait_writes",
    "profile_merges",
    "profile_progress",
)


def updates() -> list[ProfileUpdate]:
    both = Edge(key=edge_key((U1, A1)), identifiers=(U1, A1), timestamp=5, message_id="m2")
    traits = {
        "name": StampedValue("Zahrā 😀", 5, "m2"),
        "score": StampedValue(1.5, 5, "m2"),
        "tags": StampedValue(["a", {"b": None}], 5, "m2"),
    }
    return [
        ProfileUpdate(
            after_seq=0,
            processed_seq=2,
            placements={U1: Placement("p1", "p1"), A1: Placement("p2", "p2")},
            seen={U1: (1, 2), A1: (2, 2)},
            profiles=[ProfileState(id="p1"), ProfileState(id="p2")],
            timeline=[(U1, 1), (A1, 2)],
        ),
        ProfileUpdate(
            after_seq=2,
            processed_seq=4,
            placements={A1: Placement("p1", "p1"), E1: Placement("p1", "p1")},
            seen={U1: (0, 9), A1: (3, 4), E1: (4, 4)},
            edges=[("p1", both)],
            profiles=[ProfileState(id="p1", traits=traits, merged_from=["p2"])],
            deleted_profiles=["p2"],
            timeline=[(U1, 3), (U1, 4)],
            trait_writes=[
                TraitWrite(identifier=U1, key=k, value=v.value, timestamp=5, message_id="m2", seq=4)
                for k, v in traits.items()
            ],
            merges=[
                MergeRecord(
                    into="p1", other="p2", reason="m2", refused=False, message_id="m2", at=5
                )
            ],
        ),
    ]


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the profile tables, with the storage class of each value."""
    conn = sqlite3.connect(path)
    try:
        found = {}
        for table in TABLES:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            picks = ", ".join(f"{c}, typeof({c})" for c in columns)
            found[table] = sorted(conn.execute(f"SELECT {picks} FROM {table}"), key=repr)
        return found
    finally:
        conn.close()


def test_both_forms_store_the_same_bytes(tmp_path: Path) -> None:
    stored = {}
    for background in (False, True):
        path = tmp_path / f"{background}.db"
        db = Database(path)
        try:
            store = SqliteProfileStore(db)
            for update in updates():
                store.apply(update, background=background)
        finally:
            db.close()
        stored[background] = rows(path)
    assert stored[True] == stored[False]
    assert stored[False]["profile_merges"] and stored[False]["profile_trait_writes"]
    # traits and merged_from: BLOBs of JSON, as the store reads them back.
    assert all(kind == "blob" for row in stored[False]["profiles"] for kind in row[3::2])
