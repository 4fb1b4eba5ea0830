"""A :class:`~safar.model.journeys.Journey` written back as journey-file YAML.

:func:`dump_journey` is the inverse of :func:`~safar.definitions.journeys.parse_journey`: parsing
its output gives an equal journey (``line`` and ``origin`` aside). Defaults are left out, so a
journey built in Python dumps to what a person would have written.
"""

from __future__ import annotations

from typing import Any

import yaml

from safar.definitions.durations import format_duration
from safar.model.journeys import (
    EXIT,
    AnyStep,
    Branch,
    Emit,
    Entry,
    Exit,
    Goal,
    Journey,
    JourneyPolicy,
    Send,
    Split,
    UpdateProfile,
    Wait,
    Webhook,
)

_EXIT_REASON = Exit(id="").reason


def dump_journey(journey: Journey) -> str:
    """YAML text for ``journey``, in the layout of ``docs/journeys.md``."""
    data: dict[str, Any] = {"id": journey.id, "name": journey.name}
    _put(data, "description", journey.description)
    _put(data, "stage", journey.stage)
    if journey.context:
        data["context"] = journey.context
    data["entry"] = _entry(journey.entry)
    if journey.goal is not None:
        data["goal"] = _goal(journey.goal)
    if journey.policy != JourneyPolicy(line=journey.policy.line):
        data["policy"] = _changed(journey.policy, JourneyPolicy())
    data["steps"] = [_step(step) for step in journey.steps]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        data[key] = value


def _changed(node: JourneyPolicy, default: JourneyPolicy) -> dict[str, Any]:
    return {
        key: getattr(node, key)
        for key in ("category", "priority", "quiet_hours")
        if getattr(node, key) != getattr(default, key)
    }


def _entry(entry: Entry) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in ("event", "where", "schedule"):
        _put(data, key, getattr(entry, key))
    if entry.api:
        data["api"] = True
    if entry.reentry != "never":
        data["reentry"] = entry.reentry
    if entry.cooldown_ms:
        data["cooldown"] = format_duration(entry.cooldown_ms)
    if entry.max_active != 1:
        data["max_active"] = entry.max_active
    return data


def _goal(goal: Goal) -> dict[str, Any]:
    data: dict[str, Any] = {"event": goal.event}
    _put(data, "where", goal.where)
    if goal.within_ms is not None:
        data["within"] = format_duration(goal.within_ms)
    return data


def _step(step: AnyStep) -> dict[str, Any]:
    data: dict[str, Any] = {"id": step.id}
    kind, body = _body(step)
    data[kind] = body
    for key in ("next", "stage", "touchpoint"):
        _put(data, key, getattr(step, key))
    return data


def _body(step: AnyStep) -> tuple[str, Any]:
    if isinstance(step, Wait):
        return "wait", _wait(step)
    if isinstance(step, Branch):
        cases: list[dict[str, str]] = [{"if": c.condition, "next": c.next} for c in step.cases]
        return "branch", [*cases, {"else": step.otherwise}] if step.otherwise != EXIT else cases
    if isinstance(step, Split):
        branches = [
            {"name": b.name, "weight": _number(b.weight), "next": b.next} for b in step.branches
        ]
        return "split", {"seed": step.seed, "branches": branches}
    if isinstance(step, Send):
        send = {"channel": step.channel, "template": step.template}
        _put(send, "category", step.category)
        return "send", send
    if isinstance(step, UpdateProfile):
        update: dict[str, Any] = {}
        if step.set:
            update["set"] = step.set
        if step.increment:
            update["increment"] = step.increment
        if step.unset:
            update["unset"] = list(step.unset)
        return "update", update
    if isinstance(step, Webhook):
        return "webhook", _webhook(step)
    if isinstance(step, Emit):
        emit: dict[str, Any] = {"event": step.event}
        if step.properties:
            emit["properties"] = step.properties
        return "emit", emit
    assert isinstance(step, Exit)
    return "exit", True if step.reason == _EXIT_REASON else {"reason": step.reason}


def _wait(step: Wait) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if step.duration_ms is not None:
        data["for"] = format_duration(step.duration_ms)
    _put(data, "until", step.until)
    if step.event is not None:
        data["event"] = step.event.event
        _put(data, "where", step.event.where)
    if step.timeout_ms is not None:
        data["timeout"] = format_duration(step.timeout_ms)
    _put(data, "timeout_next", step.timeout_next)
    return data


def _webhook(step: Webhook) -> dict[str, Any]:
    data: dict[str, Any] = {"url": step.url}
    if step.method != "POST":
        data["method"] = step.method
    if step.body is not None:
        data["body"] = step.body
    if step.headers:
        data["headers"] = step.headers
    if step.save:
        data["save"] = step.save
    if step.timeout_ms != 10_000:
        data["timeout"] = format_duration(step.timeout_ms)
    return data


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() else value
