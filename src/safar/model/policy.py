"""The policy every message passes: consent, suppression, frequency caps, quiet hours, priority.

One policy per installation, read from ``policy.yaml`` (see ``docs/policy.md``). Durations are
milliseconds here; the file writes them as ``7d``, ``12h``.
"""

from __future__ import annotations

import msgspec


class QuietHours(msgspec.Struct, kw_only=True, frozen=True):
    """Local times (``HH:MM``, recipient's timezone) between which no marketing message goes out.

    ``start`` after ``end`` spans midnight (21:00-08:00). A message caught inside is delayed to
    ``end`` when that is within ``max_delay_ms`` and its journey says ``delay``; else skipped.
    """

    start: str = "21:00"
    end: str = "08:00"
    max_delay_ms: int = 12 * 3600 * 1000


class FrequencyCap(msgspec.Struct, kw_only=True, frozen=True):
    """At most ``max`` messages per ``window_ms`` (rolling), across all journeys, counting
    messages of ``category`` and ``channel`` (None matches any)."""

    id: str
    max: int
    window_ms: int
    category: str | None = None
    channel: str | None = None


class Suppression(msgspec.Struct, kw_only=True, frozen=True):
    """While this rule holds for a customer, messages of ``categories`` are not sent.

    One of:
    - ``segment``: the customer is in this segment (e.g. customers with an open ticket);
    - ``where``: a CEL condition over ``profile`` and ``now``;
    - ``event`` with ``within_ms``: such an event in that window (e.g. a return in 7 days);
    - ``after_event`` with ``until_event``: the latest ``after_event`` has no ``until_event``
      after it (e.g. a ticket opened and not yet resolved).
    ``channels`` limits the rule to some channels (empty: all).
    """

    id: str
    categories: tuple[str, ...] = ("marketing",)
    channels: tuple[str, ...] = ()
    segment: str | None = None
    where: str | None = None
    event: str | None = None
    within_ms: int | None = None
    after_event: str | None = None
    until_event: str | None = None


class Policy(msgspec.Struct, kw_only=True, frozen=True):
    """The installation's policy. The defaults are safe for a shop sending marketing email."""

    #: Timezone for customers without a ``timezone`` trait.
    default_timezone: str = "UTC"
    quiet_hours: QuietHours | None = QuietHours()
    frequency_caps: tuple[FrequencyCap, ...] = ()
    suppressions: tuple[Suppression, ...] = ()
    #: When several journeys' messages of one category reach a person within this window,
    #: the one with the highest priority goes; the others are suppressed with rule ``priority``.
    priority_window_ms: int = 0
    #: Categories that bypass consent for marketing, suppression, caps and quiet hours.
    transactional_categories: tuple[str, ...] = ("transactional",)
