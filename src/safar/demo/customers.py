"""Synthetic customers: who they are, their devices, carts and support tickets."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Final

from safar.demo.devices import APP_DEVICES, IP_PREFIXES, WEB_AGENTS
from safar.demo.markets import EMAIL_DOMAINS, LOCALES, MARKETS_BY_LOCALE, Market
from safar.demo.names import FIRST_NAMES, LAST_NAMES, full_name

TIERS: Final = ("bronze", "silver", "gold", "platinum")

# Multiplying by a number prime to 10 permutes 0..10**n-1 (and 0..8*10**6-1), so each customer
# index gets its own phone number while the numbers do not look sequential.
_PHONE_STEP: Final = 7_919_113


@dataclass(slots=True)
class Device:
    """A browser or the app on one phone; its anonymousId lasts until cookies are cleared."""

    anonymous_id: str
    app: bool
    #: Index into :data:`~safar.demo.devices.APP_DEVICES` or :data:`~safar.demo.devices.WEB_AGENTS`.
    model: int
    ip: str
    identified: bool = False


@dataclass(slots=True)
class Cart:
    """Products put in a cart in one visit; ``ordered`` once checked out."""

    number: int
    #: (product index, quantity)
    items: list[tuple[int, int]] = field(default_factory=list)
    ordered: bool = False


@dataclass(slots=True)
class Ticket:
    """A support request. ``product`` and ``cart`` are -1 when it is about neither."""

    number: int
    topic: int
    product: int
    cart: int
    channel: str


@dataclass(slots=True)
class Return:
    """One line of an order sent back; ``reason`` is a code such as ``defective``."""

    cart: int
    line: int
    reason: str


@dataclass(slots=True)
class Customer:
    """One person. Anonymous visitors, who never sign in, have no ``user_id`` and no contacts."""

    index: int
    user_id: str | None
    market: Market
    first_name: str
    last_name: str
    email: str
    #: Empty when the customer never gave one.
    phone: str
    city: str
    vip: bool
    #: Milliseconds since the epoch; for new customers, set when they sign up.
    created_at: int
    crm_id: str | None
    #: Every loyalty tier the customer has had, in order; identify events refer to them by index.
    tiers: list[str]
    #: Categories the customer mostly looks at.
    interests: tuple[str, str]
    #: Chance of opening a newsletter.
    engagement: float
    devices: list[Device] = field(default_factory=list)
    carts: list[Cart] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    returns: list[Return] = field(default_factory=list)

    @property
    def locale(self) -> str:
        return self.market.locale

    @property
    def name(self) -> str:
        return full_name(self.market.locale, self.first_name, self.last_name)


class CustomerFactory:
    """Makes customers one by one from ``rng``; the same calls give the same customers."""

    def __init__(
        self,
        rng: random.Random,
        *,
        locale_weights: Mapping[str, float],
        categories: Sequence[str],
    ) -> None:
        self._rng = rng
        self._locales = tuple(locale_weights)
        self._locale_cum = tuple(accumulate(locale_weights.values()))
        self._market_cum = {
            loc: tuple(accumulate(m.weight for m in MARKETS_BY_LOCALE[loc])) for loc in LOCALES
        }
        self._categories = tuple(categories)
        # Offsets per market so that phone numbers differ from seed to seed.
        self._phone_salt = {
            (m.locale, m.country): rng.randrange(m.phone_capacity)
            for loc in LOCALES
            for m in MARKETS_BY_LOCALE[loc]
        }

    def customer(
        self, index: int, *, identified: bool, existing: bool, vip: bool, start_ms: int
    ) -> Customer:
        """Customer number ``index``. ``existing`` ones signed up before ``start_ms``."""
        rng = self._rng
        locale = rng.choices(self._locales, cum_weights=self._locale_cum)[0]
        market = rng.choices(MARKETS_BY_LOCALE[locale], cum_weights=self._market_cum[locale])[0]
        first, first_latin = rng.choice(FIRST_NAMES[locale])
        last, last_latin = rng.choice(LAST_NAMES[locale])
        interests = (rng.choice(self._categories), rng.choice(self._categories))
        engagement = rng.choice((0.02, 0.08, 0.2, 0.2, 0.35, 0.6))
        city = rng.choice(market.cities)
        if not identified:
            return Customer(
                index=index,
                user_id=None,
                market=market,
                first_name=first,
                last_name=last,
                email="",
                phone="",
                city=city,
                vip=False,
                created_at=0,
                crm_id=None,
                tiers=[],
                interests=interests,
                engagement=engagement,
            )
        mailbox = f"{first_latin}.{last_latin}.{index + 1}"
        if rng.random() < 0.02:
            mailbox = mailbox.title()  # people do type capitals; identity must not care
        email = f"{mailbox}@{rng.choice(EMAIL_DOMAINS)}"
        phone = self._phone(market, index) if rng.random() < 0.8 else ""
        if existing:
            created_at = start_ms - rng.randint(20, 1000) * 86_400_000 - rng.randrange(86_400_000)
            tier = rng.choices(TIERS, weights=(55, 28, 13, 4))[0]
            if vip and tier in ("bronze", "silver"):
                tier = "gold"
        else:
            created_at = 0
            tier = TIERS[0]
        return Customer(
            index=index,
            user_id=f"user_{index + 1:06d}",
            market=market,
            first_name=first,
            last_name=last,
            email=email,
            phone=phone,
            city=city,
            vip=vip,
            created_at=created_at,
            crm_id=f"CRM-{100_000 + index}" if existing or rng.random() < 0.1 else None,
            tiers=[tier],
            interests=interests,
            engagement=min(0.9, engagement * 1.5) if vip else engagement,
        )

    def device(self, *, app: bool) -> Device:
        """A new browser or phone, with a fresh anonymousId."""
        rng = self._rng
        bits = rng.getrandbits(128)
        # Shaped like a version 4 UUID, which is what Segment's SDKs generate.
        text = f"{bits:032x}"
        anonymous_id = f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"
        model = rng.randrange(len(APP_DEVICES) if app else len(WEB_AGENTS))
        ip = f"{rng.choice(IP_PREFIXES)}{rng.randrange(1, 255)}"
        return Device(anonymous_id=anonymous_id, app=app, model=model, ip=ip)

    def _phone(self, market: Market, index: int) -> str:
        salt = self._phone_salt[(market.locale, market.country)]
        local = market.phone_floor + (index * _PHONE_STEP + salt) % market.phone_capacity
        return f"{self._rng.choice(market.phone_prefixes)}{local:0{market.phone_digits}d}"
