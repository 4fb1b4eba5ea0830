"""Rendering: locale choice, right-to-left HTML, escaping, derived text, render errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from safar.templates import TemplateCatalog, TemplateError, render_value
from tests.templates.conftest import WriteTemplate

ORDER = """
    channel: email
    default_locale: en
    locales:
      en:
        subject: "Order {{ event.properties.order_id }} for {{ profile.traits.first_name }}"
        html: |
          <p>Hi {{ profile.traits.first_name | default: "there" }},</p>
          <p>Total: {{ event.properties.total | money: event.properties.currency }}</p>
          <p><a href="{{ event.properties.url }}">Track your order</a></p>
      fa:
        subject: "سفارش {{ event.properties.order_id }} برای {{ profile.traits.first_name }}"
        html: |
          <p>سلام {{ profile.traits.first_name | default: "دوست عزیز" }}،</p>
          <p>مبلغ: {{ event.properties.total | money: event.properties.currency | digits }}</p>
          <p>می‌توانید سفارشتان را <a href="{{ event.properties.url }}">پیگیری کنید</a>.</p>
      ar:
        subject: "طلبك {{ event.properties.order_id }}"
        html: |
          <html lang="ar"><body><p>مرحبًا {{ profile.traits.first_name }}</p></body></html>
        text: "مرحبًا {{ profile.traits.first_name }}"
      zh:
        subject: "订单 {{ event.properties.order_id }}"
        html: "<p>{{ profile.traits.first_name }}，您好！</p>"
"""

EVENT: dict[str, Any] = {
    "event": "Order Completed",
    "properties": {
        "order_id": "A-1001",
        "total": 1250000,
        "currency": "IRR",
        "url": "https://shop.example/orders/A-1001?a=1&b=2",
    },
}


def profile(**traits: Any) -> dict[str, Any]:
    return {"id": "p1", "traits": traits, "identifiers": {"email": ["x@example.com"]}}


@pytest.fixture
def catalog(write_template: WriteTemplate, tmp_path: Path) -> TemplateCatalog:
    write_template("order.yaml", ORDER)
    loaded = TemplateCatalog.load(tmp_path)
    assert loaded.problems() == []
    return loaded


@pytest.mark.parametrize(
    ("trait", "locale", "direction"),
    [
        ({"locale": "fa-IR"}, "fa", "rtl"),
        ({"language": "ar_EG"}, "ar", "rtl"),
        ({"locale": "zh-Hans"}, "zh", "ltr"),
        ({"locale": "zh-CN"}, "zh", "ltr"),
        ({"locale": "EN-us"}, "en", "ltr"),
        ({"locale": "de-DE"}, "en", "ltr"),  # the template has no German: the default
        ({"locale": "klingon"}, "en", "ltr"),
        ({}, "en", "ltr"),
    ],
)
def test_the_locale_comes_from_the_profile_trait(
    catalog: TemplateCatalog, trait: dict[str, str], locale: str, direction: str
) -> None:
    parts = catalog.render("order", profile=profile(first_name="Sara", **trait), event=EVENT)
    assert (parts.locale, parts.direction) == (locale, direction)
    assert parts.html is not None and f'lang="{locale}"' in parts.html


def test_an_explicit_locale_wins_over_the_trait(catalog: TemplateCatalog) -> None:
    parts = catalog.render("order", profile=profile(locale="fa"), event=EVENT, locale="zh-TW")
    assert parts.locale == "zh"
    assert parts.subject == "订单 A-1001"


def test_persian_html_fragment_is_wrapped_right_to_left(catalog: TemplateCatalog) -> None:
    parts = catalog.render("order", profile=profile(first_name="مریم", locale="fa-IR"), event=EVENT)
    assert parts.html is not None
    assert parts.html.startswith("<!DOCTYPE html>")
    assert '<html dir="rtl" lang="fa">' in parts.html
    assert '<div dir="rtl" style="direction:rtl;text-align:right">' in parts.html
    # UTF-8 text stays text: no entities for Persian, the zero-width non-joiner survives.
    assert "سلام مریم،" in parts.html
    assert "می\u200cتوانید" in parts.html
    assert "۱٬۲۵۰٬۰۰۰ IRR" in parts.html
    assert parts.subject == "سفارش A-1001 برای مریم"


def test_an_existing_html_tag_gets_dir_and_keeps_its_lang(catalog: TemplateCatalog) -> None:
    parts = catalog.render("order", profile=profile(first_name="Omar", locale="ar"), event=EVENT)
    assert parts.html is not None
    assert parts.html.startswith('<html lang="ar" dir="rtl"><body dir="rtl">')
    assert parts.text == "مرحبًا Omar"  # the template's own text part, not derived


def test_english_and_chinese_are_left_to_right(catalog: TemplateCatalog) -> None:
    for locale in ("en", "zh"):
        parts = catalog.render(
            "order", profile=profile(first_name="Li"), event=EVENT, locale=locale
        )
        assert parts.direction == "ltr"
        assert parts.html is not None and f'<html dir="ltr" lang="{locale}">' in parts.html


def test_values_are_escaped_in_html_but_not_in_text(catalog: TemplateCatalog) -> None:
    evil = '<script>alert("x")</script>'
    parts = catalog.render("order", profile=profile(first_name=evil), event=EVENT, locale="en")
    assert parts.html is not None
    assert "<script>" not in parts.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in parts.html
    # The subject is a header and the text part is plain text: no HTML escaping there.
    assert parts.subject == f"Order A-1001 for {evil}"
    assert parts.text is not None and f"Hi {evil}," in parts.text


def test_text_is_derived_from_html_keeping_links(catalog: TemplateCatalog) -> None:
    parts = catalog.render("order", profile=profile(first_name="Sam"), event=EVENT, locale="en")
    assert parts.text == (
        "Hi Sam,\n\nTotal: 1,250,000 IRR\n\n"
        "Track your order (https://shop.example/orders/A-1001?a=1&b=2)"
    )


def test_missing_values_render_empty_or_their_default(catalog: TemplateCatalog) -> None:
    parts = catalog.render("order", profile={"id": "p1"}, event=None, locale="en")
    assert parts.subject == "Order for"
    assert parts.text is not None and parts.text.startswith("Hi there,")


def test_strict_rendering_refuses_undefined_values(catalog: TemplateCatalog) -> None:
    with pytest.raises(TemplateError) as caught:
        catalog.render("order", profile=profile(), event=EVENT, locale="zh", strict=True)
    assert (caught.value.template_id, caught.value.locale) == ("order", "zh")
    assert caught.value.field in ("subject", "html")


def test_a_render_error_names_template_locale_and_field(catalog: TemplateCatalog) -> None:
    event = {"properties": {**EVENT["properties"], "total": "a lot"}}
    with pytest.raises(TemplateError) as caught:
        catalog.render("order", profile=profile(locale="fa"), event=event)
    error = caught.value
    assert (error.template_id, error.locale, error.field) == ("order", "fa", "html")
    assert "money expects a number" in error.message
    assert "template 'order', locale fa, field html" in str(error)


def test_subject_newlines_cannot_inject_headers(
    write_template: WriteTemplate, tmp_path: Path
) -> None:
    write_template(
        "s.yaml",
        """
        channel: email
        locales:
          en: {subject: "Hi {{ profile.traits.name }}", html: "<p>x</p>"}
        """,
    )
    parts = TemplateCatalog.load(tmp_path).render(
        "s", profile=profile(name="Bob\r\nBcc: victim@example.com")
    )
    assert parts.subject == "Hi Bob Bcc: victim@example.com"


def test_runaway_loops_are_stopped(write_template: WriteTemplate, tmp_path: Path) -> None:
    write_template(
        "loop.yaml",
        """
        channel: sms
        locales:
          en:
            text: "{% for i in (1..10000000) %}x{% endfor %}"
        """,
    )
    with pytest.raises(TemplateError, match="loop"):
        TemplateCatalog.load(tmp_path).render("loop", profile=profile())


def test_in_app_and_webhook_data_render_at_any_depth(
    write_template: WriteTemplate, tmp_path: Path
) -> None:
    write_template(
        "hook.yaml",
        """
        channel: webhook
        locales:
          en:
            data:
              order: "{{ event.properties.order_id }}"
              count: 3
              tags: ["{{ locale }}", "{{ profile.id }}"]
              nested: {name: "<{{ profile.traits.first_name }}>"}
              items: "{{ event.properties.items | json }}"
        """,
    )
    event = {"properties": {"order_id": "A-1", "items": [{"sku": "s1", "qty": 2}]}}
    parts = TemplateCatalog.load(tmp_path).render(
        "hook", profile=profile(first_name="Zoë"), event=event
    )
    assert parts.data == {
        "order": "A-1",
        "count": 3,
        "tags": ["en", "p1"],
        "nested": {"name": "<Zoë>"},  # data is JSON, not HTML: nothing escaped
        "items": '[{"sku":"s1","qty":2}]',
    }


def test_render_value_renders_journey_webhook_bodies() -> None:
    body = {"email": "{{ profile.traits.email }}", "n": 1, "list": ["{{ journey.step }}"]}
    rendered = render_value(
        body, profile=profile(email="a@b.c"), journey={"step": "s2"}, name="webhook step"
    )
    assert rendered == {"email": "a@b.c", "n": 1, "list": ["s2"]}
    with pytest.raises(TemplateError, match="webhook step"):
        render_value({"x": "{{ 1 | money: 'EUR' | nope }}"}, profile=profile(), name="webhook step")


def test_parts_become_a_rendered_message(catalog: TemplateCatalog) -> None:
    parts = catalog.render("order", profile=profile(locale="fa"), event=EVENT)
    message = parts.message(
        key="k1", to="a@example.com", profile_id="p1", unsubscribe_url="https://u.example/x"
    )
    assert (message.channel, message.locale, message.direction) == ("email", "fa", "rtl")
    assert message.html == parts.html and message.unsubscribe_url == "https://u.example/x"
