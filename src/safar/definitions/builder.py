"""Journeys written in Python, giving the same :class:`~safar.model.journeys.Journey` as YAML::

    journey = (
        JourneyBuilder("abandoned-cart", "Abandoned cart recovery", stage="purchase")
        .entry(event="Product Added", where="event.properties.price >= 10", reentry="after_exit")
        .goal("Order Completed", within="3d")
        .wait("wait_for_order", for_="1h")
        .split("split", seed="cart-2026-11", branches=[("email", 45, "send_email"), ...])
        .send("send_email", channel="email", template="cart_reminder", next="wait_day")
        .build()
    )

Steps are added in order; each method takes the step's own fields plus ``next``, ``stage`` and
``touchpoint`` where the YAML allows them. Durations are text (``"3d"``) or milliseconds.
:meth:`JourneyBuilder.build` runs :func:`~safar.definitions.validate.validate_journey` and raises
:class:`~safar.definitions.problems.DefinitionError` with every problem, fields named as in YAML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

from safar.definitions.durations import parse_duration
from safar.definitions.problems import DefinitionError, Problem
from safar.definitions.validate import validate_journey
from safar.model.journeys import (
    EXIT,
    AnyStep,
    Branch,
    Case,
    Emit,
    Entry,
    EventMatch,
    Exit,
    Goal,
    Journey,
    JourneyPolicy,
    QuietHoursAction,
    Reentry,
    Send,
    Split,
    SplitBranch,
    UpdateProfile,
    Wait,
    Webhook,
)

Duration = str | int


class JourneyBuilder:
    """Builds a :class:`Journey` step by step; every method returns the builder."""

    def __init__(
        self,
        id: str,
        name: str,
        *,
        description: str | None = None,
        stage: str | None = None,
        context: Mapping[str, Any] | None = None,
        origin: str | None = None,
    ) -> None:
        self._journey: dict[str, Any] = {
            "id": id,
            "name": name,
            "description": description,
            "stage": stage,
            "context": dict(context or {}),
            "origin": origin,
        }
        self._entry = Entry()
        self._goal: Goal | None = None
        self._policy = JourneyPolicy()
        self._steps: list[AnyStep] = []
        self._problems: list[Problem] = []

    def _ms(self, field: str, value: Duration) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            origin = self._journey["origin"] or "<journey>"
            self._problems.append(Problem(origin, 0, field, str(exc)))
            return 0

    def _step_field(self, kind: str) -> str:
        return f"steps[{len(self._steps)}].{kind}"

    def entry(
        self,
        *,
        event: str | None = None,
        where: str | None = None,
        schedule: str | None = None,
        api: bool = False,
        reentry: Reentry = "never",
        cooldown: Duration = 0,
        max_active: int = 1,
    ) -> Self:
        """How customers enter (``entry:``)."""
        self._entry = Entry(
            event=event,
            where=where,
            schedule=schedule,
            api=api,
            reentry=reentry,
            cooldown_ms=self._ms("entry.cooldown", cooldown),
            max_active=max_active,
        )
        return self

    def goal(self, event: str, *, where: str | None = None, within: Duration | None = None) -> Self:
        """The conversion event (``goal:``)."""
        within_ms = None if within is None else self._ms("goal.within", within)
        self._goal = Goal(event=event, where=where, within_ms=within_ms)
        return self

    def policy(
        self,
        *,
        category: str = "marketing",
        priority: int = 50,
        quiet_hours: QuietHoursAction = "delay",
    ) -> Self:
        """How this journey's messages meet the policy gate (``policy:``)."""
        self._policy = JourneyPolicy(category=category, priority=priority, quiet_hours=quiet_hours)
        return self

    def wait(
        self,
        id: str,
        *,
        for_: Duration | None = None,
        until: str | None = None,
        event: str | None = None,
        where: str | None = None,
        timeout: Duration | None = None,
        timeout_next: str | None = None,
        next: str | None = None,
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Wait for a duration (``for_``), until a time of day, or for an event (with a timeout)."""
        field = self._step_field("wait")
        step = Wait(
            id=id,
            next=next,
            stage=stage,
            touchpoint=touchpoint,
            duration_ms=None if for_ is None else self._ms(f"{field}.for", for_),
            until=until,
            event=None if event is None else EventMatch(event=event, where=where),
            timeout_ms=None if timeout is None else self._ms(f"{field}.timeout", timeout),
            timeout_next=timeout_next,
        )
        return self._add(step)

    def branch(
        self,
        id: str,
        cases: Iterable[tuple[str, str]],
        *,
        otherwise: str = EXIT,
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Take the first ``(condition, next)`` case that holds, else ``otherwise``."""
        return self._add(
            Branch(
                id=id,
                stage=stage,
                touchpoint=touchpoint,
                cases=tuple(Case(condition=condition, next=next) for condition, next in cases),
                otherwise=otherwise,
            )
        )

    def split(
        self,
        id: str,
        *,
        seed: str,
        branches: Iterable[tuple[str, float, str]],
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Weighted A/B/n split over ``(name, weight, next)`` branches."""
        return self._add(
            Split(
                id=id,
                stage=stage,
                touchpoint=touchpoint,
                seed=seed,
                branches=tuple(
                    SplitBranch(name=name, weight=float(weight), next=next)
                    for name, weight, next in branches
                ),
            )
        )

    def send(
        self,
        id: str,
        *,
        channel: str,
        template: str,
        category: str | None = None,
        next: str | None = None,
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Send ``template`` over ``channel``, through the policy gate."""
        return self._add(
            Send(
                id=id,
                next=next,
                stage=stage,
                touchpoint=touchpoint,
                channel=channel,
                template=template,
                category=category,
            )
        )

    def update(
        self,
        id: str,
        *,
        set: Mapping[str, Any] | None = None,
        increment: Mapping[str, float] | None = None,
        unset: Iterable[str] = (),
        next: str | None = None,
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Set, increment or unset profile traits."""
        return self._add(
            UpdateProfile(
                id=id,
                next=next,
                stage=stage,
                touchpoint=touchpoint,
                set=dict(set or {}),
                increment=dict(increment or {}),
                unset=tuple(unset),
            )
        )

    def webhook(
        self,
        id: str,
        *,
        url: str,
        method: str = "POST",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        save: Mapping[str, str] | None = None,
        timeout: Duration = 10_000,
        next: str | None = None,
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Call ``url``; ``save`` maps journey-context keys to dotted paths in the response."""
        return self._add(
            Webhook(
                id=id,
                next=next,
                stage=stage,
                touchpoint=touchpoint,
                url=url,
                method=method,
                body=body,
                headers=dict(headers or {}),
                save=dict(save or {}),
                timeout_ms=self._ms(f"{self._step_field('webhook')}.timeout", timeout),
            )
        )

    def emit(
        self,
        id: str,
        event: str,
        *,
        properties: Mapping[str, Any] | None = None,
        next: str | None = None,
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """Append a ``track`` event named ``event`` for this customer."""
        return self._add(
            Emit(
                id=id,
                next=next,
                stage=stage,
                touchpoint=touchpoint,
                event=event,
                properties=dict(properties or {}),
            )
        )

    def exit(
        self,
        id: str,
        *,
        reason: str = "exit step",
        stage: str | None = None,
        touchpoint: str | None = None,
    ) -> Self:
        """End the journey here."""
        return self._add(Exit(id=id, stage=stage, touchpoint=touchpoint, reason=reason))

    def _add(self, step: AnyStep) -> Self:
        self._steps.append(step)
        return self

    def build(self) -> Journey:
        """The journey; :class:`DefinitionError` when :func:`validate_journey` finds problems
        (templates and conditions are not checked here: pass the journey to
        :func:`validate_journey` with them)."""
        journey = Journey(
            **self._journey,
            entry=self._entry,
            goal=self._goal,
            policy=self._policy,
            steps=tuple(self._steps),
        )
        problems = self._problems + validate_journey(journey)
        if problems:
            raise DefinitionError(problems)
        return journey
