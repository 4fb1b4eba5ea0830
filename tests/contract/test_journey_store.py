"""The :class:`safar.ports.JourneyStore` contract, run against every adapter."""

from __future__ import annotations

from safar.model.journeys import (
    Branch,
    Case,
    Emit,
    Entry,
    EventMatch,
    Exit,
    Goal,
    Journey,
    JourneyPolicy,
    JourneyVersion,
    Migration,
    Send,
    Split,
    SplitBranch,
    Status,
    UpdateProfile,
    Wait,
    Webhook,
)

from .conftest import Backend, JourneyStores


def version(
    journey_id: str, number: int, status: Status = "draft", *, name: str = "Welcome"
) -> JourneyVersion:
    definition = Journey(
        id=journey_id,
        name=name,
        entry=Entry(event="Signed Up"),
        steps=(Send(id="hello", channel="email", template="welcome"),),
    )
    return JourneyVersion(
        journey_id=journey_id, version=number, status=status, definition=definition, created_at=1
    )


def test_an_empty_store(stores: JourneyStores) -> None:
    assert stores.journeys.get("welcome") is None
    assert stores.journeys.get("welcome", 1) is None
    assert stores.journeys.versions("welcome") == []
    assert stores.journeys.all() == []


def test_get_a_version_or_the_highest(stores: JourneyStores) -> None:
    journeys = stores.journeys
    for number in (2, 3, 1):
        journeys.save(version("welcome", number, name=f"Welcome v{number}"))
    journeys.save(version("other", 9))
    assert journeys.get("welcome", 2) == version("welcome", 2, name="Welcome v2")
    # Highest by number, whatever the order saved and whatever its status (a draft here).
    assert journeys.get("welcome") == version("welcome", 3, name="Welcome v3")
    assert journeys.get("welcome", 4) is None
    assert journeys.get("nobody") is None


def test_save_replaces_a_version_whole(stores: JourneyStores) -> None:
    journeys = stores.journeys
    journeys.save(version("welcome", 1, "draft", name="Before"))
    published = version("welcome", 1, "published", name="After")
    published.published_at = 5
    published.migration = Migration(mode="move", steps={"hello": "bye"})
    journeys.save(published)
    assert journeys.get("welcome", 1) == published
    assert journeys.versions("welcome") == [published]


def test_lists_are_ordered_by_journey_then_version(stores: JourneyStores) -> None:
    saved = [version("b", 2), version("a", 10), version("b", 1), version("a", 2), version("c", 1)]
    for v in saved:
        stores.journeys.save(v)
    assert [(v.journey_id, v.version) for v in stores.journeys.all()] == [
        ("a", 2),
        ("a", 10),
        ("b", 1),
        ("b", 2),
        ("c", 1),
    ]
    assert [v.version for v in stores.journeys.versions("a")] == [2, 10]
    assert stores.journeys.versions("d") == []


def test_a_definition_with_every_kind_of_step_comes_back_equal(stores: JourneyStores) -> None:
    definition = Journey(
        id="cart",
        name="سبد خرید رها شده",
        description="放弃的购物车 / عربة التسوق المتروكة",
        stage="purchase",
        entry=Entry(event="Cart Abandoned", where="event.properties.total > 50", line=3),
        goal=Goal(event="Order Completed", within_ms=86_400_000),
        policy=JourneyPolicy(category="marketing", priority=70, quiet_hours="skip"),
        context={"discount": 10, "tags": ["a", "b"]},
        origin="journeys/cart.yaml",
        steps=(
            Wait(id="pause", duration_ms=3_600_000, line=8),
            Wait(id="evening", until="19:30"),
            Wait(
                id="come_back",
                event=EventMatch(event="Viewed Cart"),
                timeout_ms=60_000,
                timeout_next="nudge",
            ),
            Branch(
                id="rich",
                cases=(Case(condition="profile.traits.plan == 'pro'", next="nudge"),),
                otherwise="exit",
            ),
            Split(
                id="ab",
                seed="s1",
                branches=(
                    SplitBranch(name="a", weight=0.5, next="nudge"),
                    SplitBranch(name="control", weight=0.5, next="exit"),
                ),
            ),
            Send(id="nudge", channel="sms", template="cart", category="transactional"),
            UpdateProfile(id="mark", set={"nudged": True}, increment={"nudges": 1}, unset=("x",)),
            Webhook(
                id="crm",
                url="https://crm.example/hook",
                body={"id": "{{ profile.id }}"},
                headers={"X-Key": "k"},
                save={"ticket": "data.id"},
            ),
            Emit(id="chain", event="Nudged", properties={"n": 1}),
            Exit(id="done", reason="finished"),
        ),
    )
    saved = JourneyVersion(
        journey_id="cart",
        version=1,
        status="published",
        definition=definition,
        created_at=1,
        published_at=2,
    )
    stores.journeys.save(saved)
    assert stores.journeys.get("cart", 1) == saved


def test_versions_outlive_the_process(journey_backend: Backend) -> None:
    journey_backend.journey_stores().journeys.save(version("welcome", 1, "published"))
    journey_backend.shutdown()
    again = journey_backend.journey_stores()
    assert again.journeys.get("welcome") == version("welcome", 1, "published")
