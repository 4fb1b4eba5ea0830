"""A deterministic synthetic shop: Segment-spec events for ``safar demo`` and the benchmarks.

    >>> from datetime import UTC, datetime
    >>> events = generate_shop(customers=100, start=datetime(2026, 1, 1, tzinfo=UTC), days=30)
    >>> first = next(events)
    >>> first["timestamp"] >= "2026-01-01T00:00:00.000Z", "anonymousId" in first
    (True, True)

Customers write in Persian, Arabic, Chinese or English, shop in their local currency and time zone,
browse anonymously, sign up, buy, abandon carts, return things, open support tickets and read the
newsletter; see :mod:`safar.demo.plan` for the story. The same arguments always give the same
events, ids included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Final

import msgspec

from safar.demo.markets import LOCALES, USD_RATES
from safar.demo.plan import MAX_CUSTOMERS, plan_shop
from safar.demo.render import Renderer

#: Each language gets a quarter of the customers unless told otherwise.
DEFAULT_LOCALE_WEIGHTS: Final[Mapping[str, float]] = {locale: 0.25 for locale in LOCALES}

# Large enough that a write is rarely partial, small enough to stay in the CPU caches.
_WRITE_CHUNK: Final = 1 << 20


def generate_shop(
    *,
    customers: int = 10_000,
    seed: int = 7,
    start: datetime,
    days: int = 90,
    locale_weights: Mapping[str, float] | None = None,
    currency: str = "local",
) -> Iterator[dict[str, Any]]:
    """Yield the shop's events in timestamp order (ties in a fixed order).

    ``customers`` sign up or log in at some point; a tenth as many anonymous visitors besides them
    never do. With the defaults that is about 250,000 events. All events fall in
    ``[start, start + days)``; a naive ``start`` is taken as UTC. ``locale_weights`` maps fa, ar,
    zh and en to relative shares of customers. Prices are in each customer's ``"local"`` currency
    (IRR, AED, SAR, EGP, CNY, USD, GBP) or all in the one currency named, e.g. ``"USD"``.

    Events are JSON-ready dicts with ``type``, a unique ``messageId``, ``timestamp`` (ISO 8601,
    UTC, ``Z``), ``userId`` and/or ``anonymousId``, ``event`` or ``name``, ``properties`` or
    ``traits``, and ``context``. Arguments are checked at once; the shop is planned on the first
    ``next()`` (about a second per 100,000 events) and held in memory (~50 bytes per event).
    Raises :class:`ValueError` for a negative count, fewer than one day, unknown locales or
    currencies.
    """
    if not 0 <= customers < MAX_CUSTOMERS:
        raise ValueError(f"customers must be between 0 and {MAX_CUSTOMERS - 1}, got {customers}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if currency != "local" and currency not in USD_RATES:
        raise ValueError(
            f"currency must be 'local' or one of {', '.join(USD_RATES)}, got {currency!r}"
        )
    weights = DEFAULT_LOCALE_WEIGHTS if locale_weights is None else locale_weights
    unknown = set(weights) - set(LOCALES)
    if unknown or any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(
            f"locale_weights must give non-negative weights to some of {', '.join(LOCALES)}, "
            f"at least one positive; got {dict(weights)!r}"
        )
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    return _events(customers, seed, start_ms, days, dict(weights), currency)


def _events(
    customers: int,
    seed: int,
    start_ms: int,
    days: int,
    weights: dict[str, float],
    currency: str,
) -> Iterator[dict[str, Any]]:
    plan = plan_shop(
        customers=customers, seed=seed, start_ms=start_ms, days=days, locale_weights=weights
    )
    render = Renderer(plan, seed=seed, start_ms=start_ms, currency=currency).render
    for counter, record in enumerate(plan.records):
        yield render(record, counter)


def write_jsonl(events: Iterable[dict[str, Any]], path: Path) -> int:
    """Write ``events`` to ``path``, one JSON object per line (UTF-8); return how many."""
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    count = 0
    with path.open("wb") as out:
        for event in events:
            encoder.encode_into(event, buffer, -1)
            buffer.extend(b"\n")
            count += 1
            if len(buffer) >= _WRITE_CHUNK:
                out.write(buffer)
                buffer.clear()
        out.write(buffer)
    return count


def shop_batches(
    events: Iterable[dict[str, Any]], size: int = 100
) -> Iterator[list[dict[str, Any]]]:
    """Group ``events`` into lists of ``size`` (the last may be shorter), e.g. for ``/v1/batch``."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    return _batches(iter(events), size)


def _batches(events: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while batch := list(islice(events, size)):
        yield batch
