"""The policy gate's rules, one function each; :mod:`safar.core.policy` runs them in order.

Each returns ``None`` when its rule lets the message through, else a :class:`Stop` naming the
rule and the fact that stopped it. Rolling windows are ``(now - window, now]``: a send or event
exactly one window old no longer counts, and none stamped after ``now`` counts yet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal, NamedTuple

from safar.core.localtime import local_clock, next_local_time, parse_hhmm, utc_text, zone
from safar.model.messages import Consent, Message, SentRecord
from safar.model.policy import FrequencyCap, Policy, Suppression

_UNITS = ((86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second"))


class Stop(NamedTuple):
    """A rule stopped the message: ``delay`` it to ``until`` (ms) or ``suppress`` it."""

    kind: Literal["delay", "suppress"]
    rule: str
    detail: str
    until: int | None = None


def duration_text(ms: int) -> str:
    """``7 days``, ``12 hours``, ``90 minutes``: a duration in its largest whole unit."""
    for size, unit in _UNITS:
        if ms % size == 0:
            count = ms // size
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"{ms} ms"


def _in_window(at: int, window_ms: int, now: int) -> bool:
    return now - window_ms < at <= now


def effective_consent(
    consents: Iterable[Consent], channel: str, category: str, *, transactional: bool = False
) -> Consent | None:
    """The choice that holds for (channel, category): the customer's choice for that category,
    else their choice for the channel and ``*``; the latest ``at`` wins, and a tie counts as
    unsubscribed. A transactional message heeds only a choice for its own category.
    """
    exact: list[Consent] = []
    every: list[Consent] = []
    for choice in consents:
        if choice.channel != channel:
            continue
        if choice.category == category:
            exact.append(choice)
        elif choice.category == "*" and not transactional:
            every.append(choice)
    choices = exact or every
    if not choices:
        return None
    return max(choices, key=lambda c: (c.at, not c.subscribed))


def consent(
    message: Message, who: str, consents: Iterable[Consent], *, transactional: bool
) -> Stop | None:
    """Stops the message when the choice that holds (:func:`effective_consent`) is
    unsubscribed."""
    latest = effective_consent(
        consents, message.channel, message.category, transactional=transactional
    )
    if latest is None or latest.subscribed:
        return None
    what = "all" if latest.category == "*" else latest.category
    return Stop(
        "suppress",
        "consent",
        f"{who} unsubscribed from {what} {message.channel} messages "
        f"({utc_text(latest.at)}, via {latest.source})",
    )


def _holds(
    rule: Suppression,
    events: list[tuple[str, int]],
    conditions: Mapping[str, bool],
    now: int,
    segments: Collection[str],
) -> str | None:
    """Why ``rule`` holds now (a parenthesis for the detail), or ``None``.

    A rule written with more than one form (validation rejects that) holds when any does.
    """
    if rule.segment is not None and rule.segment in segments:
        return f"in segment {rule.segment}"
    if rule.where is not None and conditions.get(rule.id, False):
        return f"its condition holds: {rule.where}"
    if rule.event is not None:
        times = [
            at
            for name, at in events
            if name == rule.event
            and at <= now
            and (rule.within_ms is None or _in_window(at, rule.within_ms, now))
        ]
        if times:
            span = "" if rule.within_ms is None else f", within {duration_text(rule.within_ms)}"
            return f"{rule.event} at {utc_text(max(times))}{span}"
    if rule.after_event is not None:
        opened = [at for name, at in events if name == rule.after_event]
        if opened:
            start = max(opened)
            closer = rule.until_event
            if closer is None:
                return f"{rule.after_event} at {utc_text(start)}"
            if not any(name == closer and at >= start for name, at in events):
                return f"{rule.after_event} at {utc_text(start)}, no {closer} since"
    return None


def suppression(
    message: Message,
    who: str,
    events: list[tuple[str, int]],
    conditions: Mapping[str, bool],
    policy: Policy,
    now: int,
    segments: Collection[str] = (),
) -> Stop | None:
    """The first suppression rule, in policy order, that covers the message's category and
    channel and holds for the customer now (in ``segments``, for rules by segment)."""
    for rule in policy.suppressions:
        if message.category not in rule.categories:
            continue
        if rule.channels and message.channel not in rule.channels:
            continue
        why = _holds(rule, events, conditions, now, segments)
        if why is not None:
            return Stop("suppress", f"suppression:{rule.id}", f"{who} is held by {rule.id} ({why})")
    return None


def priority(
    message: Message, who: str, sends: Iterable[SentRecord], window_ms: int, now: int
) -> Stop | None:
    """A message of the same category from another journey, with at least this priority, went
    to the customer within the window (when the window is positive)."""
    if window_ms <= 0:
        return None
    rivals = [
        s
        for s in sends
        if s.category == message.category
        and s.journey_id != message.journey_id
        and s.priority >= message.priority
        and _in_window(s.at, window_ms, now)
    ]
    if not rivals:
        return None
    top = max(rivals, key=lambda s: (s.priority, s.at, s.journey_id, s.message_key))
    return Stop(
        "suppress",
        "priority",
        f"{who} got a {message.category} message from journey {top.journey_id} "
        f"(priority {top.priority}, this one {message.priority}) at {utc_text(top.at)}, "
        f"within the {duration_text(window_ms)} priority window",
    )


def _counts(cap: FrequencyCap, send: SentRecord) -> bool:
    return (cap.category is None or send.category == cap.category) and (
        cap.channel is None or send.channel == cap.channel
    )


def frequency_cap(
    message: Message, who: str, sends: list[SentRecord], caps: Iterable[FrequencyCap], now: int
) -> Stop | None:
    """The first cap, in policy order, that covers the message and already counts ``max``
    sends in its rolling window."""
    for cap in caps:
        if cap.category not in (None, message.category):
            continue
        if cap.channel not in (None, message.channel):
            continue
        count = sum(1 for s in sends if _counts(cap, s) and _in_window(s.at, cap.window_ms, now))
        if count >= cap.max:
            what = " ".join(x for x in (cap.category, cap.channel) if x is not None)
            return Stop(
                "suppress",
                f"frequency_cap:{cap.id}",
                f"{who} already got {count} {what + ' ' if what else ''}messages in the last "
                f"{duration_text(cap.window_ms)} ({cap.id} allows {cap.max})",
            )
    return None


def _inside(minute: int, start: int, end: int) -> bool:
    if start <= end:
        return start <= minute < end  # equal start and end: no quiet hours
    return minute >= start or minute < end  # spans midnight


def quiet_hours(
    message: Message, who: str, traits: Mapping[str, Any], policy: Policy, now: int
) -> Stop | None:
    """Inside local quiet hours: delay to their end when the journey says ``delay``, the end is
    within ``max_delay_ms`` and the message is not older than that; else suppress."""
    quiet = policy.quiet_hours
    if quiet is None or message.quiet_hours == "ignore":
        return None
    tz = zone(traits.get("timezone"), policy.default_timezone)
    hour, minute, _ = local_clock(now, tz)
    start_h, start_m = parse_hhmm(quiet.start)
    end_h, end_m = parse_hhmm(quiet.end)
    if not _inside(hour * 60 + minute, start_h * 60 + start_m, end_h * 60 + end_m):
        return None
    until = next_local_time(now, quiet.end, tz)
    where = f"It is {hour:02d}:{minute:02d} in {tz.key} for {who}, inside quiet hours "
    where += f"{quiet.start}-{quiet.end}"
    limit = duration_text(quiet.max_delay_ms)
    if message.quiet_hours == "skip":
        why = "its journey skips messages caught by quiet hours"
    elif now - message.created_at > quiet.max_delay_ms:
        why = f"the message dates from {utc_text(message.created_at)}, more than {limit} ago"
    elif until - now > quiet.max_delay_ms:
        why = f"they end at {utc_text(until)}, more than the {limit} maximum delay away"
    else:
        return Stop("delay", "quiet_hours", f"{where}; delayed to {utc_text(until)}", until)
    return Stop("suppress", "quiet_hours", f"{where}; skipped: {why}")
