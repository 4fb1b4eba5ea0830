"""``safar journeys simulate``: run a draft journey over historic events on a simulated clock.

The events are replayed in timestamp order through the whole pipeline (profiles, the journey,
the policy gate, rendering) on in-memory stores, with the clock jumping from each event or due
timer to the next; nothing is delivered. The report says how many customers entered, reached
each step with each outcome, converted or left, which messages would have gone and which the
gate held back and why, and shows a few customers' paths.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from safar.errors import ValidationError
from safar.model.events import iso, parse_time
from safar.model.journeys import Journey
from safar.model.policy import Policy
from safar.runtime.dispatch import Renderer
from safar.testing.journeys import JourneyHarness


class StepCount(msgspec.Struct, kw_only=True):
    step: str
    outcome: str
    count: int


class SimulationReport(msgspec.Struct, kw_only=True):
    journey_id: str
    events: int
    started: str
    ended: str
    customers_entered: int
    instances: dict[str, int]
    steps: list[StepCount]
    messages: dict[str, int]
    held_back: dict[str, int]
    sample_paths: list[list[str]]


def read_history(path: Path) -> Iterator[dict[str, Any]]:
    """Segment-shaped events, one JSON object per line. Errors name the line."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                raise ValidationError(f"not JSON: {exc}", f"{path}: line {number}") from exc
            if not isinstance(event, dict):
                raise ValidationError("expected a JSON object", f"{path}: line {number}")
            event["_line"] = number
            yield event


def _when(event: dict[str, Any], path: Path) -> int:
    value = event.get("timestamp") or event.get("originalTimestamp")
    if not isinstance(value, str):
        raise ValidationError("event has no timestamp", f"{path}: line {event['_line']}")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ValidationError(
            f"bad timestamp {value!r}", f"{path}: line {event['_line']}.timestamp"
        ) from exc


def simulate(
    journey: Journey,
    history: Iterable[dict[str, Any]],
    *,
    origin: Path,
    until_ms: int = 0,
    policy: Policy | None = None,
    render: Renderer | None = None,
    samples: int = 5,
) -> SimulationReport:
    """Replay ``history`` through ``journey``; then let ``until_ms`` more pass."""
    timed = sorted(((_when(e, origin), e) for e in history), key=lambda pair: pair[0])
    if not timed:
        raise ValidationError("no events to replay", str(origin))
    start = timed[0][0]
    harness = JourneyHarness(start=start, policy=policy, render=render)
    harness.publish(journey)
    for at, event in timed:
        event.pop("_line", None)
        harness.advance_to(max(at, harness.clock.now_ms()))
        harness.send(event)
    harness.advance_to(harness.clock.now_ms() + until_ms)
    return _report(harness, journey, len(timed), start, samples)


def _report(
    harness: JourneyHarness, journey: Journey, events: int, start: int, samples: int
) -> SimulationReport:
    runs = harness.stores.runs
    statuses: Counter[str] = Counter()
    steps: Counter[tuple[str, str]] = Counter()
    first_seen: dict[tuple[str, str], int] = {}
    customers: set[str] = set()
    paths: list[list[str]] = []
    delivery = harness.stores.delivery
    held: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for pid in _profile_ids(harness):
        instances, visits = runs.history(pid, 10_000)
        mine = [i for i in instances if i.journey_id == journey.id]
        if not mine:
            continue
        customers.add(pid)
        for instance in mine:
            statuses[instance.status] += 1
        for visit in visits:
            if visit.journey_id == journey.id:
                steps[(visit.step, visit.outcome)] += 1
                first_seen.setdefault((visit.step, visit.outcome), len(first_seen))
        if len(paths) < samples:
            paths.append([f"{v.step}:{v.outcome}" for v in visits if v.journey_id == journey.id])
        for decision in delivery.decisions(pid, 10_000):
            if decision.journey_id != journey.id:
                continue
            if decision.outcome == "sent":
                messages[f"{decision.channel}:{decision.step_id}"] += 1
            elif decision.outcome != "delayed":
                held[decision.rule or decision.outcome] += 1
    order = {step.id: index for index, step in enumerate(journey.steps)}
    return SimulationReport(
        journey_id=journey.id,
        events=events,
        started=iso(start),
        ended=iso(harness.clock.now_ms()),
        customers_entered=len(customers),
        instances=dict(sorted(statuses.items())),
        steps=[
            StepCount(step=step, outcome=outcome, count=count)
            for (step, outcome), count in sorted(
                steps.items(),
                key=lambda item: (order.get(item[0][0], 1 << 30), first_seen[item[0]]),
            )
        ],
        messages=dict(sorted(messages.items())),
        held_back=dict(sorted(held.items())),
        sample_paths=paths,
    )


def _profile_ids(harness: JourneyHarness) -> list[str]:
    """Every profile the replay created."""
    return [profile.id for profile in harness.stores.profiles.scan("", 1 << 62)]


def format_report(report: SimulationReport) -> str:
    """The report for people."""
    lines = [
        f"journey {report.journey_id}: {report.events} events, {report.started} → {report.ended}",
        f"customers entered: {report.customers_entered}   "
        + "   ".join(f"{k}: {v}" for k, v in report.instances.items()),
        "",
        "step                          outcome                 customers",
    ]
    lines += [f"{s.step:<29} {s.outcome:<23} {s.count:>9}" for s in report.steps]
    lines.append("")
    lines.append("messages that would go: " + (_pairs(report.messages) or "none"))
    lines.append("held back by the policy gate: " + (_pairs(report.held_back) or "none"))
    lines.append("")
    lines.append("sample paths:")
    lines += ["  " + " → ".join(path) for path in report.sample_paths]
    return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
