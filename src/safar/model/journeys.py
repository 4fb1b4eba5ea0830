"""Journey definitions: what a journey is, as parsed from YAML or built in Python.

A journey is a list of steps. Each step names the step that follows it in ``next`` (``None``
means the step listed after it, and after the last step, the exit). ``EXIT`` as a target ends the
journey. Durations are milliseconds; conditions are CEL source text (see ``docs/conditions.md``),
compiled once per published version by the runtime.

``line`` fields carry the YAML line a definition came from (0 when built in Python), so that
errors found after parsing can still name the place in the file.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

#: The ``next`` target that ends a journey.
EXIT: Final = "exit"

#: Journey-map stages, in the order a customer lives them.
STAGES: Final = ("awareness", "consideration", "purchase", "retention", "advocacy")

Reentry = Literal["never", "after_exit", "always"]
Status = Literal["draft", "published", "paused", "stopped"]
QuietHoursAction = Literal["delay", "skip", "ignore"]

#: Categories the policy gate knows. ``transactional`` bypasses marketing rules.
TRANSACTIONAL: Final = "transactional"


class _Node(msgspec.Struct, kw_only=True, frozen=True):
    line: int = 0


class EventMatch(_Node, frozen=True):
    """An event by name, optionally with a CEL condition over ``event``, ``profile``, ..."""

    event: str
    where: str | None = None


class Entry(_Node, frozen=True):
    """How customers enter. At least one of ``event``, ``segment``, ``schedule`` or ``api`` is
    set.

    - ``event`` / ``where``: the event that enters a customer, and its condition.
    - ``segment``: customers enter when they enter this segment (its ``Segment Entered``
      event); with ``schedule``, the segment's members enter at each tick instead.
    - ``schedule``: a cron expression (5 fields, UTC); at each tick every profile for which
      ``where`` holds enters.
    - ``api``: customers may be entered with ``POST /v1/journeys/{id}/entries``.
    - ``reentry``: ``never`` (once per customer), ``after_exit`` (again once the previous
      instance ended), ``always`` (even while one is active, up to ``max_active``), in every case
      no sooner than ``cooldown_ms`` after the previous entry.
    """

    event: str | None = None
    segment: str | None = None
    where: str | None = None
    schedule: str | None = None
    api: bool = False
    reentry: Reentry = "never"
    cooldown_ms: int = 0
    max_active: int = 1


class Goal(_Node, frozen=True):
    """The conversion: this event (and condition) within ``within_ms`` of entry ends the
    journey as converted, from whichever step the customer is in."""

    event: str
    where: str | None = None
    within_ms: int | None = None


class JourneyPolicy(_Node, frozen=True):
    """How this journey's messages meet the policy gate."""

    category: str = "marketing"
    #: Higher wins when several journeys want the same person within the priority window.
    priority: int = 50
    quiet_hours: QuietHoursAction = "delay"


class Step(_Node, kw_only=True, frozen=True, tag_field="kind"):
    """Fields every step has. ``stage`` and ``touchpoint`` are journey-map labels for analytics."""

    id: str
    next: str | None = None
    stage: str | None = None
    touchpoint: str | None = None


class Wait(Step, frozen=True, tag="wait"):
    """Wait for a duration, until a local time of day, or for an event.

    Exactly one of ``duration_ms``, ``until`` or ``event`` is set.

    - ``until``: ``HH:MM`` in the profile's timezone (trait ``timezone``, else the policy's
      default); the next such time strictly after now.
    - ``event``: continue at ``next`` when a matching event arrives; after ``timeout_ms`` without
      one, continue at ``timeout_next`` (the exit when not set).
    """

    duration_ms: int | None = None
    until: str | None = None
    event: EventMatch | None = None
    timeout_ms: int | None = None
    timeout_next: str | None = None


class Case(_Node, frozen=True):
    condition: str
    next: str


class Branch(Step, frozen=True, tag="branch"):
    """The first case whose condition holds picks the next step; else ``otherwise``."""

    cases: tuple[Case, ...]
    otherwise: str = EXIT


class SplitBranch(_Node, frozen=True):
    name: str
    weight: float
    next: str


class Split(Step, frozen=True, tag="split"):
    """Weighted A/B/n assignment by a hash of (seed, profile id): stable, never random.

    A branch whose ``next`` is the exit is a control group."""

    seed: str
    branches: tuple[SplitBranch, ...]


class Send(Step, frozen=True, tag="send"):
    """Hand a message to the policy gate, then to ``channel``, rendered from ``template``.

    ``category`` overrides the journey's policy category for this message.
    """

    channel: str
    template: str
    category: str | None = None


class UpdateProfile(Step, frozen=True, tag="update"):
    """Set, increment or unset traits; done by appending an ``identify`` event to the log."""

    set: dict[str, Any] = msgspec.field(default_factory=dict)
    increment: dict[str, float] = msgspec.field(default_factory=dict)
    unset: tuple[str, ...] = ()


class Webhook(Step, frozen=True, tag="webhook"):
    """Call an external system. String values in ``body`` and ``headers`` are Liquid templates.

    ``save`` maps journey-context keys to dotted paths in the JSON response; when it is set the
    journey waits for the response (or its final failure) before going on.
    """

    url: str
    method: str = "POST"
    body: Any = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    save: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_ms: int = 10_000


class Emit(Step, frozen=True, tag="emit"):
    """Append a ``track`` event for this customer to the event log, so that journeys chain."""

    event: str
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class Exit(Step, frozen=True, tag="exit"):
    """End the journey here."""

    reason: str = "exit step"


AnyStep = Wait | Branch | Split | Send | UpdateProfile | Webhook | Emit | Exit


class Journey(msgspec.Struct, kw_only=True, frozen=True):
    """One version of a journey definition."""

    id: str
    name: str
    steps: tuple[AnyStep, ...]
    entry: Entry
    goal: Goal | None = None
    policy: JourneyPolicy = JourneyPolicy()
    stage: str | None = None
    description: str | None = None
    #: Journey-context values every instance starts with.
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Where the definition came from (a file path), for error messages.
    origin: str | None = None

    def step(self, step_id: str) -> AnyStep:
        """The step named ``step_id``. Raises KeyError for an unknown id."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def after(self, step: AnyStep) -> str:
        """The step that follows ``step`` by default: ``next``, else the one listed after it."""
        if step.next is not None:
            return step.next
        index = self.steps.index(step)
        return self.steps[index + 1].id if index + 1 < len(self.steps) else EXIT


class Migration(msgspec.Struct, kw_only=True, frozen=True):
    """What publishing a new version does to customers inside an older one.

    ``stay``: they finish on the version they entered. ``move``: each moves to the step
    ``steps`` maps its current step to (same id when unmapped, the exit when the id is gone).
    """

    mode: Literal["stay", "move"] = "stay"
    steps: dict[str, str] = msgspec.field(default_factory=dict)


class JourneyVersion(msgspec.Struct, kw_only=True):
    """A stored version with its lifecycle status."""

    journey_id: str
    version: int
    status: Status
    definition: Journey
    created_at: int
    published_at: int | None = None
    migration: Migration = Migration()
