"""SQLite :class:`safar.ports.ProfileStore`, migration component ``profiles``.

Tables:

- ``profile_identities``: one row per identifier, with its profile and its cluster. Its integer
  ``id`` never changes, so the per-identifier history below stays put when the identifier moves
  to another profile.
- ``profile_seen(identity, first_seen, last_seen)``: updated for nearly every event, so kept
  apart in rows of three integers, which pack ~5x denser than identity rows: a batch's commit
  costs about one page write per page it dirtied, and random pages are what a batch dirties.
- ``profile_edges``: the distinct identifier sets events linked, per cluster. Rows go in rowid
  order (appended as they come), found by a unique index on ``key``. Keyed by ``key`` itself, a
  hash, every new edge (about 200 bytes) landed on a random page of the whole table, so a batch
  of new people rewrote most of its pages; now only the index's small entries do.
- ``profiles``: traits (with the stamp of the write that set each) and ``merged_from``.
- ``profile_timeline(identity, seq)`` and ``profile_trait_writes``: events and trait writes,
  filed under the identifier each event is attributed to. A profile's timeline is the union over
  its identifiers, so merges and moves rewrite no history; reading takes one short indexed range
  per identifier.
- ``profile_merges`` and ``profile_progress`` (the processed seq).

Batch reads pass their keys as one JSON array (``IN (SELECT value FROM json_each(?))``), so a
batch costs a query per identifier type, not per identifier. Identity row ids, once read from
committed state, are remembered, so writing a batch rarely needs to look them up.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any, Final, NamedTuple

import msgspec

from safar.core.assignment import in_partition
from safar.core.identity import by_type
from safar.core.traits import values
from safar.errors import StoreError
from safar.model.profiles import (
    Cluster,
    ClusterView,
    Edge,
    Identifier,
    IdentityView,
    MergeRecord,
    Placement,
    Profile,
    ProfileState,
    ProfileUpdate,
    StampedValue,
    TraitChange,
    TraitWrite,
)
from safar.stores.sqlite.db import Database
from safar.stores.sqlite.leases import check_fence

_MIGRATIONS = [
    """
    CREATE TABLE profile_identities(
        id INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        cluster_id TEXT NOT NULL
    );
    CREATE UNIQUE INDEX profile_identities_key ON profile_identities(type, value);
    CREATE INDEX profile_identities_profile ON profile_identities(profile_id);
    CREATE INDEX profile_identities_cluster ON profile_identities(cluster_id);
    CREATE TABLE profile_seen(
        identity INTEGER PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE TABLE profile_edges(
        key TEXT PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        identifiers BLOB NOT NULL,
        timestamp INTEGER NOT NULL,
        message_id TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX profile_edges_cluster ON profile_edges(cluster_id);
    CREATE TABLE profiles(
        id TEXT PRIMARY KEY,
        traits BLOB NOT NULL,
        merged_from BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE profile_timeline(
        identity INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (identity, seq)
    ) WITHOUT ROWID;
    CREATE TABLE profile_trait_writes(
        identity INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (identity, timestamp, message_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE profile_merges(
        id INTEGER PRIMARY KEY,
        into_id TEXT NOT NULL,
        other_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        refused INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX profile_merges_key
        ON profile_merges(into_id, other_id, message_id, refused);
    CREATE INDEX profile_merges_other ON profile_merges(other_id);
    CREATE TABLE profile_progress(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        processed_seq INTEGER NOT NULL
    );
    INSERT INTO profile_progress(id, processed_seq) VALUES (1, 0)
    """,
    # The processed seq of the batch that did each merge or move, for reshaped().
    """
    ALTER TABLE profile_merges ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX profile_merges_seq ON profile_merges(seq) WHERE refused = 0;
    """,
    # Edges in rowid order, found by a unique index on their key (see the module docstring).
    """
    CREATE TABLE profile_edges_by_rowid(
        key TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        identifiers BLOB NOT NULL,
        timestamp INTEGER NOT NULL,
        message_id TEXT NOT NULL
    );
    INSERT INTO profile_edges_by_rowid(key, cluster_id, identifiers, timestamp, message_id)
        SELECT key, cluster_id, identifiers, timestamp, message_id FROM profile_edges
        ORDER BY cluster_id;
    DROP TABLE profile_edges;
    ALTER TABLE profile_edges_by_rowid RENAME TO profile_edges;
    CREATE UNIQUE INDEX profile_edges_key ON profile_edges(key);
    CREATE INDEX profile_edges_cluster ON profile_edges(cluster_id);
    """,
]

#: The first item of a row: its sort key where that is unique.
_FIRST = itemgetter(0)
_IN_JSON = "IN (SELECT value FROM json_each(?))"
#: Keys bound per JSON array; keeps each array and its result set modest.
_CHUNK = 2000
#: Row ids remembered before starting afresh: about 100 bytes each.
_ID_MEMORY = 1_000_000

_encode = msgspec.json.encode
_decode_traits = msgspec.json.Decoder(dict[str, StampedValue]).decode
_decode_ids = msgspec.json.Decoder(list[str]).decode
_decode_identifiers = msgspec.json.Decoder(tuple[tuple[str, str], ...]).decode
_decode_value = msgspec.json.Decoder().decode


class SqliteProfileStore:
    """Profiles in the shared SQLite database; see the module docstring for the layout."""

    #: In the background, each table's rows go in one statement (:func:`_bulk`), which SQLite
    #: runs without the GIL, but on this process's CPU: with two cores, the other processes of
    #: ``safar serve`` keep the second busy while events arrive, and the apply's thread only
    #: took time from them (events reached profiles later, not sooner; ADR 16).
    pipeline_cores: int | None = 4

    def __init__(self, db: Database) -> None:
        self._db = db
        # Identifier -> row id. Rows are never deleted or re-keyed, so an id once committed
        # stays right; ids read inside a write transaction are dropped if it fails (a
        # rolled-back insert's id may be reused).
        self._ids: dict[Identifier, int] = {}
        db.migrate("profiles", _MIGRATIONS)

    # -- ProfileReader ---------------------------------------------------------------------------

    def processed_seq(self) -> int:
        with self._read() as conn:
            seq: int = conn.execute("SELECT processed_seq FROM profile_progress").fetchone()[0]
        return seq

    def find(self, identifier: Identifier) -> Profile | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT profile_id FROM profile_identities WHERE type = ? AND value = ?",
                identifier,
            ).fetchone()
            if row is None:
                return None
            pid: str = row[0]
            members = conn.execute(
                "SELECT i.type, i.value, s.first_seen, s.last_seen FROM profile_identities AS i"
                " LEFT JOIN profile_seen AS s ON s.identity = i.id WHERE i.profile_id = ?",
                (pid,),
            ).fetchall()
            state = _state(conn, pid)
        return _profile(pid, members, state)

    def scan(
        self, after_id: str, limit: int, partition: tuple[int, int] | None = None
    ) -> list[Profile]:
        found: list[Profile] = []
        while len(found) < limit:
            with self._read() as conn:
                # SQLite takes bare columns from the row min() picked: one real identifier each.
                page = conn.execute(
                    "SELECT profile_id, type, value, min(id) FROM profile_identities"
                    " WHERE profile_id > ? GROUP BY profile_id ORDER BY profile_id LIMIT ?",
                    (after_id, limit),
                ).fetchall()
            # Ids are cheap to walk; loading a profile is not: other partitions' are skipped.
            heads = [
                (pid, kind, value) for pid, kind, value, _ in page if in_partition(pid, partition)
            ]
            if heads:
                loaded = self.find_many({(kind, value) for _, kind, value in heads})
                by_id = {profile.id: profile for profile in loaded.values()}
                # A profile merged away since the ids were read is no longer one: passed over.
                found += [by_id[pid] for pid, _, _ in heads if pid in by_id]
            if len(page) < limit:
                break
            after_id = page[-1][0]
        return found[:limit]

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        owner: dict[Identifier, str] = {}
        members: dict[str, list[tuple[str, str, int | None, int | None]]] = {}
        states: dict[str, ProfileState] = {}
        with self._read() as conn:
            for kind, chunk in _by_kind(set(identifiers)):
                for value, pid in conn.execute(
                    "SELECT value, profile_id FROM profile_identities"
                    f" WHERE type = ? AND value {_IN_JSON}",
                    (kind, _encode(chunk)),
                ):
                    owner[(kind, value)] = pid
            for chunk in _chunks(sorted(set(owner.values()))):
                ids = _encode(chunk)
                for pid, kind, value, first, last in conn.execute(
                    "SELECT i.profile_id, i.type, i.value, s.first_seen, s.last_seen"
                    " FROM profile_identities AS i LEFT JOIN profile_seen AS s"
                    f" ON s.identity = i.id WHERE i.profile_id {_IN_JSON}",
                    (ids,),
                ):
                    members.setdefault(pid, []).append((kind, value, first, last))
                for pid, traits, merged in conn.execute(
                    f"SELECT id, traits, merged_from FROM profiles WHERE id {_IN_JSON}", (ids,)
                ):
                    states[pid] = ProfileState(
                        id=pid, traits=_decode_traits(traits), merged_from=_decode_ids(merged)
                    )
        profiles = {
            pid: _profile(pid, rows, states.get(pid) or ProfileState(id=pid))
            for pid, rows in members.items()
        }
        return {identifier: profiles[pid] for identifier, pid in owner.items()}

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        if limit <= 0:
            return []
        below = before_seq if before_seq is not None else 2**63 - 1
        with self._read() as conn:
            newest: list[int] = []
            for identity in _identities_of(conn, profile_id):
                newest += [
                    seq
                    for (seq,) in conn.execute(
                        "SELECT seq FROM profile_timeline WHERE identity = ? AND seq < ?"
                        " ORDER BY seq DESC LIMIT ?",
                        (identity, below, limit),
                    )
                ]
        return heapq.nlargest(limit, newest)

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        if limit <= 0:
            return []
        with self._read() as conn:
            rows: list[tuple[int, str, str, bytes, int]] = []
            for identity in _identities_of(conn, profile_id):
                rows += conn.execute(
                    "SELECT timestamp, message_id, key, value, seq FROM profile_trait_writes"
                    " WHERE identity = ? ORDER BY timestamp DESC, message_id DESC, key LIMIT ?",
                    (identity, limit),
                ).fetchall()
        rows.sort(key=lambda row: row[2])
        rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        return [
            TraitChange(key=key, value=_decode_value(value), timestamp=ts, message_id=mid, seq=seq)
            for ts, mid, key, value, seq in rows[:limit]
        ]

    def reshaped(self, after_seq: int, upto_seq: int) -> list[str]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT into_id, other_id FROM profile_merges"
                " WHERE refused = 0 AND seq > ? AND seq <= ?",
                (after_seq, upto_seq),
            ).fetchall()
        return sorted({pid for row in rows for pid in row})

    def merges(self, profile_id: str) -> list[MergeRecord]:
        with self._read() as conn:
            ids = [profile_id, *_state(conn, profile_id).merged_from]
            rows = conn.execute(
                "SELECT into_id, other_id, reason, refused, message_id, at FROM profile_merges"
                f" WHERE into_id {_IN_JSON} OR other_id {_IN_JSON} ORDER BY id",
                (_encode(ids), _encode(ids)),
            ).fetchall()
        return [
            MergeRecord(
                into=into, other=other, reason=reason, refused=bool(refused), message_id=mid, at=at
            )
            for into, other, reason, refused, mid, at in rows
        ]

    # -- ProfileStore ----------------------------------------------------------------------------

    def load(self, identifiers: Collection[Identifier], edge_keys: Collection[str]) -> IdentityView:
        placements: dict[Identifier, Placement] = {}
        edges: dict[str, tuple[int, str]] = {}
        with self._read() as conn:
            for kind, chunk in _by_kind(identifiers):
                for value, identity, pid, cid in conn.execute(
                    "SELECT value, id, profile_id, cluster_id FROM profile_identities"
                    f" WHERE type = ? AND value {_IN_JSON}",
                    (kind, _encode(chunk)),
                ):
                    placements[(kind, value)] = Placement(pid, cid)
                    self._ids[(kind, value)] = identity
            for chunk in _chunks(list(edge_keys)):
                for key, ts, mid in conn.execute(
                    f"SELECT key, timestamp, message_id FROM profile_edges WHERE key {_IN_JSON}",
                    (_encode(chunk),),
                ):
                    edges[key] = (ts, mid)
        return IdentityView(placements=placements, edges=edges)

    def load_clusters(
        self, cluster_ids: Collection[str], profile_ids: Collection[str]
    ) -> ClusterView:
        clusters: dict[str, Cluster] = {}
        wanted = set(profile_ids)
        with self._read() as conn:
            for chunk in _chunks(list(cluster_ids)):
                arg = (_encode(chunk),)
                for kind, value, pid, cid in conn.execute(
                    "SELECT type, value, profile_id, cluster_id FROM profile_identities"
                    f" WHERE cluster_id {_IN_JSON}",
                    arg,
                ):
                    cluster = clusters.get(cid)
                    if cluster is None:
                        cluster = clusters[cid] = Cluster(id=cid, members={}, edges=[])
                    cluster.members[(kind, value)] = pid
                    wanted.add(pid)
                for cid, key, identifiers, ts, mid in conn.execute(
                    "SELECT cluster_id, key, identifiers, timestamp, message_id FROM profile_edges"
                    f" WHERE cluster_id {_IN_JSON}",
                    arg,
                ):
                    clusters[cid].edges.append(
                        Edge(
                            key=key,
                            identifiers=_decode_identifiers(identifiers),
                            timestamp=ts,
                            message_id=mid,
                        )
                    )
            profiles: dict[str, ProfileState] = {}
            for chunk in _chunks(list(wanted)):
                for pid, traits, merged_from in conn.execute(
                    f"SELECT id, traits, merged_from FROM profiles WHERE id {_IN_JSON}",
                    (_encode(chunk),),
                ):
                    profiles[pid] = ProfileState(
                        id=pid, traits=_decode_traits(traits), merged_from=_decode_ids(merged_from)
                    )
        return ClusterView(clusters=clusters, profiles=profiles)

    def trait_writes(self, identifiers: Collection[Identifier]) -> list[TraitWrite]:
        writes: list[TraitWrite] = []
        with self._read() as conn:
            for kind, chunk in _by_kind(identifiers):
                for value, ts, mid, key, raw, seq in conn.execute(
                    "SELECT i.value, w.timestamp, w.message_id, w.key, w.value, w.seq"
                    " FROM profile_identities AS i"
                    " JOIN profile_trait_writes AS w ON w.identity = i.id"
                    f" WHERE i.type = ? AND i.value {_IN_JSON}",
                    (kind, _encode(chunk)),
                ):
                    writes.append(
                        TraitWrite(
                            identifier=(kind, value),
                            key=key,
                            value=_decode_value(raw),
                            timestamp=ts,
                            message_id=mid,
                            seq=seq,
                        )
                    )
        return writes

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        resolved: list[Identifier] = []
        # Here, not in ``load``: that may run on another thread meanwhile (ADR 16), and a
        # memory replaced under the ids looked up in ``_apply`` would lose them.
        if len(self._ids) > _ID_MEMORY:
            self._ids = {}
        try:
            with self._db.write() as conn:
                self._apply(conn, update, resolved, background)
        except BaseException as exc:
            # A rolled-back insert's row id may be reused: forget the ids read in this update.
            for identifier in resolved:
                self._ids.pop(identifier, None)
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"profile update failed on {self._db.path}: {exc}") from exc
            raise

    def _apply(
        self,
        conn: sqlite3.Connection,
        update: ProfileUpdate,
        resolved: list[Identifier],
        background: bool,
    ) -> None:
        """Write ``update``, remembering the row ids it looks up (listed in ``resolved``).

        In the ``background`` (ADR 16) each table's rows go in one statement over a JSON array,
        which SQLite runs without the GIL; otherwise in an ``executemany``, which costs less
        time but takes the GIL back after every row (:class:`_Rows`). Placements and row-id
        lookups take one statement either way."""
        (current,) = conn.execute("SELECT processed_seq FROM profile_progress").fetchone()
        if current != update.after_seq:
            raise StoreError(
                f"profile update computed after seq {update.after_seq}, but the store is at"
                f" {current}: another processor is running"
            )
        if update.fence is not None:
            check_fence(conn, update.fence)
        if update.placements:
            self._place(conn, update.placements, resolved, background)
        blob = _Rows.blob(background)
        ids = self._ids
        try:
            seen = [(ids[i], first, last) for i, (first, last) in update.seen.items()]
        except KeyError:  # identifiers placed by this update, or not remembered
            self._resolve(conn, update.seen.keys(), resolved)
            seen = [(ids[i], first, last) for i, (first, last) in update.seen.items()]
        # In row id order, for the B-tree's sake; by the id alone, which is unique (comparing
        # whole tuples took half as long again).
        seen.sort(key=_FIRST)
        _UPSERT_SEEN.write(conn, seen, background)
        if update.edges:
            edges = [
                (e.key, cid, blob(e.identifiers), e.timestamp, e.message_id)
                for cid, e in update.edges
            ]
            _UPSERT_EDGES.write(conn, edges, background)
        if update.deleted_profiles:
            _bulk(conn, _DELETE_PROFILES, update.deleted_profiles)
        if update.profiles:
            states = [(s.id, blob(s.traits), blob(s.merged_from)) for s in update.profiles]
            _UPSERT_PROFILES.write(conn, states, background)
        try:
            timeline = [(ids[i], seq) for i, seq in update.timeline]
            writes = [(ids[w.identifier], w) for w in update.trait_writes]
        except KeyError:  # identifiers not in ``seen``: rare, and wrong unless placed before
            named = {i for i, _ in update.timeline}
            named.update(w.identifier for w in update.trait_writes)
            self._resolve(conn, named, resolved)
            timeline = [(ids[i], seq) for i, seq in update.timeline]
            writes = [(ids[w.identifier], w) for w in update.trait_writes]
        timeline.sort()
        _INSERT_TIMELINE.write(conn, timeline, background)
        if writes:
            rows = [
                (identity, w.timestamp, w.message_id, w.key, blob(w.value), w.seq)
                for identity, w in writes
            ]
            _INSERT_TRAIT_WRITES.write(conn, rows, background)
        if update.merges:
            merges = [
                (
                    m.into,
                    m.other,
                    m.reason,
                    int(m.refused),
                    m.message_id,
                    m.at,
                    update.processed_seq,
                )
                for m in update.merges
            ]
            _INSERT_MERGES.write(conn, merges, background)
        conn.execute("UPDATE profile_progress SET processed_seq = ?", (update.processed_seq,))

    def _resolve(
        self,
        conn: sqlite3.Connection,
        identifiers: Collection[Identifier],
        resolved: list[Identifier],
    ) -> None:
        """Look up and remember the row ids of ``identifiers`` not remembered, listing them in
        ``resolved``; raises if any has no row."""
        wanted = [i for i in identifiers if i not in self._ids]
        found = _ids(conn, wanted)
        # Keyed by the caller's tuples, not the equal ones built from the rows: the processor
        # hands the same objects batch after batch (its memo of each sender's identifiers), and
        # a key that is the very object looked up compares at once (comparing the strings was
        # about a quarter of the time of these lookups).
        for identifier in wanted:
            identity = found.get(identifier)
            if identity is not None:
                self._ids[identifier] = identity
                resolved.append(identifier)
        if len(found) < len(wanted):
            unplaced = set(wanted) - found.keys()
            raise StoreError(f"profile update names identifiers never placed: {unplaced}")

    def _place(
        self,
        conn: sqlite3.Connection,
        placements: Mapping[Identifier, Placement],
        resolved: list[Identifier],
        background: bool,
    ) -> None:
        """Upsert ``placements`` and remember each identifier's row id, listing them in
        ``resolved``.

        The upsert returns the row ids (``RETURNING``), sparing a second search of the unique
        index per identifier: most placements are new people's. Not in the ``background``,
        where each returned row would wait for the GIL (see :func:`_bulk`): there the ids are
        read in one more statement."""
        rows = [
            (kind, value, p.profile_id, p.cluster_id) for (kind, value), p in placements.items()
        ]
        if background:
            _bulk(conn, _UPSERT_PLACEMENTS, rows)
            returned = _ids(conn, placements)
        else:
            cursor = conn.execute(_UPSERT_PLACEMENTS + _RETURNING_IDS, (_encode(rows),))
            returned = {(kind, value): identity for kind, value, identity in cursor}
        # Keyed by the caller's tuples (see _resolve).
        ids = self._ids
        for identifier in placements:
            ids[identifier] = returned[identifier]
            resolved.append(identifier)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._db.read() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise StoreError(f"profile read failed on {self._db.path}: {exc}") from exc


def _profile(
    pid: str, members: Sequence[tuple[str, str, int | None, int | None]], state: ProfileState
) -> Profile:
    firsts = [first for _, _, first, _ in members if first is not None]
    lasts = [last for _, _, _, last in members if last is not None]
    return Profile(
        id=pid,
        identifiers=by_type((kind, value) for kind, value, _, _ in members),
        traits=values(state.traits),
        first_seen=min(firsts, default=0),
        last_seen=max(lasts, default=0),
        merged_from=state.merged_from,
    )


def _state(conn: sqlite3.Connection, profile_id: str) -> ProfileState:
    row = conn.execute(
        "SELECT traits, merged_from FROM profiles WHERE id = ?", (profile_id,)
    ).fetchone()
    if row is None:
        return ProfileState(id=profile_id)
    return ProfileState(
        id=profile_id, traits=_decode_traits(row[0]), merged_from=_decode_ids(row[1])
    )


def _identities_of(conn: sqlite3.Connection, profile_id: str) -> list[int]:
    return [
        identity
        for (identity,) in conn.execute(
            "SELECT id FROM profile_identities WHERE profile_id = ?", (profile_id,)
        )
    ]


def _bulk(conn: sqlite3.Connection, sql: str, rows: Sequence[Any]) -> None:
    """Run ``sql`` over ``rows``, bound as one JSON array (``json_each(?)``).

    One statement is one step of SQLite's, which Python's driver runs without holding the GIL:
    an ``executemany`` takes the GIL back after every row, and while another thread computes
    (the profile processor's next batch, ADR 16) each of those waits its turn, up to 5 ms."""
    conn.execute(sql, (_encode(rows),))


def _text(value: Any) -> str:
    """``value`` as JSON text, for a BLOB column written by :func:`_bulk`
    (``CAST(value->>n AS BLOB)`` stores the very bytes ``_encode`` would)."""
    return _encode(value).decode()


class _Rows(NamedTuple):
    """A statement writing rows of ``columns`` values, in either of two forms: an
    ``executemany``, or with ``bulk`` one statement over the rows as one JSON array
    (:func:`_bulk`). 72,000 rows took 78–110 ms the one way and 119–147 ms the other; but an
    ``executemany`` beside a thread that computes took 38–47 s, as each row waited up to 5 ms
    for the GIL. Columns listed in ``blobs`` hold JSON documents: bytes for an
    ``executemany``, text in bulk (see :meth:`blob`)."""

    into: str
    columns: int
    tail: str = ""
    blobs: tuple[int, ...] = ()

    @staticmethod
    def blob(bulk: bool) -> Callable[[Any], bytes | str]:
        """How to encode a JSON column's values for a write in that form: as bytes, or as
        text that ``CAST(… AS BLOB)`` stores as the very same bytes."""
        return _text if bulk else _encode

    def write(self, conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], bulk: bool) -> None:
        if bulk:
            picks = ", ".join(
                f"CAST(value->>{n} AS BLOB)" if n in self.blobs else f"value->>{n}"
                for n in range(self.columns)
            )
            _bulk(conn, f"{self.into} SELECT {picks} FROM json_each(?) WHERE true{self.tail}", rows)
        else:
            marks = ", ".join("?" * self.columns)
            conn.executemany(f"{self.into} VALUES ({marks}){self.tail}", rows)


_UPSERT_PLACEMENTS: Final = (
    "INSERT INTO profile_identities(type, value, profile_id, cluster_id)"
    " SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?) WHERE true"
    " ON CONFLICT(type, value) DO UPDATE"
    " SET profile_id = excluded.profile_id, cluster_id = excluded.cluster_id"
)
_RETURNING_IDS: Final = " RETURNING type, value, id"
_UPSERT_SEEN: Final = _Rows(
    "INSERT INTO profile_seen(identity, first_seen, last_seen)",
    3,
    " ON CONFLICT(identity) DO UPDATE SET"
    " first_seen = min(first_seen, excluded.first_seen),"
    " last_seen = max(last_seen, excluded.last_seen)",
)
_UPSERT_EDGES: Final = _Rows(
    "INSERT INTO profile_edges(key, cluster_id, identifiers, timestamp, message_id)",
    5,
    " ON CONFLICT(key) DO UPDATE SET cluster_id = excluded.cluster_id,"
    " timestamp = excluded.timestamp, message_id = excluded.message_id",
    blobs=(2,),
)
_DELETE_PROFILES: Final = f"DELETE FROM profiles WHERE id {_IN_JSON}"
_UPSERT_PROFILES: Final = _Rows(
    "INSERT INTO profiles(id, traits, merged_from)",
    3,
    " ON CONFLICT(id) DO UPDATE SET traits = excluded.traits, merged_from = excluded.merged_from",
    blobs=(1, 2),
)
_INSERT_TIMELINE: Final = _Rows("INSERT OR IGNORE INTO profile_timeline(identity, seq)", 2)
_INSERT_TRAIT_WRITES: Final = _Rows(
    "INSERT OR IGNORE INTO profile_trait_writes(identity, timestamp, message_id, key, value, seq)",
    6,
    blobs=(4,),
)
_INSERT_MERGES: Final = _Rows(
    "INSERT OR IGNORE INTO profile_merges(into_id, other_id, reason, refused, message_id, at, seq)",
    7,
)
#: The row ids of the identifiers in a JSON array of [type, value], as one JSON array of
#: [type, value, id]: one row, so one step (see :func:`_bulk`).
_IDS_OF: Final = (
    "SELECT json_group_array(json_array(i.type, i.value, i.id))"
    " FROM json_each(?) AS j JOIN profile_identities AS i"
    " ON i.type = j.value->>0 AND i.value = j.value->>1"
)
_decode_ids_of = msgspec.json.Decoder(list[tuple[str, str, int]]).decode


def _ids(conn: sqlite3.Connection, identifiers: Iterable[Identifier]) -> dict[Identifier, int]:
    """The row ids of these identifiers (those that have a row)."""
    (found,) = conn.execute(_IDS_OF, (_encode(list(identifiers)),)).fetchone()
    return {(kind, value): identity for kind, value, identity in _decode_ids_of(found)}


def _by_kind(identifiers: Iterable[Identifier]) -> Iterator[tuple[str, list[str]]]:
    """The values of ``identifiers`` per type, in chunks."""
    grouped: dict[str, list[str]] = {}
    for kind, value in identifiers:
        grouped.setdefault(kind, []).append(value)
    for kind, found in grouped.items():
        for chunk in _chunks(found):
            yield kind, chunk


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
