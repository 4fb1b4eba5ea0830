"""A journey version made ready to run: its conditions compiled once, its steps indexed.

Compiling is the only costly part of using a definition, so the runtime keeps one
:class:`Plan` per published version. Conditions are passed in as a compile function so the core
does not depend on how they are written (Safar uses CEL, :mod:`safar.cel`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from safar.model.audiences import SEGMENT_ENTERED
from safar.model.journeys import AnyStep, Branch, Journey, Wait

#: A compiled condition: True only when it holds (an evaluation error counts as not holding).
Predicate = Callable[[Mapping[str, Any]], bool]
Compile = Callable[[str], Predicate]


def always(_: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Plan:
    """One journey version with compiled conditions."""

    journey: Journey
    version: int
    steps: dict[str, AnyStep]
    #: Step id -> the step that follows it by default.
    following: dict[str, str]
    entry_where: Predicate = always
    goal_where: Predicate = always
    #: Branch step id -> one predicate per case; wait step id -> its event's predicate.
    cases: dict[str, tuple[Predicate, ...]] = field(default_factory=dict)
    wait_where: dict[str, Predicate] = field(default_factory=dict)
    #: For ``wait: {until: ...}`` when the profile has no ``timezone`` trait.
    default_timezone: str = "UTC"

    @property
    def id(self) -> str:
        return self.journey.id

    @property
    def first(self) -> str:
        return self.journey.steps[0].id

    @property
    def entry_event(self) -> str | None:
        """The event name customers enter on, if any: a segment entry enters on
        ``Segment Entered`` (unless it is scheduled)."""
        entry = self.journey.entry
        if entry.segment is not None and entry.schedule is None:
            return SEGMENT_ENTERED
        return entry.event


def compile_plan(
    journey: Journey, version: int, compile: Compile, *, default_timezone: str = "UTC"
) -> Plan:
    """Compile every condition of ``journey``. Raises what ``compile`` raises for a bad one."""
    cases: dict[str, tuple[Predicate, ...]] = {}
    wait_where: dict[str, Predicate] = {}
    for step in journey.steps:
        if isinstance(step, Branch):
            cases[step.id] = tuple(compile(case.condition) for case in step.cases)
        elif isinstance(step, Wait) and step.event is not None and step.event.where:
            wait_where[step.id] = compile(step.event.where)
    entry_where = compile(journey.entry.where) if journey.entry.where else always
    goal = journey.goal
    goal_where = compile(goal.where) if goal is not None and goal.where else always
    return Plan(
        journey=journey,
        version=version,
        steps={step.id: step for step in journey.steps},
        following={step.id: journey.after(step) for step in journey.steps},
        entry_where=entry_where,
        goal_where=goal_where,
        cases=cases,
        wait_where=wait_where,
        default_timezone=default_timezone,
    )
