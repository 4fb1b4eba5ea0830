"""Rendering messages for the dispatcher: a template catalog, a customer, an address."""

from __future__ import annotations

from typing import Any

from safar.errors import DeliveryError
from safar.model.messages import Message, RenderedMessage
from safar.model.profiles import Profile
from safar.templates import TemplateCatalog, render_value


def address_for(channel: str, profile: Profile | None) -> str | None:
    """Where a channel reaches the customer: their email or phone (identifier first, then the
    trait of that name), else, for in-app, console, webhook and null, the profile itself."""
    if profile is None:
        return None
    kind = {"email": "email", "sms": "phone"}.get(channel)
    if kind is None:
        return profile.id
    values = profile.identifiers.get(kind)
    if values:
        return values[0]
    trait = profile.traits.get(kind)
    # Blank is no address, as for the identifier (normalised away when blank).
    address = trait.strip() if isinstance(trait, str) else ""
    return address or None


def profile_view(profile: Profile) -> dict[str, Any]:
    """What templates and conditions see of a profile."""
    return {"id": profile.id, "traits": profile.traits, "identifiers": profile.identifiers}


class TemplateRenderer:
    """Renders a message from its template in ``catalog`` (see :mod:`safar.templates`)."""

    def __init__(self, catalog: TemplateCatalog) -> None:
        self.catalog = catalog

    def __call__(self, message: Message, profile: Profile) -> RenderedMessage:
        to = address_for(message.channel, profile)
        if to is None:
            raise DeliveryError(
                f"the customer has no address for {message.channel}", retryable=False
            )
        parts = self.catalog.render(
            message.template,
            profile=profile_view(profile),
            event=message.context.get("event"),
            journey=message.context.get("journey"),
        )
        return parts.message(key=message.key, to=to, profile_id=profile.id, channel=message.channel)


def render_webhook(value: Any, profile: Profile | None, context: dict[str, Any], name: str) -> Any:
    """A webhook step's body or headers with their Liquid strings rendered."""
    view = profile_view(profile) if profile is not None else {}
    journey = {k: v for k, v in context.items() if k != "event"}
    return render_value(value, profile=view, event=context.get("event"), journey=journey, name=name)
