"""PostgreSQL :class:`safar.ports.ProfileStore`, migration component ``profiles``.

The layout is the SQLite store's (:mod:`safar.stores.sqlite.profiles`), for the same reasons:

- ``profile_identities``: one row per identifier, with its profile and its cluster. Its ``id``
  (an identity column) never changes, so the per-identifier history below stays put when the
  identifier moves to another profile: a move rewrites one row here and nothing else.
- ``profile_seen(identity, first_seen, last_seen)``: updated for nearly every event, so kept
  apart from the identity rows. Every UPDATE in PostgreSQL writes a new row version; here it is
  a narrow one, no indexed column changes and the pages keep free room (``fillfactor``), so the
  new version lands on the same page without touching any index (a HOT update). An upsert that
  would not widen the stored times writes nothing at all.
- ``profile_edges``: the distinct identifier sets events linked, per cluster.
- ``profiles``: traits (with the stamp of the write that set each) and ``merged_from``.
- ``profile_timeline(identity, seq)`` and ``profile_trait_writes``: events and trait writes,
  filed under the identifier each event is attributed to. A profile's timeline is the union over
  its identifiers, so merges and moves rewrite no history; reading takes one short index range
  per identifier (a ``LATERAL`` join, one query).
- ``profile_merges`` (with the processed seq of the batch that stored each record, for
  :meth:`~PgProfileStore.reshaped`) and ``profile_progress`` (the processed seq).

Every indexed text column is ``COLLATE "C"``: ids then order by code point, as Python and SQLite
compare them (scan pages, history order), whatever the database's locale, and byte comparison is
the cheapest in every index.

Batches cost a constant number of statements: reads pass their keys as arrays (``= ANY(…)``;
identifiers as a pair of arrays, types and values), writes pass one array per column to
``INSERT … SELECT FROM unnest(…)``. Arrays are bound in binary (``%b``): psycopg builds a
binary array about three times faster than a text one, and the server reads it without parsing.
Identity row ids come back from the placement upsert (``RETURNING``) or, once read from
committed state, are remembered, so writing a batch rarely needs to look them up.
:meth:`~PgProfileStore.apply` locks the progress row first, so a second processor racing for the
same seq waits for the first to commit, then sees the new seq and is refused.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from itertools import chain
from typing import Any, NamedTuple

import msgspec
import psycopg

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
from safar.stores.postgres.db import PgDatabase
from safar.stores.postgres.leases import check_fence

_MIGRATIONS = [
    """
    CREATE TABLE profile_identities(
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        type TEXT COLLATE "C" NOT NULL,
        value TEXT COLLATE "C" NOT NULL,
        profile_id TEXT COLLATE "C" NOT NULL,
        cluster_id TEXT COLLATE "C" NOT NULL,
        UNIQUE (type, value)
    );
    CREATE INDEX profile_identities_profile ON profile_identities(profile_id);
    CREATE INDEX profile_identities_cluster ON profile_identities(cluster_id);
    CREATE TABLE profile_seen(
        identity BIGINT PRIMARY KEY,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL
    ) WITH (fillfactor = 80);
    CREATE TABLE profile_edges(
        key TEXT COLLATE "C" PRIMARY KEY,
        cluster_id TEXT COLLATE "C" NOT NULL,
        identifiers BYTEA NOT NULL,
        timestamp BIGINT NOT NULL,
        message_id TEXT NOT NULL
    );
    CREATE INDEX profile_edges_cluster ON profile_edges(cluster_id);
    CREATE TABLE profiles(
        id TEXT COLLATE "C" PRIMARY KEY,
        traits BYTEA NOT NULL,
        merged_from BYTEA NOT NULL
    );
    CREATE TABLE profile_timeline(
        identity BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (identity, seq)
    );
    CREATE TABLE profile_trait_writes(
        identity BIGINT NOT NULL,
        timestamp BIGINT NOT NULL,
        message_id TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (identity, timestamp, message_id, key)
    );
    CREATE TABLE profile_merges(
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        into_id TEXT COLLATE "C" NOT NULL,
        other_id TEXT COLLATE "C" NOT NULL,
        reason TEXT NOT NULL,
        refused BOOLEAN NOT NULL,
        message_id TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        UNIQUE (into_id, other_id, message_id, refused)
    );
    CREATE INDEX profile_merges_other ON profile_merges(other_id);
    CREATE INDEX profile_merges_seq ON profile_merges(seq) WHERE NOT refused;
    CREATE TABLE profile_progress(
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        processed_seq BIGINT NOT NULL
    );
    INSERT INTO profile_progress(id, processed_seq) VALUES (1, 0);
    """,
]

# -- Reads ---------------------------------------------------------------------------------------

_PROCESSED_SEQ = "SELECT processed_seq FROM profile_progress WHERE id = 1"
# Identifiers are looked up as (type, value) pairs, one probe of the unique key each, whatever
# the statistics say. ``type = %s AND value = ANY(…)`` was planned, when the table was new or
# small, as a scan of every identifier of the type, and the prepared plan kept that as the table
# grew (~90 ms a batch at 60k identifiers). The LIMIT keeps the subquery from being flattened
# into a join the planner could choose to hash.
_PLACEMENTS_OF = (
    "SELECT w.type, w.value, i.id, i.profile_id, i.cluster_id"
    " FROM unnest(%b::text[], %b::text[]) AS w(type, value) CROSS JOIN LATERAL ("
    "  SELECT id, profile_id, cluster_id FROM profile_identities"
    "  WHERE type = w.type AND value = w.value LIMIT 1) AS i"
)
_MEMBERS_OF_PROFILES = (
    "SELECT i.profile_id, i.type, i.value, s.first_seen, s.last_seen"
    " FROM profile_identities AS i LEFT JOIN profile_seen AS s ON s.identity = i.id"
    " WHERE i.profile_id = ANY(%b::text[])"
)
_STATES_OF = "SELECT id, traits, merged_from FROM profiles WHERE id = ANY(%b::text[])"
# DISTINCT over the profile_id index: an index-only walk, no sort.
_PROFILE_PAGE = (
    "SELECT DISTINCT profile_id FROM profile_identities WHERE profile_id > %s"
    " ORDER BY profile_id LIMIT %s"
)
# The newest ``limit`` of each identifier (one short backward index range each), then of all.
_TIMELINE = (
    "SELECT t.seq FROM profile_identities AS i CROSS JOIN LATERAL ("
    "  SELECT seq FROM profile_timeline WHERE identity = i.id AND seq < %(below)s"
    "  ORDER BY seq DESC LIMIT %(limit)s) AS t"
    " WHERE i.profile_id = %(profile)s ORDER BY t.seq DESC LIMIT %(limit)s"
)
_TRAIT_HISTORY = (
    "SELECT w.timestamp, w.message_id, w.key, w.value, w.seq"
    " FROM profile_identities AS i CROSS JOIN LATERAL ("
    "  SELECT timestamp, message_id, key, value, seq FROM profile_trait_writes"
    "  WHERE identity = i.id ORDER BY timestamp DESC, message_id DESC, key LIMIT %(limit)s) AS w"
    " WHERE i.profile_id = %(profile)s"
    " ORDER BY w.timestamp DESC, w.message_id DESC, w.key LIMIT %(limit)s"
)
_RESHAPED = (
    "SELECT into_id, other_id FROM profile_merges WHERE NOT refused AND seq > %s AND seq <= %s"
)
_MERGED_FROM = "SELECT merged_from FROM profiles WHERE id = %s"
_MERGES_NAMING = (
    "SELECT into_id, other_id, reason, refused, message_id, at FROM profile_merges"
    " WHERE into_id = ANY(%(ids)b::text[]) OR other_id = ANY(%(ids)b::text[]) ORDER BY id"
)
_EDGE_STAMPS = "SELECT key, timestamp, message_id FROM profile_edges WHERE key = ANY(%b::text[])"
_CLUSTER_MEMBERS = (
    "SELECT type, value, profile_id, cluster_id FROM profile_identities"
    " WHERE cluster_id = ANY(%b::text[])"
)
_CLUSTER_EDGES = (
    "SELECT cluster_id, key, identifiers, timestamp, message_id FROM profile_edges"
    " WHERE cluster_id = ANY(%b::text[])"
)
_TRAIT_WRITES_OF = (
    "SELECT k.type, k.value, w.timestamp, w.message_id, w.key, w.value, w.seq"
    " FROM unnest(%b::text[], %b::text[]) AS k(type, value) CROSS JOIN LATERAL ("
    "  SELECT id FROM profile_identities WHERE type = k.type AND value = k.value LIMIT 1) AS i"
    " JOIN profile_trait_writes AS w ON w.identity = i.id"
)

# -- Writes: each takes one array per column (see _columns) --------------------------------------

_LOCK_PROGRESS = "SELECT processed_seq FROM profile_progress WHERE id = 1 FOR UPDATE"
_SET_PROGRESS = "UPDATE profile_progress SET processed_seq = %s WHERE id = 1"
# RETURNING hands back the row id of every identifier placed, new or moved, so the history
# rows below need no lookup for them.
_PLACE = (
    "INSERT INTO profile_identities(type, value, profile_id, cluster_id)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])"
    " ON CONFLICT (type, value) DO UPDATE"
    " SET profile_id = excluded.profile_id, cluster_id = excluded.cluster_id"
    " RETURNING type, value, id"
)
# Only widens; a row whose times already cover the batch's is left as it is (no new version).
_WIDEN_SEEN = (
    "INSERT INTO profile_seen(identity, first_seen, last_seen)"
    " SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[])"
    " ON CONFLICT (identity) DO UPDATE"
    " SET first_seen = least(profile_seen.first_seen, excluded.first_seen),"
    " last_seen = greatest(profile_seen.last_seen, excluded.last_seen)"
    " WHERE excluded.first_seen < profile_seen.first_seen"
    " OR excluded.last_seen > profile_seen.last_seen"
)
_UPSERT_EDGES = (
    "INSERT INTO profile_edges(key, cluster_id, identifiers, timestamp, message_id)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::bytea[], %b::bigint[], %b::text[])"
    " ON CONFLICT (key) DO UPDATE SET cluster_id = excluded.cluster_id,"
    " timestamp = excluded.timestamp, message_id = excluded.message_id"
)
_DELETE_PROFILES = "DELETE FROM profiles WHERE id = ANY(%b::text[])"
_UPSERT_PROFILES = (
    "INSERT INTO profiles(id, traits, merged_from)"
    " SELECT * FROM unnest(%b::text[], %b::bytea[], %b::bytea[])"
    " ON CONFLICT (id) DO UPDATE"
    " SET traits = excluded.traits, merged_from = excluded.merged_from"
)
_ADD_TIMELINE = (
    "INSERT INTO profile_timeline(identity, seq)"
    " SELECT * FROM unnest(%b::bigint[], %b::bigint[]) ON CONFLICT DO NOTHING"
)
_ADD_TRAIT_WRITES = (
    "INSERT INTO profile_trait_writes(identity, timestamp, message_id, key, value, seq)"
    " SELECT * FROM unnest("
    "  %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::bytea[], %b::bigint[])"
    " ON CONFLICT DO NOTHING"
)
# Ordered by position so the records' ids (what merges() orders by) follow the batch's order.
_ADD_MERGES = (
    "INSERT INTO profile_merges(into_id, other_id, reason, refused, message_id, at, seq)"
    " SELECT into_id, other_id, reason, refused, message_id, at, seq FROM unnest("
    "  %b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[], %b::bigint[],"
    "  %b::bigint[]) WITH ORDINALITY"
    "  AS m(into_id, other_id, reason, refused, message_id, at, seq, position)"
    " ORDER BY position ON CONFLICT DO NOTHING"
)

#: Row ids remembered before starting afresh: about 100 bytes each.
_ID_MEMORY = 1_000_000

_encode = msgspec.json.encode
_decode_traits = msgspec.json.Decoder(dict[str, StampedValue]).decode
_decode_ids = msgspec.json.Decoder(list[str]).decode
_decode_identifiers = msgspec.json.Decoder(tuple[tuple[str, str], ...]).decode
_decode_value = msgspec.json.Decoder().decode

#: One identifier of a profile: type, value, first and last seen (None before any event).
_Member = tuple[str, str, int | None, int | None]


class PgProfileStore:
    """Profiles in the shared PostgreSQL database; see the module docstring for the layout."""

    #: The apply mostly waits for the server: the processor ran 1.22–1.35× as fast pipelined
    #: even on two cores shared with the server (ADR 16).
    pipeline_cores: int | None = 1

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        # Identifier -> row id. Rows are never deleted or re-keyed, so an id once committed stays
        # right. Safe only because one processor writes at a time (the port's contract).
        self._ids: dict[Identifier, int] = {}
        db.migrate("profiles", _MIGRATIONS)

    # -- ProfileReader ---------------------------------------------------------------------------

    def processed_seq(self) -> int:
        with self._db.read() as conn:
            return int(_one(conn.execute(_PROCESSED_SEQ).fetchone()))

    def find(self, identifier: Identifier) -> Profile | None:
        return self.find_many([identifier]).get(identifier)

    def scan(
        self, after_id: str, limit: int, partition: tuple[int, int] | None = None
    ) -> list[Profile]:
        found: list[Profile] = []
        with self._db.read() as conn:
            while len(found) < limit:
                page = [pid for (pid,) in conn.execute(_PROFILE_PAGE, (after_id, limit))]
                # Ids are cheap to walk; loading a profile is not: other partitions' are skipped.
                kept = [pid for pid in page if in_partition(pid, partition)]
                loaded = _profiles(conn, kept) if kept else {}
                # A profile merged away since the ids were read is no longer one: passed over.
                found += [loaded[pid] for pid in kept if pid in loaded]
                if len(page) < limit:
                    break
                after_id = page[-1]
        return found[:limit]

    def find_many(self, identifiers: Collection[Identifier]) -> dict[Identifier, Profile]:
        if not identifiers:
            return {}
        owner: dict[Identifier, str] = {}
        with self._db.read() as conn:
            for kind, value, _, pid, _ in conn.execute(_PLACEMENTS_OF, _pairs(identifiers)):
                owner[(kind, value)] = pid
            found = _profiles(conn, sorted(set(owner.values())))
        return {identifier: found[pid] for identifier, pid in owner.items() if pid in found}

    def timeline(self, profile_id: str, limit: int, before_seq: int | None = None) -> list[int]:
        if limit <= 0:
            return []
        below = before_seq if before_seq is not None else 2**63 - 1
        params = {"profile": profile_id, "below": below, "limit": limit}
        with self._db.read() as conn:
            return [seq for (seq,) in conn.execute(_TIMELINE, params)]

    def trait_history(self, profile_id: str, limit: int) -> list[TraitChange]:
        if limit <= 0:
            return []
        with self._db.read() as conn:
            rows = conn.execute(_TRAIT_HISTORY, {"profile": profile_id, "limit": limit})
            return [
                TraitChange(
                    key=key, value=_decode_value(raw), timestamp=ts, message_id=mid, seq=seq
                )
                for ts, mid, key, raw, seq in rows
            ]

    def reshaped(self, after_seq: int, upto_seq: int) -> list[str]:
        with self._db.read() as conn:
            rows = conn.execute(_RESHAPED, (after_seq, upto_seq)).fetchall()
        return sorted({pid for row in rows for pid in row})

    def merges(self, profile_id: str) -> list[MergeRecord]:
        with self._db.read() as conn:
            row = conn.execute(_MERGED_FROM, (profile_id,)).fetchone()
            merged_from = _decode_ids(row[0]) if row else []
            rows = conn.execute(_MERGES_NAMING, {"ids": [profile_id, *merged_from]}).fetchall()
        return [
            MergeRecord(
                into=into, other=other, reason=reason, refused=refused, message_id=mid, at=at
            )
            for into, other, reason, refused, mid, at in rows
        ]

    # -- ProfileStore ----------------------------------------------------------------------------

    def load(self, identifiers: Collection[Identifier], edge_keys: Collection[str]) -> IdentityView:
        placements: dict[Identifier, Placement] = {}
        with self._db.read() as conn:
            if identifiers:
                for kind, value, identity, pid, cid in conn.execute(
                    _PLACEMENTS_OF, _pairs(identifiers)
                ):
                    placements[(kind, value)] = Placement(pid, cid)
                    self._ids[(kind, value)] = identity
            edges = _edge_stamps(conn, list(edge_keys)) if edge_keys else {}
        return IdentityView(placements=placements, edges=edges)

    def load_clusters(
        self, cluster_ids: Collection[str], profile_ids: Collection[str]
    ) -> ClusterView:
        clusters: dict[str, Cluster] = {}
        wanted = set(profile_ids)
        with self._db.read() as conn:
            if cluster_ids:
                clusters = _clusters(conn, list(cluster_ids))
            for cluster in clusters.values():
                wanted.update(cluster.members.values())
            profiles = _states(conn, sorted(wanted))
        return ClusterView(clusters=clusters, profiles=profiles)

    def trait_writes(self, identifiers: Collection[Identifier]) -> list[TraitWrite]:
        if not identifiers:
            return []
        with self._db.read() as conn:
            return [
                TraitWrite(
                    identifier=(kind, value),
                    key=key,
                    value=_decode_value(raw),
                    timestamp=ts,
                    message_id=mid,
                    seq=seq,
                )
                for kind, value, ts, mid, key, raw, seq in conn.execute(
                    _TRAIT_WRITES_OF, _pairs(identifiers)
                )
            ]

    def apply(self, update: ProfileUpdate, *, background: bool = False) -> None:
        learned: list[Identifier] = []
        # Here, not in ``load``: that may run on another thread meanwhile (ADR 16), and a
        # memory replaced during ``_apply`` would lose the ids it just learned.
        if len(self._ids) > _ID_MEMORY:
            self._ids = {}
        try:
            with self._db.write() as conn:
                self._apply(conn, update, learned)
        except BaseException:
            # The rows this transaction inserted are gone, and an identifier inserted again gets
            # a new id: forget every id learned inside it.
            for identifier in learned:
                self._ids.pop(identifier, None)
            raise

    def _apply(
        self, conn: psycopg.Connection, update: ProfileUpdate, learned: list[Identifier]
    ) -> None:
        """Write ``update``, remembering the row ids it learns (listed in ``learned``)."""
        _check_progress(conn, update.after_seq)
        if update.fence is not None:
            check_fence(conn, update.fence)
        # One statement at a time, not in a pipeline: a process frozen (SIGSTOP, a paused VM)
        # in the middle of one keeps the locks taken above, since the server's
        # idle-in-transaction timeout does not run while a pipeline is open, and no standby
        # could take over (see PgDatabase.write).
        placed = _place(conn, update.placements) if update.placements else None
        if placed is not None:
            for kind, value, identity in placed.fetchall():
                self._ids[(kind, value)] = identity
                learned.append((kind, value))
        _store_edges(conn, update)
        _store_profiles(conn, update)
        _store_merges(conn, update)
        try:
            history = _History.of(update, self._ids)
        except KeyError:  # identifiers this process has not seen placed: look them up
            self._resolve(conn, _named(update), learned)
            history = _History.of(update, self._ids)
        history.store(conn)
        conn.execute(_SET_PROGRESS, (update.processed_seq,))

    def _resolve(
        self,
        conn: psycopg.Connection,
        identifiers: Iterable[Identifier],
        learned: list[Identifier],
    ) -> None:
        """Look up and remember the row ids of ``identifiers`` not remembered, listing them in
        ``learned``; raises if any has no row."""
        wanted = {i for i in identifiers if i not in self._ids}
        if not wanted:
            return
        for kind, value, identity, _, _ in conn.execute(_PLACEMENTS_OF, _pairs(wanted)):
            self._ids[(kind, value)] = identity
            learned.append((kind, value))
        unplaced = {i for i in wanted if i not in self._ids}
        if unplaced:
            raise StoreError(f"profile update names identifiers never placed: {unplaced}")


def _check_progress(conn: psycopg.Connection, after_seq: int) -> None:
    """Lock the progress row until commit; raise unless it is at ``after_seq``."""
    current = _one(conn.execute(_LOCK_PROGRESS).fetchone())
    if current != after_seq:
        raise StoreError(
            f"profile update computed after seq {after_seq}, but the store is at {current}:"
            " another processor is running"
        )


def _place(conn: psycopg.Connection, placements: dict[Identifier, Placement]) -> psycopg.Cursor:
    """Send the upsert of ``placements``; its rows are (type, value, row id) of each."""
    rows = [(k, v, p.profile_id, p.cluster_id) for (k, v), p in placements.items()]
    return conn.execute(_PLACE, _columns(rows))


def _named(update: ProfileUpdate) -> Iterable[Identifier]:
    """The identifiers ``update`` files times or history under."""
    return chain(
        update.seen,
        (identifier for identifier, _ in update.timeline),
        (w.identifier for w in update.trait_writes),
    )


class _History(NamedTuple):
    """An update's seen times, timeline rows and trait writes, filed by identity row id."""

    seen: list[tuple[int, int, int]]
    timeline: list[tuple[int, int]]
    writes: list[tuple[int, int, str, str, bytes, int]]

    @classmethod
    def of(cls, update: ProfileUpdate, ids: dict[Identifier, int]) -> _History:
        """The rows of ``update``; raises KeyError for an identifier missing from ``ids``."""
        # Sorted by row id, so the index pages are visited in order.
        return cls(
            seen=sorted((ids[i], first, last) for i, (first, last) in update.seen.items()),
            timeline=sorted((ids[i], seq) for i, seq in update.timeline),
            writes=[
                (ids[w.identifier], w.timestamp, w.message_id, w.key, _encode(w.value), w.seq)
                for w in update.trait_writes
            ],
        )

    def store(self, conn: psycopg.Connection) -> None:
        """Widen the seen times, add the timeline rows and the trait writes."""
        _insert(conn, _WIDEN_SEEN, self.seen)
        _insert(conn, _ADD_TIMELINE, self.timeline)
        _insert(conn, _ADD_TRAIT_WRITES, self.writes)


def _store_merges(conn: psycopg.Connection, update: ProfileUpdate) -> None:
    """Add the merge records, each stamped with the batch's processed seq (for reshaped())."""
    records = [
        (m.into, m.other, m.reason, m.refused, m.message_id, m.at, update.processed_seq)
        for m in update.merges
    ]
    _insert(conn, _ADD_MERGES, records)


def _store_edges(conn: psycopg.Connection, update: ProfileUpdate) -> None:
    # One row per key (the last given wins): an upsert may not touch a row twice.
    latest = {
        edge.key: (edge.key, cid, _encode(edge.identifiers), edge.timestamp, edge.message_id)
        for cid, edge in update.edges
    }
    _insert(conn, _UPSERT_EDGES, list(latest.values()))


def _store_profiles(conn: psycopg.Connection, update: ProfileUpdate) -> None:
    """Delete the merged-away profiles, then upsert the changed ones (the last given wins)."""
    if update.deleted_profiles:
        conn.execute(_DELETE_PROFILES, (list(update.deleted_profiles),))
    latest = {
        state.id: (state.id, _encode(state.traits), _encode(state.merged_from))
        for state in update.profiles
    }
    _insert(conn, _UPSERT_PROFILES, list(latest.values()))


def _insert(conn: psycopg.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run ``sql`` (an INSERT from ``unnest`` of one array per column) on ``rows``, if any: one
    statement however many rows."""
    if rows:
        conn.execute(sql, _columns(rows))


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """``rows`` as one list per column, to bind as arrays."""
    return [list(column) for column in zip(*rows, strict=True)]


def _edge_stamps(conn: psycopg.Connection, keys: list[str]) -> dict[str, tuple[int, str]]:
    """Key -> (timestamp, message_id) of the stored edges among ``keys``."""
    return {key: (ts, mid) for key, ts, mid in conn.execute(_EDGE_STAMPS, (keys,))}


def _clusters(conn: psycopg.Connection, cluster_ids: list[str]) -> dict[str, Cluster]:
    """The stored clusters among ``cluster_ids``, with their members and edges."""
    clusters: dict[str, Cluster] = {}
    for kind, value, pid, cid in conn.execute(_CLUSTER_MEMBERS, (cluster_ids,)):
        cluster = clusters.get(cid)
        if cluster is None:
            cluster = clusters[cid] = Cluster(id=cid, members={}, edges=[])
        cluster.members[(kind, value)] = pid
    for cid, key, identifiers, ts, mid in conn.execute(_CLUSTER_EDGES, (cluster_ids,)):
        if cid in clusters:  # a cluster is its members; edges never outlive them
            edge = Edge(
                key=key, identifiers=_decode_identifiers(identifiers), timestamp=ts, message_id=mid
            )
            clusters[cid].edges.append(edge)
    return clusters


def _profiles(conn: psycopg.Connection, profile_ids: list[str]) -> dict[str, Profile]:
    """The profiles with these ids that hold at least one identifier."""
    if not profile_ids:
        return {}
    members: dict[str, list[_Member]] = {}
    for pid, kind, value, first, last in conn.execute(_MEMBERS_OF_PROFILES, (profile_ids,)):
        members.setdefault(pid, []).append((kind, value, first, last))
    states = _states(conn, list(members))
    return {
        pid: _profile(pid, rows, states.get(pid) or ProfileState(id=pid))
        for pid, rows in members.items()
    }


def _states(conn: psycopg.Connection, profile_ids: list[str]) -> dict[str, ProfileState]:
    """The stored states of these profiles (those that have one)."""
    if not profile_ids:
        return {}
    return {
        pid: ProfileState(id=pid, traits=_decode_traits(traits), merged_from=_decode_ids(merged))
        for pid, traits, merged in conn.execute(_STATES_OF, (profile_ids,))
    }


def _profile(pid: str, members: Sequence[_Member], state: ProfileState) -> Profile:
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


def _pairs(identifiers: Iterable[Identifier]) -> tuple[list[str], list[str]]:
    """The types and the values of ``identifiers``, each once, as the two arrays that
    :data:`_PLACEMENTS_OF` and :data:`_TRAIT_WRITES_OF` take."""
    unique = dict.fromkeys(identifiers)
    return [kind for kind, _ in unique], [value for _, value in unique]


def _one(row: tuple[Any, ...] | None) -> Any:
    """The single value of a row that always exists (the progress row)."""
    if row is None:
        raise StoreError("profile_progress has no row: the profiles schema is damaged")
    return row[0]
