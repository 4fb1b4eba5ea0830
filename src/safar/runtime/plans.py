"""The runtime's view of the journey catalog: a compiled plan per stored version, the journeys
customers may enter, and the event names any of them listens to.

Compiling conditions is the costly part, so plans are kept across refreshes and rebuilt only
for versions that changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safar.core.plan import Compile, Plan, Predicate, compile_plan
from safar.model.journeys import JourneyVersion, Migration, Wait
from safar.ports import JourneyStore


def cel_compile(source: str) -> Predicate:
    """Compile a CEL condition over event, profile, journey and now (:mod:`safar.cel`)."""
    from safar.cel import compile_expression

    program = compile_expression(source, names=("event", "profile", "journey", "now"))
    test: Predicate = program.test
    return test


@dataclass
class PlanBook:
    """Compiled plans by (journey id, version), refreshed from a :class:`JourneyStore`."""

    compile: Compile = cel_compile
    default_timezone: str = "UTC"
    plans: dict[tuple[str, int], Plan] = field(default_factory=dict)
    status: dict[tuple[str, int], str] = field(default_factory=dict)
    #: Event name -> plans customers enter on that event (published versions only).
    entering: dict[str, list[Plan]] = field(default_factory=dict)
    #: Event names an active instance may react to (goals, waits for events, webhook replies).
    listening: set[str] = field(default_factory=set)
    #: Journey id -> when its newest version was published (ms), for scheduled entries.
    published_at: dict[str, int] = field(default_factory=dict)
    #: Journey id -> (its newest non-draft plan, that version's migration, its status).
    newest: dict[str, tuple[Plan, Migration, str]] = field(default_factory=dict)
    _stamps: dict[tuple[str, int], tuple[str, int | None]] = field(default_factory=dict)

    def refresh(self, store: JourneyStore) -> None:
        versions = store.all()
        newest: dict[str, JourneyVersion] = {}
        for version in versions:
            key = (version.journey_id, version.version)
            stamp = (version.status, version.published_at)
            if key not in self.plans or self._stamps.get(key) != stamp:
                if version.status != "draft":
                    self.plans[key] = compile_plan(
                        version.definition,
                        version.version,
                        self.compile,
                        default_timezone=self.default_timezone,
                    )
                self._stamps[key] = stamp
            self.status[key] = version.status
            if version.status != "draft":
                known = newest.get(version.journey_id)
                if known is None or version.version > known.version:
                    newest[version.journey_id] = version
        entering: dict[str, list[Plan]] = {}
        listening: set[str] = set()
        self.newest = {}
        for version in newest.values():
            plan = self.plans[(version.journey_id, version.version)]
            self.newest[version.journey_id] = (plan, version.migration, version.status)
            self.published_at[version.journey_id] = version.published_at or version.created_at
            if version.status == "published" and plan.entry_event:
                entering.setdefault(plan.entry_event, []).append(plan)
        for key, plan in self.plans.items():
            if self.status.get(key) == "draft":
                continue
            if plan.journey.goal is not None:
                listening.add(plan.journey.goal.event)
            for step in plan.journey.steps:
                if isinstance(step, Wait) and step.event is not None:
                    listening.add(step.event.event)
        for plans in entering.values():
            plans.sort(key=lambda p: p.id)
        self.entering = entering
        self.listening = listening

    def get(self, journey_id: str, version: int) -> Plan | None:
        return self.plans.get((journey_id, version))

    def stopped(self, journey_id: str, version: int) -> bool:
        return self.status.get((journey_id, version)) == "stopped"

    def entry_plan(self, journey_id: str) -> Plan | None:
        """The version customers enter ``journey_id`` at (by API or schedule), if published.

        Only the newest version is entered; when it is paused, nobody enters.
        """
        found = self.newest.get(journey_id)
        return found[0] if found is not None and found[2] == "published" else None

    def scheduled(self) -> list[Plan]:
        """Published journeys that customers enter on a schedule."""
        return [
            plan
            for plan, _, status in self.newest.values()
            if status == "published" and plan.journey.entry.schedule
        ]

    def successor(self, journey_id: str, version: int) -> Plan | None:
        """The newer version customers of ``version`` move to, when it was published with
        ``migration: move``; None when they stay."""
        found = self.newest.get(journey_id)
        if found is None or found[0].version <= version or found[1].mode != "move":
            return None
        return found[0]

    def moved_step(self, journey_id: str, step: str) -> str:
        """Where a customer at ``step`` of an older version lands in the newest one."""
        found = self.newest.get(journey_id)
        return found[1].steps.get(step, step) if found is not None else step
