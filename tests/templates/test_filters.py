"""Safar's Liquid filters: money, digits, isolate, json."""

from __future__ import annotations

from typing import Any

import pytest
from liquid.exceptions import LiquidError

from safar.templates.sandbox import compile_source


def render(source: str, **context: Any) -> str:
    return compile_source(source).render(**context)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1234.5, "EUR", "1,234.50 EUR"),
        ("19.999", "usd", "20.00 USD"),
        (0.125, "USD", "0.13 USD"),  # half up, as shops round
        (1250000, "IRR", "1,250,000 IRR"),
        (5000, "JPY", "5,000 JPY"),
        (12.3456, "KWD", "12.346 KWD"),
        (99, "", "99.00"),
    ],
)
def test_money(amount: object, currency: str, expected: str) -> None:
    assert render("{{ a | money: c }}", a=amount, c=currency) == expected


def test_money_of_something_missing_is_empty_and_of_text_an_error() -> None:
    assert render("[{{ nothing | money: 'EUR' }}]") == "[]"
    with pytest.raises(LiquidError, match="money expects a number"):
        render("{{ 'abc' | money: 'EUR' }}")


def test_digits_follow_the_locale() -> None:
    source = "{{ n | digits }}"
    assert render(source, n="1,250.5", locale="fa") == "۱٬۲۵۰٫۵"
    assert render(source, n=2026, locale="ar") == "٢٠٢٦"
    assert render(source, n="1,250.5", locale="en") == "1,250.5"
    assert render("{{ n | digits: 'fa' }}", n="Order 42, ok.", locale="en") == "Order ۴۲, ok."


def test_isolate_and_json() -> None:
    assert render("{{ v | isolate }}", v="A-42") == "\u2068A-42\u2069"
    assert render("{{ v | json }}", v={"نام": "علی", "n": [1, 2]}) == '{"نام":"علی","n":[1,2]}'
    assert render("{{ missing | json }}") == "null"
