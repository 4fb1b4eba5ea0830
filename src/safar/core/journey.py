"""The journey core: a pure step function.

``enter`` and ``advance`` take a compiled :class:`~safar.core.plan.Plan`, an instance's state,
one input and ``now`` and return a :class:`Transition`: the new state, the commands to deliver
(sends, webhooks, events) and the visits taken, for analytics. No I/O, no clock, no randomness:
time is ``now``, A/B assignment is a hash of stable ids, and instance ids and idempotency keys
are derived from what entered the customer. Replaying the same inputs gives the same output.

An instance moves through steps until one makes it wait (a timer, an event, a webhook reply) or
it ends: at an exit, after the last step, or when the goal event arrives (converted).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from safar.core.localtime import next_local_time, zone
from safar.core.paths import dig
from safar.core.plan import Plan
from safar.model.journeys import (
    EXIT,
    Branch,
    Emit,
    Exit,
    Send,
    Split,
    UpdateProfile,
    Wait,
    Webhook,
)
from safar.model.messages import Message
from safar.model.profiles import Identifier, Profile
from safar.model.runs import (
    ApiEntry,
    Command,
    EntryRecord,
    EventCommand,
    EventInput,
    Input,
    Instance,
    SendCommand,
    TimerFired,
    Visit,
    WebhookCommand,
    WebhookReply,
)

#: Most steps one input may take an instance through; validation already refuses loops without
#: a wait, this guards definitions built around validation.
MAX_STEPS_PER_INPUT = 1000
#: The journey-context key a webhook reply that is not OK is saved under, per step.
WEBHOOK_ERROR = "{step}_error"
#: ``waiting_for`` while a webhook step waits for its reply.
WEBHOOK_WAIT = "webhook:{step}"


@dataclass
class Transition:
    """What one input did to one instance. ``changed`` is False when it did nothing."""

    instance: Instance
    commands: list[Command] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    changed: bool = True

    @property
    def ended(self) -> bool:
        return self.instance.status != "active"


def instance_id(journey_id: str, profile_id: str, entry_key: str, at: int = 0) -> str:
    """A stable id: the same entry of the same customer always names the same instance.

    It starts with ``at`` (when what entered the customer happened, in hex) so that ids made
    later sort later: stores then append new instances to the end of their indexes instead of
    rewriting a random page for each (a commit of random keys costs a page per row).
    """
    digest = hashlib.sha256(f"{journey_id}\0{profile_id}\0{entry_key}".encode()).hexdigest()
    return f"in_{max(at, 0):012x}{digest[:16]}"


def refusal(plan: Plan, record: EntryRecord | None, active: int, now: int) -> str | None:
    """Why the customer may not enter now (re-entry rules), or None when they may."""
    entry = plan.journey.entry
    if record is not None and record.entries:
        if entry.reentry == "never":
            return "already entered this journey once (reentry: never)"
        last = record.last_entered_at
        if entry.cooldown_ms and last is not None and now < last + entry.cooldown_ms:
            return "re-entry cooldown has not passed"
    limit = entry.max_active if entry.reentry == "always" else 1
    if active >= limit:
        return "already in this journey"
    return None


def entry_activation(
    plan: Plan, profile: Profile, event: EventInput | None, now: int
) -> dict[str, Any]:
    """What the entry condition sees."""
    return _activation(profile, event.payload if event else {}, plan.journey.context, now)


def entry_holds(plan: Plan, profile: Profile, event: EventInput | None, now: int) -> bool:
    """Whether the entry's segment and condition let the customer in: on an event (for a
    segment entry, the segment's ``Segment Entered``), or at a schedule's tick (``event`` None;
    a segment then means its members)."""
    segment = plan.journey.entry.segment
    if segment is not None:
        if event is None:
            if segment not in profile.segments:
                return False
        else:
            properties = event.payload.get("properties")
            if not isinstance(properties, dict) or properties.get("segment_id") != segment:
                return False
    return plan.entry_where(entry_activation(plan, profile, event, now))


def enter(
    plan: Plan,
    profile: Profile,
    identifier: Identifier,
    trigger: EventInput | ApiEntry,
    record: EntryRecord | None,
    now: int,
) -> tuple[Transition, EntryRecord]:
    """Start a new instance for ``profile`` and run it until it waits or ends.

    The caller has checked :func:`refusal` and the entry condition.
    """
    context = dict(plan.journey.context)
    if isinstance(trigger, EventInput):
        key, at = trigger.message_id, trigger.timestamp
        context["event"] = _event_summary(trigger)
    else:
        key, at = trigger.request_id, trigger.at
        context.update(trigger.context)
    goal = plan.journey.goal
    instance = Instance(
        id=instance_id(plan.id, profile.id, key, at),
        journey_id=plan.id,
        version=plan.version,
        profile_id=profile.id,
        identifier=identifier,
        step=plan.first,
        entered_at=now,
        entry_key=key,
        context=context,
        goal_until=now + goal.within_ms if goal is not None and goal.within_ms else None,
    )
    record = EntryRecord(
        journey_id=plan.id,
        profile_id=profile.id,
        entries=(record.entries if record else 0) + 1,
        last_entered_at=now,
    )
    run = _Run(plan, instance, profile, now)
    run.visit(plan.first, "entered")
    event_payload = trigger.payload if isinstance(trigger, EventInput) else None
    run.go(plan.first, event_payload)
    return run.transition(), record


def advance(plan: Plan, instance: Instance, profile: Profile, item: Input, now: int) -> Transition:
    """Apply one input to an active instance of this plan's version."""
    if instance.status != "active":
        return Transition(instance, changed=False)
    run = _Run(plan, _copy(instance), profile, now)
    if isinstance(item, EventInput):
        run.on_event(item)
    elif isinstance(item, TimerFired):
        run.on_timer()
    elif isinstance(item, WebhookReply):
        run.on_reply(item)
    else:
        return Transition(instance, changed=False)
    return run.transition()


def leave(plan: Plan, instance: Instance, profile: Profile, reason: str, now: int) -> Transition:
    """End an active instance from outside its steps: its journey was stopped, or the step it
    was moved to by a new version does not exist."""
    run = _Run(plan, _copy(instance), profile, now)
    run.end("exited", reason, instance.step)
    return run.transition()


def with_traits(profile: Profile, traits: Mapping[str, Any]) -> Profile:
    """``profile`` as it reads once an identify call with ``traits`` is in: how an update step
    writes them (a trait set to None reads None, as the profile processor keeps it)."""
    if not traits:
        return profile
    return msgspec.structs.replace(profile, traits={**profile.traits, **traits})


def split_bucket(seed: str, profile_id: str) -> float:
    """A number in [0, 1) fixed by (seed, profile id): the same customer always lands alike."""
    digest = hashlib.sha256(f"{seed}\0{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class _Run:
    """One input's worth of stepping through one instance."""

    def __init__(self, plan: Plan, instance: Instance, profile: Profile, now: int) -> None:
        self.plan = plan
        self.instance = instance
        self.profile = profile
        self.now = now
        self.commands: list[Command] = []
        self.visits: list[Visit] = []
        self.changed = False

    def transition(self) -> Transition:
        return Transition(self.instance, self.commands, self.visits, self.changed)

    # -- inputs -------------------------------------------------------------------------------

    def on_event(self, event: EventInput) -> None:
        inst, plan = self.instance, self.plan
        goal = plan.journey.goal
        if (
            goal is not None
            and event.name == goal.event
            and (inst.goal_until is None or event.timestamp <= inst.goal_until)
            and plan.goal_where(self.activation(event.payload))
        ):
            self.end("converted", "converted", inst.step)
            return
        step = plan.steps.get(inst.step)
        if not isinstance(step, Wait) or step.event is None or inst.waiting_for != event.name:
            return
        where = plan.wait_where.get(step.id)
        if where is not None and not where(self.activation(event.payload)):
            return
        inst.context["last_event"] = _event_summary(event)
        self.resume(step.id, "event", plan.following[step.id], event.payload)

    def on_timer(self) -> None:
        inst, plan = self.instance, self.plan
        if inst.wake_at is None or inst.wake_at > self.now:
            return
        step = plan.steps.get(inst.step)
        if not isinstance(step, Wait):
            return
        if step.event is not None:
            self.resume(step.id, "timeout", step.timeout_next or EXIT, None)
        else:
            self.resume(step.id, "done", plan.following[step.id], None)

    def on_reply(self, reply: WebhookReply) -> None:
        inst, plan = self.instance, self.plan
        step = plan.steps.get(inst.step)
        if (
            not isinstance(step, Webhook)
            or reply.step_id != step.id
            or inst.waiting_for != WEBHOOK_WAIT.format(step=step.id)
        ):
            return
        if reply.ok:
            for key, path in step.save.items():
                inst.context[key] = dig(reply.response, path)
            outcome = "replied"
        else:
            inst.context[WEBHOOK_ERROR.format(step=step.id)] = reply.error or "failed"
            outcome = "failed"
        self.resume(step.id, outcome, plan.following[step.id], None)

    # -- stepping -----------------------------------------------------------------------------

    def resume(self, step_id: str, outcome: str, target: str, event: dict[str, Any] | None) -> None:
        inst = self.instance
        inst.wake_at = None
        inst.waiting_for = None
        self.visit(step_id, outcome)
        self.go(target, event)

    def go(self, target: str, event: dict[str, Any] | None) -> None:
        """Run steps from ``target`` until one waits or the journey ends."""
        self.changed = True
        plan, inst = self.plan, self.instance
        for _ in range(MAX_STEPS_PER_INPUT):
            if target == EXIT:
                self.end("exited", "completed", inst.step)
                return
            step = plan.steps.get(target)
            if step is None:
                self.end("exited", f"unknown step {target!r}", inst.step)
                return
            inst.step = step.id
            inst.transitions += 1
            following = plan.following[step.id]
            if isinstance(step, Wait):
                self.wait(step)
                return
            if isinstance(step, Branch):
                target = self.branch(step, event)
            elif isinstance(step, Split):
                target = self.split(step)
            elif isinstance(step, Send):
                self.send(step)
                target = following
            elif isinstance(step, UpdateProfile):
                self.update(step)
                target = following
            elif isinstance(step, Webhook):
                if self.webhook(step):
                    return
                target = following
            elif isinstance(step, Emit):
                self.emit(step)
                target = following
            elif isinstance(step, Exit):
                self.end("exited", step.reason, step.id)
                return
        self.end("exited", "step limit reached", inst.step)

    def wait(self, step: Wait) -> None:
        inst, now = self.instance, self.now
        if step.duration_ms is not None:
            inst.wake_at = now + step.duration_ms
        elif step.until is not None:
            inst.wake_at = next_local_time(
                now,
                step.until,
                zone(self.profile.traits.get("timezone"), self.plan.default_timezone),
            )
        elif step.event is not None:
            inst.waiting_for = step.event.event
            inst.wake_at = now + step.timeout_ms if step.timeout_ms is not None else None
        self.visit(step.id, "waiting")

    def branch(self, step: Branch, event: dict[str, Any] | None) -> str:
        activation = self.activation(event)
        for index, (case, holds) in enumerate(
            zip(step.cases, self.plan.cases[step.id], strict=True)
        ):
            if holds(activation):
                self.visit(step.id, f"branch:{index}")
                return case.next
        self.visit(step.id, "branch:else")
        return step.otherwise

    def split(self, step: Split) -> str:
        total = sum(b.weight for b in step.branches)
        point = split_bucket(step.seed, self.instance.profile_id) * total
        chosen = step.branches[-1]
        for candidate in step.branches:
            if point < candidate.weight:
                chosen = candidate
                break
            point -= candidate.weight
        splits = self.instance.context.get("splits")
        self.instance.context["splits"] = {
            **(splits if isinstance(splits, dict) else {}),
            step.id: chosen.name,
        }
        self.visit(step.id, f"split:{chosen.name}")
        return chosen.next

    def send(self, step: Send) -> None:
        inst, journey = self.instance, self.plan.journey
        policy = journey.policy
        context = {k: v for k, v in inst.context.items() if k != "event"}
        message = Message(
            key=self.key(step.id),
            journey_id=journey.id,
            version=inst.version,
            step_id=step.id,
            instance_id=inst.id,
            profile_id=inst.profile_id,
            identifier=inst.identifier,
            channel=step.channel,
            template=step.template,
            category=step.category or policy.category,
            priority=policy.priority,
            quiet_hours=policy.quiet_hours,
            created_at=self.now,
            context={"event": inst.context.get("event", {}), "journey": context},
        )
        self.commands.append(SendCommand(message=message))
        self.visit(step.id, "queued")

    def update(self, step: UpdateProfile) -> None:
        traits: dict[str, Any] = dict(step.set)
        current = self.profile.traits
        for key, delta in step.increment.items():
            value = current.get(key)
            base = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
            total = base + delta
            traits[key] = int(total) if float(total).is_integer() else total
        for key in step.unset:
            traits[key] = None
        self.commands.append(
            EventCommand(
                key=self.key(step.id),
                type="identify",
                identifier=self.instance.identifier,
                timestamp=self.now,
                traits=traits,
            )
        )
        # The steps after this one read what it wrote (an increment then counts from it).
        self.profile = with_traits(self.profile, traits)
        self.visit(step.id, "updated")

    def webhook(self, step: Webhook) -> bool:
        """Queue the call; True when the instance waits for the reply."""
        inst = self.instance
        reply = bool(step.save)
        self.commands.append(
            WebhookCommand(
                key=self.key(step.id),
                instance_id=inst.id,
                step_id=step.id,
                identifier=inst.identifier,
                url=step.url,
                method=step.method,
                body=step.body,
                headers=dict(step.headers),
                timeout_ms=step.timeout_ms,
                reply=reply,
                context=dict(inst.context),
            )
        )
        self.visit(step.id, "called")
        if reply:
            inst.waiting_for = WEBHOOK_WAIT.format(step=step.id)
        return reply

    def emit(self, step: Emit) -> None:
        properties = dict(step.properties)
        properties.setdefault("journey_id", self.plan.id)
        self.commands.append(
            EventCommand(
                key=self.key(step.id),
                type="track",
                identifier=self.instance.identifier,
                timestamp=self.now,
                name=step.event,
                properties=properties,
            )
        )
        self.visit(step.id, "emitted")

    def end(self, status: str, reason: str, step_id: str) -> None:
        inst = self.instance
        inst.status = "converted" if status == "converted" else "exited"
        inst.ended_at = self.now
        inst.exit_reason = reason
        inst.wake_at = None
        inst.waiting_for = None
        self.changed = True
        self.visit(step_id, "converted" if status == "converted" else f"exited:{reason}")

    # -- helpers ------------------------------------------------------------------------------

    def key(self, step_id: str) -> str:
        """The idempotency key of this step's command: journey version, step, instance (which
        names the profile and the entry) and the transition count (a loop may revisit a step)."""
        inst = self.instance
        return f"{inst.journey_id}.v{inst.version}.{step_id}.{inst.id}.{inst.transitions}"

    def visit(self, step_id: str, outcome: str) -> None:
        inst = self.instance
        self.visits.append(
            Visit(
                instance_id=inst.id,
                journey_id=inst.journey_id,
                version=inst.version,
                step=step_id,
                at=self.now,
                outcome=outcome,
            )
        )

    def activation(self, event: dict[str, Any] | None) -> dict[str, Any]:
        stored = self.instance.context.get("event")
        payload = event if event is not None else (stored if isinstance(stored, dict) else {})
        return _activation(self.profile, payload, self.instance.context, self.now)


def _activation(
    profile: Profile, event: Mapping[str, Any], journey: Mapping[str, Any], now: int
) -> dict[str, Any]:
    return {
        "event": event,
        "profile": {
            "id": profile.id,
            "traits": profile.traits,
            "identifiers": profile.identifiers,
            "segments": profile.segments,
        },
        "journey": journey,
        "now": datetime.fromtimestamp(now / 1000, tz=UTC),
    }


def _event_summary(event: EventInput) -> dict[str, Any]:
    """What an instance keeps of an event: enough for templates and conditions, not the body."""
    payload = event.payload
    summary: dict[str, Any] = {"name": event.name, "type": event.type}
    summary["timestamp"] = payload.get("timestamp")
    if "properties" in payload:
        summary["properties"] = payload["properties"]
    if "traits" in payload:
        summary["traits"] = payload["traits"]
    return summary


def _copy(instance: Instance) -> Instance:
    """A copy the run may change without touching the caller's instance. The run replaces
    context values rather than changing them in place, so a shallow copy of it suffices."""
    return msgspec.structs.replace(instance, context=dict(instance.context))
