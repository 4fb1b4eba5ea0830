"""The :class:`safar.ports.AudienceCatalog` contract, run against every adapter."""

from __future__ import annotations

import threading

import pytest

from safar.errors import ValidationError
from safar.model.audiences import (
    Aggregate,
    AllOf,
    AnyOf,
    AudienceVersion,
    ComputedTrait,
    ConsentCondition,
    IdentifierCondition,
    MemberCondition,
    Not,
    PerformedCondition,
    ProfileCondition,
    Segment,
    Status,
    TraitCondition,
)
from safar.ports import AudienceCatalog

from .conftest import AudienceStores, Backend


def segment(
    audience_id: str, number: int, status: Status = "draft", *, name: str = "Buyers"
) -> AudienceVersion:
    definition = Segment(
        id=audience_id, name=name, where=TraitCondition(trait="plan", value=["pro", "team"])
    )
    return AudienceVersion(
        id=audience_id,
        version=number,
        kind="segment",
        status=status,
        definition=definition,
        created_at=1,
    )


def test_an_empty_catalog(audiences: AudienceStores) -> None:
    assert audiences.catalog.get("buyers") is None
    assert audiences.catalog.get("buyers", 1) is None
    assert audiences.catalog.versions("buyers") == []
    assert audiences.catalog.all() == []


def test_get_a_version_or_the_highest(audiences: AudienceStores) -> None:
    catalog = audiences.catalog
    for number in (2, 3, 1):
        catalog.save(segment("buyers", number, name=f"Buyers v{number}"))
    catalog.save(segment("other", 9))
    assert catalog.get("buyers", 2) == segment("buyers", 2, name="Buyers v2")
    # Highest by number, whatever the order saved and whatever its status (a draft here).
    assert catalog.get("buyers") == segment("buyers", 3, name="Buyers v3")
    assert catalog.get("buyers", 4) is None
    assert catalog.get("nobody") is None


def test_save_replaces_a_version_whole(audiences: AudienceStores) -> None:
    catalog = audiences.catalog
    catalog.save(segment("buyers", 1, "draft", name="Before"))
    published = segment("buyers", 1, "published", name="After")
    published.published_at = 5
    catalog.save(published)
    assert catalog.get("buyers", 1) == published
    assert catalog.versions("buyers") == [published]


def test_lists_are_ordered_by_id_then_version(audiences: AudienceStores) -> None:
    for v in [segment("b", 2), segment("a", 10), segment("b", 1), segment("a", 2)]:
        audiences.catalog.save(v)
    audiences.catalog.save(computed_trait("c", 1))
    assert [(v.id, v.version) for v in audiences.catalog.all()] == [
        ("a", 2),
        ("a", 10),
        ("b", 1),
        ("b", 2),
        ("c", 1),
    ]
    assert [v.version for v in audiences.catalog.versions("a")] == [2, 10]
    assert audiences.catalog.versions("d") == []


def computed_trait(audience_id: str, number: int) -> AudienceVersion:
    aggregate = Aggregate(
        event="Order Completed",
        kind="sum",
        where="event.properties.currency == 'EUR'",
        value="properties.revenue",
        within_ms=30 * 86_400_000,
    )
    return AudienceVersion(
        id=audience_id,
        version=number,
        kind="computed_trait",
        status="published",
        definition=ComputedTrait(
            id=audience_id, aggregate=aggregate, name="Spend", description="30 days", origin="x"
        ),
        created_at=3,
        published_at=4,
    )


def test_a_segment_with_every_kind_of_condition_comes_back_equal(
    audiences: AudienceStores,
) -> None:
    where = AllOf(
        conditions=(
            TraitCondition(trait="plan", op="in", value=["pro", {"tier": 2}], line=2),
            IdentifierCondition(type="email", line=3),
            ConsentCondition(channel="email", subscribed=False, line=4),
            MemberCondition(segment="vip", line=5),
            AnyOf(
                conditions=(
                    PerformedCondition(
                        aggregate=Aggregate(event="Viewed", within_ms=86_400_000),
                        op="lte",
                        times=0,
                    ),
                    ProfileCondition(where="size(profile.segments) > 1"),
                ),
            ),
            Not(condition=TraitCondition(trait="نام", op="missing")),
        ),
        line=1,
    )
    saved = AudienceVersion(
        id="lapsed",
        version=1,
        kind="segment",
        status="archived",
        definition=Segment(
            id="lapsed",
            name="مشتریان از دست رفته",
            where=where,
            description="流失客户",
            webhook="https://crm.example/hook",
            origin="audiences/lapsed.yaml",
        ),
        created_at=1,
        published_at=2,
    )
    audiences.catalog.save(saved)
    audiences.catalog.save(computed_trait("spend", 1))
    assert audiences.catalog.get("lapsed", 1) == saved
    assert audiences.catalog.get("spend") == computed_trait("spend", 1)


def test_a_definition_of_another_kind_is_refused(audiences: AudienceStores) -> None:
    # Such a version could not be read back as its kind.
    wrong = computed_trait("spend", 1)
    wrong.kind = "segment"
    with pytest.raises(ValidationError):
        audiences.catalog.save(wrong)
    assert audiences.catalog.all() == []


def test_stored_versions_are_copies(audiences: AudienceStores) -> None:
    mine = segment("buyers", 1)
    audiences.catalog.save(mine)
    mine.status = "archived"
    got = audiences.catalog.get("buyers")
    assert got is not None
    got.status = "published"
    assert isinstance(got.definition, Segment)
    assert isinstance(got.definition.where, TraitCondition)
    got.definition.where.value.append("free")
    assert audiences.catalog.get("buyers") == segment("buyers", 1)


def test_versions_outlive_the_process(audience_backend: Backend) -> None:
    audience_backend.audience_stores().catalog.save(segment("buyers", 1, "published"))
    audience_backend.shutdown()
    again = audience_backend.audience_stores()
    assert again.catalog.get("buyers") == segment("buyers", 1, "published")


def test_repair_requests_are_counted_per_id(audiences: AudienceStores) -> None:
    catalog = audiences.catalog
    assert catalog.repairs() == {}
    assert catalog.request_repair("buyers") == 1
    assert catalog.request_repair("buyers") == 2
    assert catalog.request_repair("spend") == 1
    assert catalog.repairs() == {"buyers": 2, "spend": 1}
    # Requests are not versions: they neither show among them nor change them.
    assert catalog.all() == []


def test_concurrent_repair_requests_all_count(audience_backend: Backend) -> None:
    # Two "processes" (their own adapters) asking at once, several threads each.
    catalogs = [audience_backend.audience_stores().catalog for _ in range(2)]
    answers: list[int] = []

    def ask(catalog: AudienceCatalog) -> None:
        for _ in range(10):
            answers.append(catalog.request_repair("buyers"))

    threads = [threading.Thread(target=ask, args=(c,)) for c in catalogs for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == list(range(1, 41))
    assert catalogs[0].repairs() == {"buyers": 40}


def test_repair_requests_outlive_the_process(audience_backend: Backend) -> None:
    audience_backend.audience_stores().catalog.request_repair("buyers")
    audience_backend.shutdown()
    again = audience_backend.audience_stores().catalog
    assert again.repairs() == {"buyers": 1}
    assert again.request_repair("buyers") == 2
