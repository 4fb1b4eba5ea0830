"""The example templates shipped for the example journeys validate and render in every locale."""

from __future__ import annotations

from pathlib import Path

import pytest

from safar.templates import TemplateCatalog, validate_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"
EXPECTED = {
    "cart_reminder": "email",
    "cart_reminder_sms": "sms",
    "cart_coupon": "email",
    "welcome_1": "email",
    "welcome_2": "email",
    "survey_invite": "email",
    "winback_offer": "email",
    "winback_sms": "sms",
    "browse_offer": "email",
}
# Every property the example templates read; strict rendering proves no path is misspelt.
EVENT = {
    "event": "Product Added",
    "properties": {
        "name": "Kindle Paperwhite",
        "price": 139.99,
        "quantity": 1,
        "currency": "USD",
        "cart_id": "cart-42",
        "order_id": "A-1001",
        "product_id": "kindle-pw",
    },
}
PROFILE = {"id": "p1", "traits": {"first_name": "Sara"}, "identifiers": {}}


@pytest.fixture(scope="module")
def catalog() -> TemplateCatalog:
    return TemplateCatalog.load(EXAMPLES)


def test_the_examples_validate_cleanly() -> None:
    assert validate_directory(EXAMPLES) == []


def test_every_example_is_there_in_four_languages(catalog: TemplateCatalog) -> None:
    assert catalog.names() == sorted(EXPECTED)
    for name, channel in EXPECTED.items():
        template = catalog.get(name)
        assert template.channel == channel
        assert sorted(template.locales) == ["ar", "en", "fa", "zh"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("locale", ["en", "fa", "ar", "zh"])
def test_every_example_renders_strictly(catalog: TemplateCatalog, name: str, locale: str) -> None:
    parts = catalog.render(name, profile=PROFILE, event=EVENT, locale=locale, strict=True)
    assert parts.locale == locale
    assert parts.direction == ("rtl" if locale in ("fa", "ar") else "ltr")
    assert parts.text and "{{" not in parts.text and "{%" not in parts.text
    if parts.channel == "email":
        assert parts.subject and parts.html
        assert f'dir="{parts.direction}" lang="{locale}"' in parts.html
    # The cart link works without a cart_url property: it is built from the cart id.
    if name.startswith("cart_reminder"):
        assert f"https://shop.example.com/{locale}/cart?cart_id=cart-42" in parts.text


def test_examples_render_for_a_profile_without_traits(catalog: TemplateCatalog) -> None:
    parts = catalog.render("welcome_1", profile={"id": "p2"}, locale="fa")
    assert parts.text is not None and parts.text.startswith("سلام دوست عزیز،")
