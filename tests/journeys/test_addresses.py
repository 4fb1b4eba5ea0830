"""Where a channel reaches a customer (``safar.runtime.render.address_for``)."""

from __future__ import annotations

import pytest

from safar.model.profiles import Profile
from safar.runtime.render import address_for


def customer(identifiers: dict[str, list[str]], **traits: object) -> Profile:
    return Profile(id="p1", identifiers=identifiers, traits=dict(traits), first_seen=0, last_seen=0)


@pytest.mark.parametrize(
    ("profile", "channel", "expected"),
    [
        (customer({"email": ["a@x.com"]}, email="b@x.com"), "email", "a@x.com"),
        (customer({}, email=" b@x.com "), "email", "b@x.com"),
        (customer({}, email=" "), "email", None),
        (customer({}, email=""), "email", None),
        (customer({}, email=42), "email", None),
        (customer({}, phone="\t"), "sms", None),
        (customer({"phone": ["+989121234567"]}), "sms", "+989121234567"),
        (customer({}), "webhook", "p1"),
    ],
)
def test_an_address_is_the_identifier_else_a_trait_that_is_not_blank(
    profile: Profile, channel: str, expected: str | None
) -> None:
    assert address_for(channel, profile) == expected
