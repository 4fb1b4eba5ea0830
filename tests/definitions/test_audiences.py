"""Segment and computed-trait files: reading, checks across the set, and ``safar validate``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from safar.definitions import (
    DefinitionError,
    Problem,
    audience_kind,
    load_audience,
    parse_audience,
    segment_dependencies,
    topological_order,
    validate_audiences,
    validate_paths,
)
from safar.definitions.audiences import MAX_CONDITION_DEPTH
from safar.definitions.yamlsource import load
from safar.model.audiences import (
    Aggregate,
    AllOf,
    AnyOf,
    ComputedTrait,
    Condition,
    ConsentCondition,
    IdentifierCondition,
    MemberCondition,
    Not,
    PerformedCondition,
    ProfileCondition,
    Segment,
    TraitCondition,
)

from .conftest import EXAMPLE

AUDIENCES = EXAMPLE.parents[1] / "audiences"


def problems_of(text: str, origin: str = "segments/s.yaml") -> list[str]:
    """The problems reading ``text`` raises, as editors show them."""
    with pytest.raises(DefinitionError) as caught:
        parse_audience(textwrap.dedent(text), origin)
    return [str(problem) for problem in caught.value.problems]


def segment_problems(where: str) -> list[str]:
    """The problems of a segment whose ``where`` is ``where`` (lines count from ``where:``, 3)."""
    return problems_of("id: s\nname: S\nwhere:\n" + textwrap.indent(textwrap.dedent(where), "  "))


def checked(*texts: str, known: tuple[str, ...] = ()) -> list[str]:
    """``validate_audiences`` over files ``0.yaml``, ``1.yaml`` ... holding ``texts``."""
    definitions = []
    lines = {}
    for index, text in enumerate(texts):
        definition, line_map = load_audience(textwrap.dedent(text), f"{index}.yaml")
        definitions.append(definition)
        lines[f"{index}.yaml"] = line_map
    return [str(p) for p in validate_audiences(definitions, lines, known_segments=known)]


def segment(id: str, where: str) -> str:
    return f"id: {id}\nname: {id.title()}\nwhere: {where}\n"


# -- Reading --------------------------------------------------------------------------------

EVERY_KIND = """\
id: everything
name: Every kind of condition
description: one of each
webhook: https://crm.example.com/hooks/safar
where:
  any:
    - trait: vip
      eq: true
    - {trait: plan, in: [gold, platinum]}
    - {trait: signed_up, gte: 2026-01-31}
    - {trait: nickname, exists: true}
    - identifier: crm_id
    - consent: {channel: sms, subscribed: false}
    - consent: {channel: email, category: news}
    - member: vip-lapsed
    - performed: Order Completed
      where: event.properties.revenue > 100
      within: 30d
      exactly: 2
    - performed: Ticket Opened
    - profile: profile.traits.age >= 18
    - all:
        - not:
            performed: Order Completed
            at_most: 0
"""


def test_every_kind_of_condition_reads_with_its_line() -> None:
    parsed = parse_audience(EVERY_KIND, "segments/everything.yaml")
    assert parsed == Segment(
        id="everything",
        name="Every kind of condition",
        description="one of each",
        webhook="https://crm.example.com/hooks/safar",
        origin="segments/everything.yaml",
        where=AnyOf(
            line=5,
            conditions=(
                TraitCondition(line=7, trait="vip", op="eq", value=True),
                TraitCondition(line=9, trait="plan", op="in", value=["gold", "platinum"]),
                TraitCondition(line=10, trait="signed_up", op="gte", value="2026-01-31"),
                TraitCondition(line=11, trait="nickname", op="exists", value=None),
                IdentifierCondition(line=12, type="crm_id"),
                ConsentCondition(line=13, channel="sms", category="marketing", subscribed=False),
                ConsentCondition(line=14, channel="email", category="news", subscribed=True),
                MemberCondition(line=15, segment="vip-lapsed"),
                PerformedCondition(
                    line=16,
                    aggregate=Aggregate(
                        event="Order Completed",
                        where="event.properties.revenue > 100",
                        within_ms=30 * 86_400_000,
                    ),
                    op="eq",
                    times=2,
                ),
                PerformedCondition(
                    line=20, aggregate=Aggregate(event="Ticket Opened"), op="gte", times=1
                ),
                ProfileCondition(line=21, where="profile.traits.age >= 18"),
                AllOf(
                    line=22,
                    conditions=(
                        Not(
                            line=23,
                            condition=PerformedCondition(
                                line=23,
                                aggregate=Aggregate(event="Order Completed"),
                                op="lte",
                                times=0,
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )
    assert validate_audiences([parsed], known_segments=["vip-lapsed"]) == []


def test_a_computed_trait_reads_with_defaults() -> None:
    text = "id: orders\ncompute:\n  event: Order Completed\n"
    assert parse_audience(text) == ComputedTrait(
        id="orders", aggregate=Aggregate(event="Order Completed", kind="count")
    )
    text = textwrap.dedent(
        """\
        id: spend
        name: Spend
        description: Revenue in 90 days
        compute:
          event: Order Completed
          kind: sum
          where: event.properties.currency == "EUR"
          value: properties.revenue
          within: 90d
        """
    )
    trait, lines = load_audience(text, "traits/spend.yaml")
    assert trait == ComputedTrait(
        id="spend",
        name="Spend",
        description="Revenue in 90 days",
        aggregate=Aggregate(
            event="Order Completed",
            kind="sum",
            where='event.properties.currency == "EUR"',
            value="properties.revenue",
            within_ms=90 * 86_400_000,
        ),
        origin="traits/spend.yaml",
    )
    assert lines["compute.value"] == 8


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("compute: {event: A}\nwhere: x\n", "computed_trait"),
        ("where: {member: a}\n", "segment"),
        ("where: {member: a}\nsteps: []\n", None),
        ("where: {member: a}\nentry: {event: A}\n", None),
        ("quiet_hours: false\n", None),
        ("- where\n", None),
    ],
)
def test_the_kind_of_a_file(text: str, kind: str | None) -> None:
    assert audience_kind(load(text, "f.yaml")) == kind


def test_neither_kind() -> None:
    assert problems_of("id: x\nname: X\n", "x.yaml") == [
        "x.yaml:1: neither a segment (no 'where') nor a computed trait (no 'compute')"
    ]


# -- Mistakes in one file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param(
            "trait: vip\neq: true\neqq: 1\n",
            ["segments/s.yaml:6: where.eqq: unknown key 'eqq' (did you mean 'eq'?)"],
            id="unknown-operator",
        ),
        pytest.param(
            "trit: vip\neq: true\n",
            [
                "segments/s.yaml:3: where: a condition needs one of: trait, identifier, consent, "
                "member, performed, profile, all, any, not",
                "segments/s.yaml:4: where.trit: unknown key 'trit' (did you mean 'trait'?)",
            ],
            id="unknown-kind",
        ),
        pytest.param(
            "member: vip\nwithin: 3d\n",
            ["segments/s.yaml:5: where.within: unknown key 'within'; allowed here: member"],
            id="option-of-another-kind",
        ),
        pytest.param(
            "all:\n  - trait: vip\n",
            [
                "segments/s.yaml:5: where.all[0].trait: no operator for trait 'vip'; give one of "
                "eq, ne, gt, gte, lt, lte, in, not_in, contains, exists, missing"
            ],
            id="missing-operator",
        ),
        pytest.param(
            "trait: vip\neq: true\nne: false\n",
            [
                "segments/s.yaml:6: where.ne: one operator per condition, this one has eq "
                "already; use all:"
            ],
            id="two-operators",
        ),
        pytest.param(
            "trait: plan\nin: gold\n",
            ["segments/s.yaml:5: where.in: expected a list, e.g. [gold, platinum], got the text "],
            id="in-without-a-list",
        ),
        pytest.param(
            "trait: age\ngt: true\n",
            ["segments/s.yaml:5: where.gt: expected a number, or text"],
            id="gt-with-a-boolean",
        ),
        pytest.param(
            "trait: nickname\neq:\n",
            [
                "segments/s.yaml:5: where.eq: expected a value (for a trait that is not set, write "
                "missing: true), got nothing (null)"
            ],
            id="eq-null",
        ),
        pytest.param(
            "trait: email\nexists: false\n",
            ["segments/s.yaml:5: where.exists: expected true, got false"],
            id="exists-false",
        ),
        pytest.param(
            "performed: Order Completed\nwithin: 30 days\n",
            ["segments/s.yaml:5: where.within: bad duration '30 days'"],
            id="bad-duration",
        ),
        pytest.param(
            "performed: Order Completed\nat_least: 1\nexactly: 2\n",
            [
                "segments/s.yaml:6: where.exactly: give one of at_least, at_most, exactly; this "
                "condition has at_least already"
            ],
            id="two-counts",
        ),
        pytest.param(
            "performed: Order Completed\nat_most: -1\n",
            ["segments/s.yaml:5: where.at_most: must be 0 or more"],
            id="negative-count",
        ),
        pytest.param(
            "performed: Order Completed\nat_least: 1.5\n",
            ["segments/s.yaml:5: where.at_least: expected a whole number, got the number 1.5"],
            id="fractional-count",
        ),
        pytest.param(
            "consent: {channel: pigeon}\n",
            ["segments/s.yaml:4: where.consent.channel: expected one of email, sms, webhook"],
            id="unknown-channel",
        ),
        pytest.param(
            "consent: {subscribed: true}\n",
            ["segments/s.yaml:4: where.consent.channel: required but missing"],
            id="consent-without-channel",
        ),
        pytest.param(
            "identifier: e mail\n",
            ["segments/s.yaml:4: where.identifier: bad identifier type 'e mail'"],
            id="identifier-not-a-word",
        ),
        pytest.param(
            "all: []\n",
            ["segments/s.yaml:4: where.all: needs at least one condition"],
            id="empty-all",
        ),
        pytest.param(
            "not:\n  any: []\n",
            ["segments/s.yaml:5: where.not.any: needs at least one condition"],
            id="empty-any",
        ),
        pytest.param(
            "any: {trait: vip, eq: true}\n",
            ["segments/s.yaml:4: where.any: expected a list, got a mapping"],
            id="any-without-a-list",
        ),
        pytest.param(
            "trait: vip\neq: true\nmember: vips\n",
            [
                "segments/s.yaml:3: where: a condition is one thing, this one has trait and "
                "member; use all: [...]"
            ],
            id="two-kinds",
        ),
        pytest.param(
            "all:\n  - vip\n",
            [
                "segments/s.yaml:5: where.all[0]: expected a mapping with trait, identifier, "
                "consent, member, performed, profile, all, any, not, got the text 'vip'"
            ],
            id="not-a-mapping",
        ),
    ],
)
def test_mistakes_in_conditions(where: str, expected: list[str]) -> None:
    found = segment_problems(where)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_mistakes_at_the_top_of_a_segment() -> None:
    assert problems_of("id: s\nwhere: {member: x}\nwebook: https://x\n") == [
        "segments/s.yaml:1: name: required but missing",
        "segments/s.yaml:3: webook: unknown key 'webook' (did you mean 'webhook'?); allowed "
        "here: id, name, description, where, webhook",
    ]
    assert problems_of("id: s\nname: S\nwhere: profile.traits.vip\n") == [
        "segments/s.yaml:3: where: expected a mapping with trait, identifier, consent, member, "
        "performed, profile, all, any, not, got the text 'profile.traits.vip'"
    ]


@pytest.mark.parametrize(
    ("compute", "expected"),
    [
        pytest.param(
            "{event: Order Completed, kind: sum}",
            "traits/t.yaml:2: compute.value: required for kind sum",
            id="value-missing-for-sum",
        ),
        pytest.param(
            "{event: Order Completed, kind: count, value: properties.revenue}",
            "traits/t.yaml:2: compute.value: not allowed for kind count",
            id="value-given-for-count",
        ),
        pytest.param(
            "{event: Order Completed, kind: days_since, value: properties.revenue}",
            "traits/t.yaml:2: compute.value: not allowed for kind days_since",
            id="value-given-for-days-since",
        ),
        pytest.param(
            "{event: Order Completed, kind: max, value: properties..revenue}",
            "traits/t.yaml:2: compute.value: bad path 'properties..revenue'",
            id="bad-path",
        ),
        pytest.param(
            "{event: Order Completed, kind: median, value: properties.revenue}",
            "traits/t.yaml:2: compute.kind: expected one of count, sum, avg",
            id="unknown-kind",
        ),
        pytest.param(
            "{event: Order Completed, within: 1 month}",
            "traits/t.yaml:2: compute.within: bad duration '1 month'",
            id="bad-duration",
        ),
        pytest.param(
            "{kind: count}", "traits/t.yaml:2: compute.event: required but missing", id="no-event"
        ),
        pytest.param(
            "{event: A, wher: x}",
            "traits/t.yaml:2: compute.wher: unknown key 'wher' (did you mean 'where'?)",
            id="unknown-key",
        ),
    ],
)
def test_mistakes_in_computed_traits(compute: str, expected: str) -> None:
    [found] = problems_of(f"id: t\ncompute: {compute}\n", "traits/t.yaml")
    assert found.startswith(expected), found


def nested(depth: int) -> str:
    return "\n".join("  " * level + "not:" for level in range(depth - 1)) + (
        "\n" + "  " * (depth - 1) + "member: x\n"
    )


def test_conditions_nest_at_most_32_deep() -> None:
    deepest = parse_audience(segment("s", "") + textwrap.indent(nested(32), "  "))
    assert isinstance(deepest, Segment)
    assert validate_audiences([deepest], known_segments=["x"]) == []
    [found] = segment_problems(nested(MAX_CONDITION_DEPTH + 1))
    assert found.startswith(
        "segments/s.yaml:35: where" + ".not" * 32 + ": conditions nested more than 32 deep"
    )


def test_deep_trees_built_in_python_are_reported_not_recursed() -> None:
    where: Condition = MemberCondition(segment="x")
    for _ in range(5000):
        where = Not(condition=where)
    [problem] = validate_audiences([Segment(id="s", name="S", where=where)], known_segments=["x"])
    assert problem.field == "where" + ".not" * 31
    assert problem.message.startswith("conditions nested more than 32 deep")


# -- Checks across the set ------------------------------------------------------------------


def test_conditions_are_compiled() -> None:
    found = checked(
        """\
        id: s
        name: S
        where:
          all:
            - performed: Order Completed
              where: event.properties.revenue >
            - profile: event.name == "x"
            - profile: profile.traits.age >= 18 && now > 0
        """,
        "id: t\ncompute:\n  event: A\n  where: profile.traits.vip\n",
    )
    assert found == [
        "0.yaml:6: where.all[0].where: bad condition: expected an expression but found end of "
        "expression (at column 27 of the condition)",
        "0.yaml:7: where.all[1].profile: bad condition: unknown variable 'event' (known: now, "
        "profile) (at column 1 of the condition)",
        "1.yaml:4: compute.where: bad condition: unknown variable 'profile' (known: event) (at "
        "column 1 of the condition)",
    ]


def test_member_names_a_segment() -> None:
    found = checked(
        segment("vip-lapsed", "{trait: vip, eq: true}"),
        segment("s", "{any: [{member: vip-lapsd}, {member: orders}, {member: published}]}"),
        "id: orders\ncompute: {event: Order Completed}\n",
        known=("published",),
    )
    assert found == [
        "1.yaml:3: where.any[0].member: no segment 'vip-lapsd' (did you mean 'vip-lapsed'?)",
        "1.yaml:3: where.any[1].member: 'orders' is a computed trait, not a segment; use "
        "trait: orders",
    ]


def test_member_cycles_are_named() -> None:
    found = checked(
        segment("a", "{all: [{trait: vip, eq: true}, {member: b}]}"),
        segment("b", "\n  not:\n    member: c"),
        segment("c", "{member: a}"),
        segment("d", "{any: [{member: d}, {member: d}]}"),
        segment("e", "{member: a}"),
    )
    assert found == [
        "2.yaml:3: where.member: segments refer to each other in a cycle through member: "
        "'a' -> 'b' -> 'c' -> 'a'",
        "3.yaml:3: where.any[0].member: segment 'd' refers to itself ('d' -> 'd') through member:",
    ]


def test_ids_are_shared_by_segments_and_computed_traits() -> None:
    found = checked(
        segment("orders", "{trait: vip, eq: true}"),
        "id: orders\ncompute: {event: Order Completed}\n",
        "id: -bad\ncompute: {event: Order Completed}\n",
        segment("orders", "{trait: vip, eq: false}"),
    )
    assert found == [
        "1.yaml:1: id: id 'orders' is taken by the segment in 0.yaml; segments and computed "
        "traits share one id space",
        "2.yaml:1: id: bad computed trait id '-bad': use letters, digits, '_', '-' or '.' (at "
        "most 100), not starting with '-' or '.'",
        "3.yaml:1: id: id 'orders' is taken by the segment in 0.yaml; segments and computed "
        "traits share one id space",
    ]


def test_windows_must_be_longer_than_nothing() -> None:
    found = checked(
        segment("s", "{performed: A, within: 0s}"),
        "id: t\ncompute:\n  event: A\n  within: 0d\n",
    )
    assert found == [
        "0.yaml:3: where.within: must be longer than 0s; leave it out for all time",
        "1.yaml:4: compute.within: must be longer than 0s; leave it out for all time",
    ]


def test_definitions_built_in_python_get_the_same_checks() -> None:
    found = validate_audiences(
        [
            ComputedTrait(id="t", aggregate=Aggregate(event="A", kind="sum")),
            Segment(
                id="s",
                name=" ",
                webhook="ftp://x",
                where=AllOf(
                    conditions=(
                        TraitCondition(trait="plan", op="in", value="gold"),
                        ConsentCondition(channel="pigeon"),
                        AnyOf(conditions=()),
                        PerformedCondition(aggregate=Aggregate(event="A", kind="sum", value="x")),
                    )
                ),
            ),
        ]
    )
    expected = [
        ("<computed trait t>", "compute.value", "required for kind sum"),
        ("<segment s>", "name", "must not be empty"),
        ("<segment s>", "webhook", "expected an http"),
        ("<segment s>", "where.all[0].in", "expected a list, e.g. [gold, platinum], got 'gold'"),
        ("<segment s>", "where.all[1].consent.channel", "unknown channel 'pigeon'; use email, sms"),
        ("<segment s>", "where.all[2].any", "needs at least one condition"),
        ("<segment s>", "where.all[3]", "a performed condition counts events: kind count"),
    ]
    assert [(p.file, p.field) for p in found] == [(file, field) for file, field, _ in expected]
    for problem, (_, _, message) in zip(found, expected, strict=True):
        assert problem.message.startswith(message)


# -- Order ----------------------------------------------------------------------------------


def test_dependencies_and_members_first() -> None:
    def make(id: str, *members: str) -> Segment:
        parts = tuple(MemberCondition(segment=m) for m in members)
        return Segment(id=id, name=id, where=AllOf(conditions=(*parts, Not(condition=parts[0]))))

    top = make("top", "middle", "leaf", "elsewhere")
    middle = make("middle", "leaf")
    leaf = Segment(id="leaf", name="leaf", where=TraitCondition(trait="vip", value=True))
    assert segment_dependencies(top) == {"middle", "leaf", "elsewhere"}
    assert segment_dependencies(leaf) == set()
    assert topological_order([top, leaf, middle]) == [leaf, middle, top]
    assert topological_order([leaf, middle, top]) == [leaf, middle, top]
    with pytest.raises(DefinitionError, match="'a' -> 'b' -> 'a'"):
        topological_order([make("a", "b"), make("b", "a"), leaf])


# -- safar validate -------------------------------------------------------------------------

JOURNEY = """\
id: welcome
name: Welcome
entry: {event: Signed Up, where: "'vip-lapsed' in profile.segments"}
steps:
  - {id: bye, exit: true}
"""


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_validate_reads_audiences_beside_journeys(tmp_path: Path) -> None:
    write(tmp_path, "journeys/welcome.yaml", JOURNEY)
    write(tmp_path, "segments/vip_lapsed.yaml", (AUDIENCES / "vip_lapsed.yaml").read_text())
    write(tmp_path, "segments/quiet_vips.yaml", segment("quiet-vips", "{member: vip-lapsed}"))
    write(tmp_path, "traits/orders.yaml", (AUDIENCES / "orders_30d.yaml").read_text())
    assert validate_paths([tmp_path]) == []

    write(tmp_path, "segments/bad.yaml", segment("bad", "{trait: vip, eq: true, ne: false}"))
    write(tmp_path, "segments/lost.yaml", segment("lost", "{member: vip-lapsd}"))
    write(tmp_path, "segments/ok.yaml", segment("ok", "{member: bad}"))  # bad is still a segment
    found = [str(p).replace(f"{tmp_path}/", "") for p in validate_paths([tmp_path])]
    assert found == [
        "segments/bad.yaml:3: where.ne: one operator per condition, this one has eq already; "
        "use all:",
        "segments/lost.yaml:3: where.member: no segment 'vip-lapsd' (did you mean 'vip-lapsed'?)",
    ]


def test_validate_checks_member_across_the_paths_given(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", segment("a", "{member: b}"))
    write(tmp_path, "b.yaml", segment("b", "{member: a}"))
    [problem] = validate_paths([tmp_path / "a.yaml", tmp_path / "b.yaml"])
    assert problem == Problem(
        str(tmp_path / "b.yaml"),
        3,
        "where.member",
        "segments refer to each other in a cycle through member: 'a' -> 'b' -> 'a'",
    )
    [problem] = validate_paths([tmp_path / "a.yaml"])
    assert problem.message == "no segment 'b'"


EXAMPLE_KINDS = {
    "vip_lapsed.yaml": "segment",
    "repeat_buyers.yaml": "segment",
    "open_ticket.yaml": "segment",
    "email_marketable.yaml": "segment",
    "orders_30d.yaml": "computed_trait",
    "revenue_90d.yaml": "computed_trait",
    "last_order_days.yaml": "computed_trait",
    "favourite_category.yaml": "computed_trait",
    "tickets_opened.yaml": "computed_trait",
    "tickets_resolved.yaml": "computed_trait",
}


def test_the_examples_are_audiences() -> None:
    """``test_files`` validates every example; here, that these are read as audiences at all
    (files of no kind are skipped when a directory is walked)."""
    assert sorted(p.name for p in AUDIENCES.glob("*.yaml")) == sorted(EXAMPLE_KINDS)
    definitions = []
    for name, kind in EXAMPLE_KINDS.items():
        text = (AUDIENCES / name).read_text(encoding="utf-8")
        assert audience_kind(load(text, name)) == kind
        definitions.append(parse_audience(text, name))
    assert validate_audiences(definitions) == []
    open_ticket = parse_audience((AUDIENCES / "open_ticket.yaml").read_text())
    assert open_ticket.where == ProfileCondition(
        line=6, where="profile.traits.tickets_opened > profile.traits.tickets_resolved"
    )
