"""Identity resolution's pure core: normalization, extraction, partition and regrouping."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safar.config import IdentitySettings
from safar.core.identity import (
    IdentityRules,
    Memo,
    edge_key,
    extract,
    ids_only,
    normalize_email,
    normalize_identifier,
    normalize_phone,
)
from safar.core.partition import partition
from safar.core.regroup import regroup
from safar.model.events import Event
from safar.model.profiles import Cluster, Edge, Identifier, ProfileState, StampedValue

RULES = IdentityRules(IdentitySettings())

U1: Identifier = ("user_id", "u1")
U2: Identifier = ("user_id", "u2")
A1: Identifier = ("anonymous_id", "a1")
A2: Identifier = ("anonymous_id", "a2")
E1: Identifier = ("email", "e1@x.io")


def event(
    kind: str = "track",
    *,
    user: str | None = None,
    anon: str | None = None,
    ts: int = 1,
    mid: str = "m1",
    **body: Any,
) -> Event:
    return Event(
        source_id="s",
        message_id=mid,
        type=kind,
        user_id=user,
        anonymous_id=anon,
        timestamp=ts,
        received_at=ts,
        body=msgspec.json.encode(body),
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["track", "page", "identify", "alias"]),
            st.sampled_from([None, "u1", " u2 ", "null", ""]),
            st.sampled_from([None, "a1", "a2"]),
            st.sampled_from([{}, {"traits": {"email": "E1@x.io"}}, {"previousId": "a3"}]),
        ),
        max_size=30,
    )
)
def test_a_memo_extracts_what_extract_does(
    stream: list[tuple[str, str | None, str | None, dict[str, Any]]],
) -> None:
    memo = Memo(RULES)
    for n, (kind, user, anon, body) in enumerate(stream):
        one = event(kind, user=user, anon=anon, mid=f"m{n}", **body)
        assert memo.extract(one) == extract(one, RULES)


def edge(ts: int, mid: str, *identifiers: Identifier) -> Edge:
    ordered = tuple(sorted(identifiers, key=RULES.sort_key))
    return Edge(key=edge_key(ordered), identifiers=ordered, timestamp=ts, message_id=mid)


# -- normalization --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Sara@Example.COM ", "sara@example.com"),
        ("a.b+tag@mail.example.co.uk", "a.b+tag@mail.example.co.uk"),
        ("no-at-sign.example.com", None),
        ("@example.com", None),
        ("sara@localhost", None),
        ("sara@example.", None),
        ("sara @example.com", None),
        ("", None),
    ],
)
def test_normalize_email(raw: str, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (415) 555-2671", "1", "+14155552671"),
        ("+44 20 7946 0958", "1", "+442079460958"),
        ("0044 20 7946 0958", "1", "+442079460958"),
        ("(415) 555.2671", "1", "+14155552671"),
        ("0912 345 6789", "98", "+989123456789"),  # national, trunk 0 dropped
        ("۰۹۱۲ ۳۴۵ ۶۷۸۹", "98", "+989123456789"),  # Persian digits
        ("+٩٧١٥٠١٢٣٤٥٦٧", "1", "+971501234567"),  # Arabic-Indic digits
        ("555-12", "1", None),  # too short
        ("+1234567890123456", "1", None),  # too long for E.164
        ("+0123456789", "1", None),  # no country code starts with 0
        ("415-555-2671 ext 5", "1", None),
        ("+1-415-CALL-NOW", "1", None),
        ("", "1", None),
    ],
)
def test_normalize_phone(raw: str, country: str, expected: str | None) -> None:
    assert normalize_phone(raw, country) == expected


def test_normalize_identifier_uses_the_type_and_blocks_placeholders() -> None:
    assert normalize_identifier("email", " Sara@Example.com", RULES) == "sara@example.com"
    assert normalize_identifier("phone", "(415) 555-2671", RULES) == "+14155552671"
    assert normalize_identifier("user_id", "  42 ", RULES) == "42"
    assert normalize_identifier("user_id", " NULL ", RULES) is None
    assert normalize_identifier("email", "not an email", RULES) is None


# -- extraction -----------------------------------------------------------------------------------


def test_track_with_both_ids_is_attributed_to_the_user_first() -> None:
    got = extract(event(user=" u1 ", anon="a1", properties={"x": 1}), RULES)
    assert got.identifiers == (U1, A1)
    assert got.traits is None


def test_identify_reads_email_phone_and_traits() -> None:
    got = extract(
        event(
            "identify",
            user="u1",
            traits={"email": " Sara@X.io ", "phone": "+1 415 555 2671", "name": "Sara"},
        ),
        RULES,
    )
    assert got.identifiers == (U1, ("email", "sara@x.io"), ("phone", "+14155552671"))
    assert got.traits == {"email": " Sara@X.io ", "phone": "+1 415 555 2671", "name": "Sara"}


def test_identify_falls_back_to_context_traits() -> None:
    got = extract(
        event("identify", user="u1", context={"traits": {"email": "s@x.io", "plan": "pro"}}), RULES
    )
    assert ("email", "s@x.io") in got.identifiers
    assert got.traits == {"email": "s@x.io", "plan": "pro"}


def test_any_call_reads_context_traits_but_a_group_calls_traits_are_not_the_persons() -> None:
    track = extract(event(anon="a1", context={"traits": {"email": "s@x.io"}}), RULES)
    assert track.identifiers == (("email", "s@x.io"), A1)
    group = extract(event("group", user="u1", traits={"email": "team@x.io"}), RULES)
    assert group.identifiers == (U1,)
    assert group.traits is None


def test_numeric_phone_and_ids_are_read_as_text() -> None:
    got = extract(event("identify", user="u1", traits={"phone": 4155552671, "crm_id": 77}), RULES)
    assert ("phone", "+14155552671") in got.identifiers
    assert ("crm_id", "77") in got.identifiers


def test_external_ids_are_read_from_context_for_configured_types_only() -> None:
    got = extract(
        event(
            anon="a1",
            context={
                "externalIds": [
                    {"id": "C-9", "type": "crm_id", "collection": "users", "encoding": "none"},
                    {"id": "Z-1", "type": "zendesk_id"},
                    {"id": "C-8", "type": " CRM_ID "},
                    {"type": "crm_id"},
                    "garbage",
                ]
            },
        ),
        RULES,
    )
    assert got.identifiers == (("crm_id", "C-8"), ("crm_id", "C-9"), A1)
    configured = IdentityRules(IdentitySettings(external_ids=["zendesk_id"]))
    got = extract(
        event(anon="a1", context={"externalIds": [{"id": "Z-1", "type": "zendesk_id"}]}), configured
    )
    assert ("zendesk_id", "Z-1") in got.identifiers


@pytest.mark.parametrize("placeholder", ["null", " Undefined ", "0", "N/A", ""])
def test_blocked_values_are_dropped(placeholder: str) -> None:
    got = extract(
        event("identify", user=placeholder, anon="a1", traits={"crm_id": placeholder}), RULES
    )
    assert got.identifiers == (A1,)


def test_identifiers_holding_nul_are_dropped() -> None:
    # Reaching traits and externalIds, which ingestion does not check character by character.
    got = extract(
        event("identify", anon="a1", traits={"email": "a\x00@b.io", "crm_id": "C\x00"}), RULES
    )
    assert got.identifiers == (A1,)


def test_identifiers_over_512_characters_are_dropped() -> None:
    # Events the log took before the API refused such ids, and traits and externalIds, which
    # it does not check: no store can key on them (PostgreSQL's index takes 2,704 bytes).
    long = "x" * 513
    tracked = event(user=long, anon="a1")
    assert extract(tracked, RULES).identifiers == (A1,)
    assert ids_only(long, "a1", RULES) == (A1,)
    got = extract(
        event(
            "identify",
            anon="a1",
            traits={"email": long + "@b.io", "crm_id": long, "phone": "+14155552671"},
            context={"externalIds": [{"id": long, "type": "crm_id"}]},
        ),
        RULES,
    )
    assert set(got.identifiers) == {("phone", "+14155552671"), A1}
    assert extract(event(user="u" * 512, anon="a1"), RULES).identifiers[0] == ("user_id", "u" * 512)


def test_blocked_values_are_configurable() -> None:
    rules = IdentityRules(IdentitySettings(blocked_values=["Guest"]))
    assert extract(event(user="guest", anon="a1"), rules).identifiers == (A1,)
    assert extract(event(user="null", anon="a1"), rules).identifiers == (("user_id", "null"), A1)


def test_alias_reads_previous_id_as_an_anonymous_id() -> None:
    got = extract(event("alias", user="u1", previousId="a-old"), RULES)
    assert got.identifiers == (U1, ("anonymous_id", "a-old"))


def test_priority_is_configurable() -> None:
    rules = IdentityRules(IdentitySettings(priority=["email", "user_id"]))
    got = extract(event("identify", user="u1", anon="a1", traits={"email": "e1@x.io"}), rules)
    assert got.identifiers == (E1, U1, A1)
    rules = IdentityRules(IdentitySettings(priority=["anonymous_id", "user_id"]))
    assert extract(event(user="u1", anon="a1"), rules).identifiers == (A1, U1)


def test_a_body_that_is_not_json_yields_ids_only() -> None:
    broken = msgspec.structs.replace(event("identify", user="u1"), body=b"{not json")
    assert extract(broken, RULES).identifiers == (U1,)
    odd = msgspec.structs.replace(event("track", anon="a1"), body=b'{"context": "x", "traits": 1}')
    assert extract(odd, RULES).identifiers == (A1,)


def test_a_body_nested_too_deep_to_read_yields_ids_only() -> None:
    # Taken before ingestion limited nesting; reading it must not stop the processor.
    deep = b'{"traits": {"email": "a@b.io", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}"
    nested = msgspec.structs.replace(event("identify", user="u1"), body=deep)
    assert extract(nested, RULES).identifiers == (U1,)


def test_edge_key_ignores_order() -> None:
    assert edge_key([U1, A1, E1]) == edge_key([E1, A1, U1])
    assert edge_key([U1, A1]) != edge_key([U1, A2])


# -- partition ------------------------------------------------------------------------------------


def test_an_event_links_its_identifiers() -> None:
    result = partition([A2], [edge(1, "m1", U1, A1, E1)], RULES)
    assert result.cells == [(U1, E1, A1), (A2,)]  # cells by smallest identifier
    assert result.refusals == []


def test_a_link_that_would_join_two_user_ids_is_refused_and_the_earlier_event_wins() -> None:
    first, second = edge(1, "m1", A1, U1), edge(2, "m2", A1, U2)
    for edges in ([first, second], [second, first]):
        result = partition([], edges, RULES)
        assert result.cells == [(U1, A1), (U2,)]
        (refusal,) = result.refusals
        assert (refusal.message_id, refusal.kept, refusal.refused) == ("m2", U2, A1)
        assert (refusal.kind, refusal.limit) == ("user_id", 1)


def test_message_id_breaks_timestamp_ties() -> None:
    result = partition([], [edge(5, "m-b", A1, U2), edge(5, "m-a", A1, U1)], RULES)
    assert (U1, A1) in result.cells


def test_within_an_event_the_highest_priority_cell_absorbs_the_others() -> None:
    # a1 already belongs to u2: the event keeps u1 and e1 together and refuses a1.
    result = partition([], [edge(1, "m1", A1, U2), edge(2, "m2", U1, E1, A1)], RULES)
    assert result.cells == [(U2, A1), (U1, E1)]
    assert [(r.kept, r.refused) for r in result.refusals] == [(U1, A1)]


def test_other_limits_apply_too() -> None:
    rules = IdentityRules(IdentitySettings(limits={"email": 1}))
    emails = [("email", f"{n}@x.io") for n in range(3)]
    result = partition([], [edge(n, f"m{n}", A1, e) for n, e in enumerate(emails)], rules)
    assert (emails[0], A1) in result.cells
    assert len(result.refusals) == 2


IDENTIFIERS = [U1, U2, ("user_id", "u3"), A1, A2, ("anonymous_id", "a3"), E1, ("email", "e2@x.io")]
edge_sets = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.lists(st.sampled_from(IDENTIFIERS), min_size=2, max_size=4, unique=True),
    ),
    max_size=12,
)


def edges_of(drawn: list[tuple[int, list[Identifier]]]) -> list[Edge]:
    return [edge(ts, f"m{n}", *ids) for n, (ts, ids) in enumerate(drawn)]


@given(edge_sets, st.randoms(use_true_random=False))
def test_partition_depends_only_on_the_set_of_edges(
    drawn: list[tuple[int, list[Identifier]]], rnd: Any
) -> None:
    edges = edges_of(drawn)
    shuffled = list(edges)
    rnd.shuffle(shuffled)
    assert partition([], shuffled, RULES) == partition([], edges, RULES)


@given(edge_sets)
def test_partition_covers_every_identifier_once_and_respects_limits(
    drawn: list[tuple[int, list[Identifier]]],
) -> None:
    edges = edges_of(drawn)
    result = partition([A1], edges, RULES)
    flat = [i for cell in result.cells for i in cell]
    assert sorted(flat) == sorted({A1, *(i for e in edges for i in e.identifiers)})
    for cell in result.cells:
        assert sum(1 for kind, _ in cell if kind == "user_id") <= 1


@settings(max_examples=500)
@given(edge_sets, st.data())
def test_an_edge_within_a_cell_never_changes_the_partition(
    drawn: list[tuple[int, list[Identifier]]], data: st.DataObject
) -> None:
    """Why the processor may store such an edge without regrouping, whatever its stamp."""
    stored: dict[str, Edge] = {}  # as a store keeps them: one per set, the earliest stamp
    for e in sorted(edges_of(drawn), key=lambda e: (e.timestamp, e.message_id), reverse=True):
        stored[e.key] = e
    cells = partition([], stored.values(), RULES).cells
    shared = [cell for cell in cells if len(cell) > 1]
    if not shared:
        return
    cell = data.draw(st.sampled_from(shared))
    members = data.draw(st.lists(st.sampled_from(cell), min_size=2, unique=True))
    late = edge(data.draw(st.integers(-1, 6)), "m-late", *members)
    known = stored.get(late.key)
    if known is None or (late.timestamp, late.message_id) < (known.timestamp, known.message_id):
        stored[late.key] = late
    assert sorted(partition([], stored.values(), RULES).cells) == sorted(cells)


# -- regroup --------------------------------------------------------------------------------------


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"p{next(counter)}"


def test_regroup_merges_the_anonymous_profile_into_the_known_one() -> None:
    clusters = [
        Cluster(id="c1", members={A1: "anon"}, edges=[]),
        Cluster(id="c2", members={U1: "known", E1: "known"}, edges=[edge(1, "m1", U1, E1)]),
    ]
    profiles = {
        "anon": ProfileState(id="anon", traits={"plan": StampedValue("free", 1, "m0")}),
        "known": ProfileState(
            id="known", traits={"plan": StampedValue("pro", 5, "m1")}, merged_from=["older"]
        ),
    }
    result = regroup(clusters, profiles, [], [edge(9, "m9", U1, A1)], RULES, ids(), now=100)
    assert result.cluster_id == "c1"
    assert set(result.placements) == {U1, E1, A1}  # all moved to cluster c1
    assert result.profile_of == {U1: "known", E1: "known", A1: "known"}
    assert result.deleted == ["anon"]
    assert result.profiles["known"].merged_from == ["older", "anon"]
    assert result.profiles["known"].traits == {"plan": StampedValue("pro", 5, "m1")}
    (merge,) = result.merges
    assert (merge.into, merge.other, merge.refused, merge.message_id, merge.at) == (
        "known",
        "anon",
        False,
        "m9",
        100,
    )
    assert "anonymous_id:a1" in merge.reason and "user_id:u1" in merge.reason
    assert {e.key for e in result.edges} == {edge(1, "m1", U1, E1).key, edge(9, "m9", U1, A1).key}


def test_regroup_records_a_refusal_once_and_keeps_both_users_apart() -> None:
    clusters = [Cluster(id="c1", members={U1: "p-u1", A1: "p-u1"}, edges=[edge(1, "m1", U1, A1)])]
    profiles = {"p-u1": ProfileState(id="p-u1")}
    result = regroup(clusters, profiles, [U2], [edge(2, "m2", U2, A1)], RULES, ids(), now=7)
    assert result.profile_of == {U1: "p-u1", A1: "p-u1", U2: "p1"}
    (refusal,) = result.merges
    assert (refusal.into, refusal.other, refusal.refused, refusal.message_id) == (
        "p1",
        "p-u1",
        True,
        "m2",
    )
    assert "user_id" in refusal.reason and "at most 1" in refusal.reason
    assert result.deleted == []


def test_a_late_earlier_event_moves_an_identifier_and_keeps_the_users_profile_id() -> None:
    # u2 got a1 first; an earlier event linking a1 to u1 arrives later.
    clusters = [
        Cluster(id="c1", members={U1: "p-u1"}, edges=[]),
        Cluster(id="c2", members={U2: "p-u2", A1: "p-u2"}, edges=[edge(5, "m5", U2, A1)]),
    ]
    profiles = {"p-u1": ProfileState(id="p-u1"), "p-u2": ProfileState(id="p-u2")}
    result = regroup(clusters, profiles, [], [edge(3, "m3", U1, A1)], RULES, ids(), now=7)
    assert result.profile_of == {U1: "p-u1", A1: "p-u1", U2: "p-u2"}
    assert result.recompute == {"p-u1": (U1, A1), "p-u2": (U2,)}
    moved = [m for m in result.merges if not m.refused]
    assert [(m.into, m.other, m.message_id) for m in moved] == [("p-u1", "p-u2", "m3")]
    assert moved[0].reason.startswith("moved anonymous_id:a1")
    refused = [m for m in result.merges if m.refused]
    assert [(m.into, m.other, m.message_id) for m in refused] == [("p-u2", "p-u1", "m5")]


def test_regroup_without_changes_to_a_profile_leaves_it_out() -> None:
    clusters = [Cluster(id="c1", members={U1: "p-u1", A1: "p-u1"}, edges=[edge(1, "m1", U1, A1)])]
    profiles = {"p-u1": ProfileState(id="p-u1")}
    result = regroup(clusters, profiles, [A2], [edge(2, "m2", U1, A2)], RULES, ids(), now=7)
    assert result.profile_of[A2] == "p-u1"
    assert result.profiles == {}  # a new identifier joined; traits and merged_from are unchanged
    assert result.merges == []
    assert set(result.placements) == {A2}


@settings(max_examples=50)
@given(st.data())
def test_regrouping_in_steps_gives_the_partition_of_all_edges(data: st.DataObject) -> None:
    """Feeding edges group by group, in any order, ends where one global replay does."""
    edges = edges_of(data.draw(edge_sets))
    order = data.draw(st.permutations(edges))
    new_id = ids()
    members: dict[Identifier, tuple[str, str]] = {}  # identifier -> (cluster, profile)
    cluster_edges: dict[str, list[Edge]] = {}
    for e in order:
        touched = sorted({members[i][0] for i in e.identifiers if i in members})
        clusters = [
            Cluster(
                id=c,
                members={i: p for i, (cc, p) in members.items() if cc == c},
                edges=cluster_edges.get(c, []),
            )
            for c in touched
        ]
        profiles = {p: ProfileState(id=p) for _, p in members.values()}
        unknown = [i for i in e.identifiers if i not in members]
        result = regroup(clusters, profiles, unknown, [e], RULES, new_id, now=0)
        known = {x.key: x for c in touched for x in cluster_edges.pop(c, [])}
        known.update({x.key: x for x in result.edges})
        cluster_edges[result.cluster_id] = list(known.values())
        for i, placement in result.placements.items():
            members[i] = (placement.cluster_id, placement.profile_id)
    by_profile: dict[str, set[Identifier]] = {}
    for i, (_, p) in members.items():
        by_profile.setdefault(p, set()).add(i)
    expected = partition([], edges, RULES).cells
    assert sorted(sorted(cell) for cell in by_profile.values()) == sorted(
        sorted(cell) for cell in expected
    )
