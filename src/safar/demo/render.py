"""Turn a planned shop into Segment-spec events.

Nothing here draws a random number: :mod:`safar.demo.plan` decided everything, so the same plan
always renders the same events. Every event is built from fresh dicts, so a caller may change one
without touching another.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from safar.demo.catalog import PRODUCTS, QUERIES, prices, search_results
from safar.demo.customers import Customer
from safar.demo.devices import APP, APP_DEVICES, WEB_AGENTS
from safar.demo.markets import USD_RATES
from safar.demo.plan import (
    ADDED,
    CHECKOUT_STARTED,
    EMAIL_CLICKED,
    EMAIL_OPENED,
    IDENTIFY,
    ORDERED,
    PAGE,
    REFUNDED,
    RETURNED,
    SEARCHED,
    SERVER,
    SIGNED_UP,
    TICKET_OPENED,
    TICKET_RESOLVED,
    VIEWED,
    Plan,
    unpack,
)
from safar.demo.texts import CAMPAIGNS, PAGES, PRODUCT, SEARCH, TICKET_TOPICS

SHOP_URL: Final = "https://shop.example.com"
LIBRARY: Final = {"name": "safar-demo", "version": "1.0"}

_MASK60: Final = (1 << 60) - 1
_MASK64: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
# Orders worth less than this (in US dollars) pay for shipping.
_FREE_SHIPPING_USD: Final = 50.0
_SHIPPING_USD: Final = 4.99

Event = dict[str, Any]
_Handler = Callable[[Event, Customer, int, int], None]


def _mix60(x: int) -> int:
    """The splitmix64 finalizer cut to 60 bits: each step (xor with a right shift, multiplication
    by an odd number) is invertible, so distinct inputs give distinct outputs, scattered."""
    x = ((x ^ (x >> 29)) * 0xBF58476D1CE4E5B9) & _MASK60
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK60
    return x ^ (x >> 31)


class Renderer:
    """Renders the planned events of ``plan`` one at a time."""

    def __init__(self, plan: Plan, *, seed: int, start_ms: int, currency: str) -> None:
        self._customers = plan.customers
        self._start_ms = start_ms
        self._key = _mix60(seed & _MASK60)
        self._minute = -1
        self._minute_text = ""
        self._dates: dict[int, str] = {}
        self._currency = currency
        self._prices = {code: prices(code) for code in USD_RATES}
        handlers: dict[int, _Handler] = {
            PAGE: self._page,
            SEARCHED: self._searched,
            VIEWED: self._viewed,
            ADDED: self._added,
            CHECKOUT_STARTED: self._checkout_started,
            ORDERED: self._ordered,
            RETURNED: self._returned,
            REFUNDED: self._refunded,
            TICKET_OPENED: self._ticket_opened,
            TICKET_RESOLVED: self._ticket_resolved,
            EMAIL_OPENED: self._email_opened,
            EMAIL_CLICKED: self._email_clicked,
            IDENTIFY: self._identify,
            SIGNED_UP: self._signed_up,
        }
        self._handlers = tuple(handlers[kind] for kind in sorted(handlers))

    def render(self, record: int, counter: int) -> Event:
        """The event planned as ``record``, the ``counter``-th of the stream (0-based)."""
        t, index, kind, dev, user, arg = unpack(record)
        c = self._customers[index]
        event: Event = {
            "type": "track",
            "messageId": self.message_id(counter),
            "timestamp": self.iso(self._start_ms + t),
        }
        if user:
            event["userId"] = c.user_id
        if dev == SERVER:
            event["context"] = {"library": dict(LIBRARY)}
        else:
            event["anonymousId"] = c.devices[dev].anonymous_id
            event["context"] = self._client_context(c, dev)
        self._handlers[kind](event, c, dev, arg)
        return event

    def message_id(self, counter: int) -> str:
        """A UUID-shaped id (version 4, like the SDKs'), unique for every counter below 2**60."""
        unique = _mix60(counter ^ self._key)
        # The first 15 hex digits are a bijection of the counter; the rest only look random.
        text = f"{unique:015x}{(unique * _GOLDEN) & _MASK64:016x}"
        return f"{text[:8]}-{text[8:12]}-4{text[12:15]}-a{text[16:19]}-{text[19:31]}"

    def iso(self, ms: int) -> str:
        """ISO 8601 UTC with milliseconds, e.g. 2026-01-05T14:03:22.123Z."""
        minute, rest = divmod(ms, 60_000)
        if minute != self._minute:
            # Events come in time order, often several a minute: "date T hh:mm:" is reused.
            self._minute = minute
            day, minute_of_day = divmod(minute, 1440)
            date = self._dates.get(day)
            if date is None:
                date = datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()
                self._dates[day] = date
            hour, minutes = divmod(minute_of_day, 60)
            self._minute_text = f"{date}T{hour:02d}:{minutes:02d}:"
        return f"{self._minute_text}{rest // 1000:02d}.{rest % 1000:03d}Z"

    # -- context ------------------------------------------------------------------------------

    def _client_context(self, c: Customer, dev: int) -> Event:
        device = c.devices[dev]
        market = c.market
        context: Event = {
            "ip": device.ip,
            "locale": market.language_tag,
            "timezone": market.timezone,
            "library": dict(LIBRARY),
        }
        if device.app:
            kind, maker, model, os_name, os_version = APP_DEVICES[device.model]
            context["app"] = dict(APP)
            context["device"] = {
                "id": device.anonymous_id,
                "type": kind,
                "manufacturer": maker,
                "model": model,
            }
            context["os"] = {"name": os_name, "version": os_version}
        else:
            context["userAgent"] = WEB_AGENTS[device.model]
        return context

    # -- pages --------------------------------------------------------------------------------

    def _page(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        page, detail = arg & 7, arg >> 3
        name, path, titles = PAGES[page]
        locale = c.market.locale
        properties: Event = {}
        if page == PRODUCT:
            product = PRODUCTS[detail]
            path += product.id
            title = product.names[locale]
            properties["product_id"] = product.id
        else:
            title = titles[locale]
        if page == SEARCH:
            query = QUERIES[locale][detail]
            properties["query"] = query
            search = "?q=" + quote(query)
        else:
            search = ""
        path = f"/{locale}{path}" if path != "/" else f"/{locale}/"
        event["name"] = name
        if c.devices[dev].app:
            event["type"] = "screen"
            properties["title"] = title
        else:
            event["type"] = "page"
            url = f"{SHOP_URL}{path}{search}"
            properties.update(path=path, url=url, title=title, search=search)
            event["context"]["page"] = {"path": path, "url": url, "title": title, "search": search}
        event["properties"] = properties

    # -- shopping -----------------------------------------------------------------------------

    def _currency_of(self, c: Customer) -> str:
        return c.market.currency if self._currency == "local" else self._currency

    def _product(self, c: Customer, index: int, currency: str, quantity: int = 1) -> Event:
        product = PRODUCTS[index]
        return {
            "product_id": product.id,
            "sku": f"SKU-{product.id[2:]}",
            "name": product.names[c.market.locale],
            "category": product.category,
            "price": self._prices[currency][index],
            "quantity": quantity,
            "currency": currency,
        }

    def _searched(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Products Searched"
        event["properties"] = {
            "query": QUERIES[c.market.locale][arg],
            "results": search_results(arg),
        }

    def _viewed(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Product Viewed"
        event["properties"] = self._product(c, arg, self._currency_of(c))

    def _added(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        cart = c.carts[arg >> 6]
        product, quantity = cart.items[arg & 63]
        properties = self._product(c, product, self._currency_of(c), quantity)
        properties["cart_id"] = _cart_id(c, cart.number)
        event["event"] = "Product Added"
        event["properties"] = properties

    def _order(self, c: Customer, cart_number: int) -> Event:
        """Order id, products and amounts of a cart, as the ecommerce spec names them."""
        currency = self._currency_of(c)
        items = c.carts[cart_number].items
        products = [self._product(c, index, currency, quantity) for index, quantity in items]
        revenue = sum(p["price"] * p["quantity"] for p in products)
        rate = USD_RATES[currency]
        shipping = (
            0.0 if revenue >= _FREE_SHIPPING_USD * rate else _round(_SHIPPING_USD * rate, currency)
        )
        return {
            "order_id": _order_id(c, cart_number),
            "cart_id": _cart_id(c, cart_number),
            "revenue": _round(revenue, currency),
            "shipping": shipping,
            "total": _round(revenue + shipping, currency),
            "currency": currency,
            "products": products,
        }

    def _checkout_started(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Checkout Started"
        event["properties"] = self._order(c, arg)

    def _ordered(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Order Completed"
        event["properties"] = self._order(c, arg)

    def _returned(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        back = c.returns[arg]
        index, quantity = c.carts[back.cart].items[back.line]
        properties = self._product(c, index, self._currency_of(c), quantity)
        properties["order_id"] = _order_id(c, back.cart)
        properties["reason"] = back.reason
        event["event"] = "Product Returned"
        event["properties"] = properties

    def _refunded(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        back = c.returns[arg]
        currency = self._currency_of(c)
        index, quantity = c.carts[back.cart].items[back.line]
        product = self._product(c, index, currency, quantity)
        event["event"] = "Order Refunded"
        event["properties"] = {
            "order_id": _order_id(c, back.cart),
            "total": _round(product["price"] * quantity, currency),
            "currency": currency,
            "products": [product],
        }

    # -- support, e-mail, identity ------------------------------------------------------------

    def _ticket(self, c: Customer, number: int, *, opened: bool) -> Event:
        ticket = c.tickets[number]
        topic = TICKET_TOPICS[ticket.topic]
        locale = c.market.locale
        product = PRODUCTS[ticket.product].names[locale] if ticket.product >= 0 else ""
        order = _order_id(c, ticket.cart) if ticket.cart >= 0 else ""
        properties: Event = {
            "ticket_id": f"T-{c.index + 1:06d}-{number + 1:02d}",
            "subject": topic.subject[locale].format(product=product, order=order),
            "topic": topic.key,
            "priority": topic.priority,
            "channel": ticket.channel,
            "status": "open" if opened else "resolved",
        }
        if opened:
            properties["text"] = topic.text[locale].format(product=product, order=order)
            properties["language"] = locale
        if order:
            properties["order_id"] = order
        if ticket.product >= 0:
            properties["product_id"] = PRODUCTS[ticket.product].id
        return properties

    def _ticket_opened(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Ticket Opened"
        event["properties"] = self._ticket(c, arg, opened=True)

    def _ticket_resolved(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Ticket Resolved"
        event["properties"] = self._ticket(c, arg, opened=False)

    def _email(self, c: Customer, week: int) -> Event:
        campaign, _, subjects = CAMPAIGNS[week % len(CAMPAIGNS)]
        return {
            "email_id": f"newsletter-{week + 1:02d}",
            "campaign_id": campaign,
            "email_subject": subjects[c.market.locale],
        }

    def _email_opened(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Email Opened"
        event["properties"] = self._email(c, arg)

    def _email_clicked(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        properties = self._email(c, arg)
        _, link, _ = CAMPAIGNS[arg % len(CAMPAIGNS)]
        properties["link_url"] = (
            f"{SHOP_URL}/{c.market.locale}{link}?utm_source=newsletter"
            f"&utm_campaign={properties['campaign_id']}"
        )
        event["event"] = "Email Link Clicked"
        event["properties"] = properties

    def _signed_up(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["event"] = "Signed Up"
        event["properties"] = {"method": "email"}

    def _identify(self, event: Event, c: Customer, dev: int, arg: int) -> None:
        event["type"] = "identify"
        tier = c.tiers[arg]
        if dev == SERVER:
            # The CRM telling us about a new loyalty tier.
            event["traits"] = {"loyalty_tier": tier, "vip": c.vip}
            return
        market = c.market
        traits: Event = {
            "name": c.name,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "email": c.email,
        }
        if c.phone:
            traits["phone"] = c.phone
        traits.update(
            locale=market.locale,
            timezone=market.timezone,
            vip=c.vip,
            loyalty_tier=tier,
            created_at=self.iso(c.created_at),
            address={"city": c.city, "country": market.country},
        )
        event["traits"] = traits
        if c.crm_id is not None:
            event["context"]["externalIds"] = [
                {"id": c.crm_id, "type": "crm_id", "collection": "users", "encoding": "none"}
            ]


def _order_id(c: Customer, cart: int) -> str:
    return f"ORD-{c.index + 1:06d}-{cart + 1:03d}"


def _cart_id(c: Customer, cart: int) -> str:
    return f"CART-{c.index + 1:06d}-{cart + 1:03d}"


def _round(amount: float, currency: str) -> float:
    # Rial and Egyptian pound amounts are whole; the rest have cents.
    return float(round(amount)) if currency in ("IRR", "EGP") else round(amount, 2)
