"""Plan the synthetic shop: when each customer does what.

All of the demo's randomness is here; :mod:`safar.demo.render` turns the plan into Segment events
without drawing any. Each planned event is one int with its fields packed, time in the highest
bits: millions of them then sort as plain ints, at about a third of the memory of tuples.

A customer's story: anonymous visits, a visit in which they sign up (or, for customers from before
the window, log in), then visits at a pace set by their persona (browsers come rarely and rarely
buy; VIPs come often and buy a lot), each ending in browsing, an abandoned cart, an abandoned
checkout or an order. Some move to a second device and browse there anonymously before logging in.
Orders bring loyalty tiers, returns, refunds and support tickets; newsletters bring opens and
clicks. Anonymous visitors (a tenth as many as customers) browse and never sign in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

from safar.demo.catalog import (
    CATEGORIES,
    CATEGORY_QUERY_BASE,
    FRUITLESS_QUERIES,
    FRUITLESS_QUERY_BASE,
    PRODUCTS,
    PRODUCTS_BY_CATEGORY,
)
from safar.demo.customers import TIERS, Cart, Customer, CustomerFactory, Return, Ticket
from safar.demo.texts import (
    ACCOUNT,
    CART,
    CHECKOUT,
    CONFIRMATION,
    DEFAULT_RETURN_REASON,
    GENERAL_TOPICS,
    HELP,
    HOME,
    ORDER_TOPICS,
    PRODUCT,
    RETURN_REASONS,
    RETURN_TOPICS,
    SEARCH,
    TICKET_CHANNELS,
    TICKET_TOPICS,
)

SECOND: Final = 1000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

# A packed event, lowest bits first: arg (20 bits), user (1), device (2), kind (5), customer (32),
# then the time in milliseconds since the start of the shop.
_USER_SHIFT: Final = 20
_DEVICE_SHIFT: Final = 21
_KIND_SHIFT: Final = 23
_CUSTOMER_SHIFT: Final = 28
_TIME_SHIFT: Final = 60
MAX_CUSTOMERS: Final = 1 << 32

#: The device number of server-side sources (shop backend, helpdesk, e-mail, CRM): their events
#: carry the userId only.
SERVER: Final = 3

# Kinds of planned events. The argument of each: PAGE, page number | detail << 3 (the product, or
# the query); SEARCHED, the query; VIEWED, the product; ADDED, cart << 6 | line; CHECKOUT and
# ORDERED, the cart; RETURNED and REFUNDED, the return; TICKET_*, the ticket; EMAIL_*, the week;
# IDENTIFY, the loyalty tier (an index into Customer.tiers).
(
    PAGE,
    SEARCHED,
    VIEWED,
    ADDED,
    CHECKOUT_STARTED,
    ORDERED,
    RETURNED,
    REFUNDED,
    TICKET_OPENED,
    TICKET_RESOLVED,
    EMAIL_OPENED,
    EMAIL_CLICKED,
    IDENTIFY,
    SIGNED_UP,
) = range(14)

#: How much people shop at each hour of their local day.
_HOUR_WEIGHTS: Final = (
    (1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2.5, 3, 3.2, 3.3),
    (3.5, 3.4, 3.2, 3.2, 3.3, 3.6, 4, 4.6, 5, 5, 4, 2.5),
)
_HOUR_CUM: Final = tuple(accumulate(w for half in _HOUR_WEIGHTS for w in half))
# Orders needed for each loyalty tier.
_TIER_ORDERS: Final = (0, 3, 6, 10)

_CATEGORY_QUERY: Final = tuple(
    CATEGORY_QUERY_BASE + list(CATEGORIES).index(p.category) for p in PRODUCTS
)


@dataclass(frozen=True, slots=True)
class _Persona:
    weight: float
    #: Mean days between visits.
    gap_days: float
    #: Cumulative chances of a visit ending in browsing, an abandoned cart, an abandoned checkout;
    #: the rest end in an order.
    outcomes: tuple[float, float, float]
    #: Chance of ordering in the visit in which they sign up.
    first_order: float
    max_visits: int


_BROWSER: Final = _Persona(0.55, 40.0, (0.75, 0.93, 0.97), 0.05, 1)
_VIP: Final = _Persona(0.04, 5.0, (0.35, 0.43, 0.55), 0.7, 14)
_PERSONAS: Final = (
    _BROWSER,
    _Persona(0.3, 25.0, (0.48, 0.6, 0.76), 0.45, 3),
    _Persona(0.11, 12.0, (0.4, 0.5, 0.64), 0.6, 6),
    _VIP,
)
_PERSONA_CUM: Final = tuple(accumulate(p.weight for p in _PERSONAS))


def unpack(record: int) -> tuple[int, int, int, int, int, int]:
    """A planned event's (time, customer, kind, device, user, arg); ``user`` is 1 when the event
    carries the userId."""
    return (
        record >> _TIME_SHIFT,
        (record >> _CUSTOMER_SHIFT) & 0xFFFF_FFFF,
        (record >> _KIND_SHIFT) & 0x1F,
        (record >> _DEVICE_SHIFT) & 3,
        (record >> _USER_SHIFT) & 1,
        record & 0xF_FFFF,
    )


@dataclass(frozen=True, slots=True)
class Plan:
    """Everyone in the shop (customers, then anonymous visitors) and their events, in time order."""

    customers: list[Customer]
    records: list[int]


def plan_shop(
    *, customers: int, seed: int, start_ms: int, days: int, locale_weights: Mapping[str, float]
) -> Plan:
    """Plan ``customers`` customers and a tenth as many anonymous visitors over ``days`` days."""
    rng = random.Random(seed)
    factory = CustomerFactory(rng, locale_weights=locale_weights, categories=tuple(CATEGORIES))
    planner = _Planner(rng, factory, start_ms=start_ms, days=days)
    for index in range(customers):
        planner.live(index, identified=True)
    for index in range(customers, customers + customers // 10):
        planner.live(index, identified=False)
    planner.records.sort()
    return Plan(customers=planner.customers, records=planner.records)


class _Planner:
    """Plans one customer at a time; ``c``, ``t`` and the fields after them are that customer's."""

    def __init__(
        self, rng: random.Random, factory: CustomerFactory, *, start_ms: int, days: int
    ) -> None:
        self.rng = rng
        self.factory = factory
        self.start_ms = start_ms
        self.end = days * DAY
        # Visits last well under two hours, so none started by then runs past the end.
        self.last_start = self.end - 2 * HOUR
        self.weeks = days // 7 + 1
        self.records: list[int] = []
        self.customers: list[Customer] = []
        self.c: Customer
        self.t = 0
        self.base = 0
        self.tz = 0
        self.orders = 0

    # -- one customer -------------------------------------------------------------------------

    def live(self, index: int, *, identified: bool) -> None:
        rng = self.rng
        persona = _PERSONAS[0]
        existing = False
        if identified:
            persona = rng.choices(_PERSONAS, cum_weights=_PERSONA_CUM)[0]
            existing = rng.random() < 0.3
        c = self.factory.customer(
            index,
            identified=identified,
            existing=existing,
            vip=persona is _VIP,
            start_ms=self.start_ms,
        )
        self.customers.append(c)
        self.c = c
        self.base = index << _CUSTOMER_SHIFT
        self.tz = c.market.utc_offset_minutes * MINUTE
        self.orders = 0
        c.devices.append(self.factory.device(app=rng.random() < 0.25))

        # Customers from before the window keep coming back; new ones arrive all through it.
        self.t = self._waking(int(rng.random() * (0.6 if existing else 0.9) * self.end))
        if self.t > self.last_start:  # only in windows of a day or two
            self.t = int(rng.random() * self.last_start)
        if not identified:
            anonymous_visits = rng.choices((1, 2, 3), weights=(65, 28, 7))[0]
        elif existing:
            anonymous_visits = rng.choices((0, 1), weights=(70, 30))[0]
        else:
            anonymous_visits = rng.choices((0, 1, 2, 3), weights=(30, 50, 15, 5))[0]
        for visit in range(anonymous_visits):
            if visit:
                t = self._visit_after(self.t, 3.0)
                if t > self.last_start:
                    break
                self.t = t
            if rng.random() < 0.2:
                self._fill_cart(0, 0, arrive=True)
            else:
                self._browse(0, 0, arrive=True)
        if not identified:
            return

        # Every customer signs in: in a visit of its own or, near the end, in the one under way.
        t = self._visit_after(self.t, 3.0) if anonymous_visits else self.t
        if t <= self.last_start:
            self.t = t
            self._next(PAGE, 0, 0, HOME)
            if rng.random() < 0.5:
                self._look_at(0, 0)
        self._next(PAGE, 0, 0, ACCOUNT)
        self._sign_in(0, new=not existing)
        if rng.random() < persona.first_order:
            self._check_out(0, self._fill_cart(0, 1, arrive=False), pay=True)
        self._later_visits(persona)

    def _later_visits(self, persona: _Persona) -> None:
        rng = self.rng
        c = self.c
        second_device = rng.random() < 0.18
        switch_at = rng.randint(1, 4)
        t = self.t
        for visit in range(1, persona.max_visits + 1):
            t = self._visit_after(t, persona.gap_days)
            if t > self.last_start:
                return
            self.t = t
            dev = 0
            if second_device and visit >= switch_at:
                if len(c.devices) == 1:
                    app = not c.devices[0].app if rng.random() < 0.7 else c.devices[0].app
                    c.devices.append(self.factory.device(app=app))
                dev = 1 if visit == switch_at or rng.random() < 0.6 else 0
            arrived = False
            if not c.devices[dev].identified:
                # A new device: they look around before logging in, or leave without doing so.
                self._browse(dev, 0, arrive=True)
                arrived = True
                if rng.random() < 0.4:
                    t = self.t
                    continue
                self._next(PAGE, dev, 0, ACCOUNT)
                self._sign_in(dev, new=False)
            self._visit(dev, persona, arrive=not arrived)
            t = self.t

    def _visit(self, dev: int, persona: _Persona, *, arrive: bool) -> None:
        rng = self.rng
        browse, abandon, abandon_checkout = persona.outcomes
        roll = rng.random()
        if roll < browse:
            self._browse(dev, 1, arrive=arrive)
        else:
            cart = self._fill_cart(dev, 1, arrive=arrive)
            if roll >= abandon:
                self._check_out(dev, cart, pay=roll >= abandon_checkout)
        if rng.random() < 0.04:
            self._next(PAGE, dev, 1, HELP)

    # -- steps of a visit ---------------------------------------------------------------------

    def _sign_in(self, dev: int, *, new: bool) -> None:
        c = self.c
        first = not any(d.identified for d in c.devices)
        c.devices[dev].identified = True
        if new:
            c.created_at = self.start_ms + self.t
        self._next(IDENTIFY, dev, 1, len(c.tiers) - 1)
        if new:
            self._next(SIGNED_UP, dev, 1, 0, pause=SECOND)
        if first:
            since = self.t
            self._newsletters(since)
            if self.rng.random() < 0.05:
                self._general_ticket(since)

    def _browse(self, dev: int, user: int, *, arrive: bool) -> None:
        if arrive:
            self._next(PAGE, dev, user, HOME)
        for _ in range(self.rng.choices((1, 2, 3, 4, 5), weights=(60, 25, 10, 4, 1))[0]):
            self._look_at(dev, user)

    def _look_at(self, dev: int, user: int) -> int:
        """Find a product, by search or by browsing, and view it."""
        rng = self.rng
        product = self._pick_product()
        if rng.random() < 0.3:
            if rng.random() < 0.15:
                # Searches that find nothing; the shopper tries again, sometimes twice.
                for _ in range(rng.randint(1, 2)):
                    self._search(dev, user, FRUITLESS_QUERY_BASE + rng.randrange(FRUITLESS_QUERIES))
            query = _CATEGORY_QUERY[product] if rng.random() < 0.25 else product
            self._search(dev, user, query)
        self._next(PAGE, dev, user, PRODUCT | product << 3)
        self._next(VIEWED, dev, user, product, pause=SECOND)
        return product

    def _search(self, dev: int, user: int, query: int) -> None:
        self._next(SEARCHED, dev, user, query)
        self._next(PAGE, dev, user, SEARCH | query << 3, pause=SECOND)

    def _pick_product(self) -> int:
        rng = self.rng
        if rng.random() < 0.7:
            return rng.choice(PRODUCTS_BY_CATEGORY[rng.choice(self.c.interests)])
        return rng.randrange(len(PRODUCTS))

    def _fill_cart(self, dev: int, user: int, *, arrive: bool) -> Cart:
        rng = self.rng
        cart = Cart(number=len(self.c.carts))
        self.c.carts.append(cart)
        if arrive:
            self._next(PAGE, dev, user, HOME)
            if rng.random() < 0.5:
                self._look_at(dev, user)
        for line in range(rng.choices((1, 2, 3), weights=(70, 25, 5))[0]):
            product = self._look_at(dev, user)
            quantity = 1 if rng.random() < 0.82 else rng.randint(2, 3)
            cart.items.append((product, quantity))
            self._next(ADDED, dev, user, cart.number << 6 | line)
        self._next(PAGE, dev, user, CART)
        return cart

    def _check_out(self, dev: int, cart: Cart, *, pay: bool) -> None:
        self._next(PAGE, dev, 1, CHECKOUT)
        self._next(CHECKOUT_STARTED, dev, 1, cart.number, pause=SECOND)
        if pay and self._next(ORDERED, dev, 1, cart.number, pause=90 * SECOND):
            cart.ordered = True
            self._next(PAGE, dev, 1, CONFIRMATION, pause=SECOND)
            self._after_order(cart)

    # -- what follows an order ----------------------------------------------------------------

    def _after_order(self, cart: Cart) -> None:
        rng = self.rng
        c = self.c
        t = self.t
        self.orders += 1
        earned = sum(1 for n in _TIER_ORDERS if self.orders >= n) - 1
        if earned > TIERS.index(c.tiers[-1]):
            c.tiers.append(TIERS[earned])
            self._at(t + rng.randint(1, 10) * MINUTE, IDENTIFY, SERVER, 1, len(c.tiers) - 1)
        roll = rng.random()
        if roll < 0.05:
            # Something was wrong: a ticket, the product sent back, the money refunded.
            line = rng.randrange(len(cart.items))
            topic = rng.choice(RETURN_TOPICS)
            opened = self._waking(t + rng.randint(1, 5) * DAY)
            ticket = self._open_ticket(opened, topic, cart, line)
            reason = RETURN_REASONS.get(TICKET_TOPICS[topic].key, DEFAULT_RETURN_REASON)
            refunded = self._send_back(opened, cart, line, reason)
            if ticket >= 0 and refunded >= 0:
                self._maybe_resolve(ticket, refunded)
        elif roll < 0.065:
            self._send_back(
                t + rng.randint(1, 4) * DAY,
                cart,
                rng.randrange(len(cart.items)),
                DEFAULT_RETURN_REASON,
            )
        elif roll < 0.13:
            opened = self._waking(t + rng.randint(1, 6) * DAY)
            ticket = self._open_ticket(opened, rng.choice(ORDER_TOPICS), cart, -1)
            if ticket >= 0:
                self._maybe_resolve(ticket, opened)

    def _send_back(self, after: int, cart: Cart, line: int, reason: str) -> int:
        """Plan a return and its refund; the refund's time, or -1 if it falls after the end."""
        rng = self.rng
        returned = after + rng.randint(1, 4) * DAY + rng.randrange(8 * HOUR)
        number = len(self.c.returns)
        self.c.returns.append(Return(cart=cart.number, line=line, reason=reason))
        if not self._at(returned, RETURNED, SERVER, 1, number):
            return -1
        refunded = returned + rng.randint(1, 3) * DAY + rng.randrange(8 * HOUR)
        return refunded if self._at(refunded, REFUNDED, SERVER, 1, number) else -1

    def _general_ticket(self, since: int) -> None:
        rng = self.rng
        topic = rng.choice(GENERAL_TOPICS)
        product = self._pick_product() if TICKET_TOPICS[topic].about_product else -1
        opened = self._waking(since + int(rng.random() * (self.end - since)))
        ticket = self._open_ticket(opened, topic, None, -1, product=product)
        if ticket >= 0:
            self._maybe_resolve(ticket, opened)

    def _open_ticket(
        self, at: int, topic: int, cart: Cart | None, line: int, *, product: int = -1
    ) -> int:
        """Plan a ticket opened at ``at``; its number, or -1 if that is after the end."""
        if cart is not None and line >= 0:
            product = cart.items[line][0]
        number = len(self.c.tickets)
        self.c.tickets.append(
            Ticket(
                number=number,
                topic=topic,
                product=product,
                cart=-1 if cart is None else cart.number,
                channel=self.rng.choice(TICKET_CHANNELS),
            )
        )
        return number if self._at(at, TICKET_OPENED, SERVER, 1, number) else -1

    def _maybe_resolve(self, ticket: int, after: int) -> None:
        """Most tickets get resolved, within hours to days; the rest stay open."""
        rng = self.rng
        if rng.random() < 0.8:
            delay = max(20 * MINUTE, int(rng.expovariate(1 / 20) * HOUR))
            self._at(after + delay, TICKET_RESOLVED, SERVER, 1, ticket)

    def _newsletters(self, since: int) -> None:
        """Opens and clicks of the weekly newsletter, sent on local mornings after ``since``."""
        rng = self.rng
        engagement = self.c.engagement
        midnight = self.start_ms - self.start_ms % DAY
        for week in range(self.weeks):
            sent = midnight + (7 * week + 1) * DAY + 10 * HOUR - self.tz - self.start_ms
            if sent <= since or rng.random() >= engagement:
                continue
            opened = sent + int(rng.expovariate(1 / 4) * HOUR)
            if not self._at(opened, EMAIL_OPENED, SERVER, 1, week):
                return
            if rng.random() < 0.3:
                self._at(opened + rng.randint(5, 120) * SECOND, EMAIL_CLICKED, SERVER, 1, week)

    # -- time and emitting --------------------------------------------------------------------

    def _visit_after(self, t: int, mean_days: float) -> int:
        gap = max(30 * MINUTE, int(self.rng.expovariate(1 / mean_days) * DAY))
        return self._waking(t + gap)

    def _waking(self, t: int) -> int:
        """A time on the customer's local day of ``t`` (or the next) when people shop."""
        rng = self.rng
        local = self.start_ms + t + self.tz
        midnight = local - local % DAY
        hour = rng.choices(range(24), cum_weights=_HOUR_CUM)[0]
        at = midnight + hour * HOUR + rng.randrange(HOUR) - self.tz - self.start_ms
        return at if at >= t else at + DAY

    def _next(self, kind: int, dev: int, user: int, arg: int, *, pause: int = 40 * SECOND) -> bool:
        """Plan the visit's next event about ``pause`` after the previous one."""
        self.t += 1 + int(self.rng.random() * 2 * pause)
        return self._at(self.t, kind, dev, user, arg)

    def _at(self, t: int, kind: int, dev: int, user: int, arg: int) -> bool:
        """Plan an event at ``t``; False (and nothing planned) when ``t`` is after the end."""
        if t >= self.end:
            return False
        self.records.append(
            t << _TIME_SHIFT
            | self.base
            | kind << _KIND_SHIFT
            | dev << _DEVICE_SHIFT
            | user << _USER_SHIFT
            | arg
        )
        return True
