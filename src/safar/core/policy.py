"""The policy gate: whether a message goes now, later, or not at all — and why.

Every message from every journey passes :func:`decide` before delivery. It is pure: what it
knows about the customer comes in as :class:`Recipient` and :class:`Facts`, time as ``now``
(ms). The rules run in a fixed order and the first that stops a message names the decision:

1. ``no_address`` — no address on the message's channel;
2. ``consent`` — the customer unsubscribed (transactional: only from that exact category);
3. ``suppression:<id>`` — the first suppression rule, in policy order, that holds;
4. ``priority`` — another journey reached them in the priority window with at least this
   priority;
5. ``frequency_cap:<id>`` — the first cap, in policy order, already full;
6. ``quiet_hours`` — local quiet hours: delay to their end, or suppress;
7. go.

Transactional categories skip 3-6. ``docs/policy-gate.md`` describes each rule for users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import msgspec

from safar.core.gate_rules import (
    consent,
    frequency_cap,
    priority,
    quiet_hours,
    suppression,
)
from safar.model.messages import Consent, Decision, Message, Outcome, SentRecord
from safar.model.policy import Policy

Kind = Literal["go", "delay", "suppress"]

_OUTCOMES: Final[dict[str, Outcome]] = {
    "go": "sent",
    "delay": "delayed",
    "suppress": "suppressed",
}


class Recipient(msgspec.Struct, kw_only=True, frozen=True):
    """Who a message is for: the profile's traits and the address the runtime found for the
    message's channel (``None`` when the profile has none)."""

    profile_id: str
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    address: str | None = None
    #: The segments the customer is in (for suppression by segment).
    segments: tuple[str, ...] = ()


class Facts(msgspec.Struct, kw_only=True, frozen=True):
    """What the gate needs to know about one profile's recent past.

    - ``consents``: the profile's consent choices, any order;
    - ``sends``: messages handed to a channel recently (at least the longest cap or priority
      window), any order;
    - ``events``: ``(event name, timestamp ms)`` of the events suppression rules name;
    - ``suppressed_by_condition``: for each suppression rule with a CEL ``where``, whether it
      held. The runtime evaluates CEL; a rule missing here does not hold.
    """

    consents: list[Consent] = msgspec.field(default_factory=list)
    sends: list[SentRecord] = msgspec.field(default_factory=list)
    events: list[tuple[str, int]] = msgspec.field(default_factory=list)
    suppressed_by_condition: Mapping[str, bool] = msgspec.field(default_factory=dict)


class Verdict(msgspec.Struct, kw_only=True, frozen=True):
    """The gate's answer: ``go``, ``delay`` until ``until`` (ms), or ``suppress``.

    ``rule`` is what :class:`~safar.model.messages.Decision` records (empty for ``go``);
    ``detail`` is a sentence for people: which rule, which fact, when.
    """

    kind: Kind
    rule: str = ""
    detail: str = ""
    until: int | None = None

    def decision(self, message: Message, at: int) -> Decision:
        """The :class:`Decision` recording this verdict for ``message`` at ``at``.

        ``go`` maps to ``sent``: record it once the channel has accepted the message.
        """
        return message.decision(at, _OUTCOMES[self.kind], self.rule, self.detail, self.until)


GO: Final = Verdict(kind="go")
_NO_FACTS: Final = Facts()


def display_name(recipient: Recipient) -> str:
    """How explanations name a customer: first name, else name, else the profile id."""
    for key in ("first_name", "firstName", "name"):
        value = recipient.traits.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return f"profile {recipient.profile_id}"


def decide(
    message: Message, recipient: Recipient, facts: Facts, policy: Policy, now: int
) -> Verdict:
    """Whether ``message`` goes to ``recipient`` at ``now``, checking the rules in the order the
    module docstring gives; the first rule that stops it decides.

    Raises ``ValueError`` only for a malformed policy (a quiet-hours time that is not ``HH:MM``,
    an unknown default timezone), which policy validation rejects first.
    """
    who = display_name(recipient)
    if not recipient.address:
        return Verdict(
            kind="suppress",
            rule="no_address",
            detail=f"{who} has no {message.channel} address",
        )
    transactional = message.category in policy.transactional_categories
    found = consent(message, who, facts.consents, transactional=transactional)
    if found is None and not transactional:
        found = (
            suppression(
                message,
                who,
                facts.events,
                facts.suppressed_by_condition,
                policy,
                now,
                recipient.segments,
            )
            or priority(message, who, facts.sends, policy.priority_window_ms, now)
            or frequency_cap(message, who, facts.sends, policy.frequency_caps, now)
            or quiet_hours(message, who, recipient.traits, policy, now)
        )
    if found is None:
        return GO
    kind, rule, detail, until = found
    return Verdict(kind=kind, rule=rule, detail=detail, until=until)


def batch_order(message: Message) -> tuple[str, int, int, str, str]:
    """The order :func:`decide_batch` considers messages in: by profile, then highest priority,
    oldest, journey id, key."""
    return (
        message.profile_id,
        -message.priority,
        message.created_at,
        message.journey_id,
        message.key,
    )


def decide_batch(
    messages: Sequence[Message],
    recipients: Sequence[Recipient],
    facts_by_profile: Mapping[str, Facts],
    policy: Policy,
    now: int,
) -> list[Verdict]:
    """Decide several messages at ``now``; the verdicts line up with ``messages``.

    ``recipients[i]`` is the recipient of ``messages[i]``; a profile missing from
    ``facts_by_profile`` has no facts. Each profile's messages are decided in
    :func:`batch_order`, and each that goes counts, as sent at ``now``, against the caps and the
    priority window of those after it — so the result does not depend on the input order, and
    the highest priority goes first.
    """
    if len(recipients) != len(messages):
        raise ValueError(
            f"decide_batch needs one recipient per message; got {len(messages)} messages "
            f"and {len(recipients)} recipients"
        )
    verdicts: list[Verdict] = [GO] * len(messages)
    sends: dict[str, list[SentRecord]] = {}
    for i in sorted(range(len(messages)), key=lambda i: batch_order(messages[i])):
        message = messages[i]
        known = facts_by_profile.get(message.profile_id, _NO_FACTS)
        went = sends.get(message.profile_id)
        facts = msgspec.structs.replace(known, sends=[*known.sends, *went]) if went else known
        verdict = decide(message, recipients[i], facts, policy, now)
        verdicts[i] = verdict
        if verdict.kind == "go":
            sends.setdefault(message.profile_id, []).append(message.sent_record(now))
    return verdicts
