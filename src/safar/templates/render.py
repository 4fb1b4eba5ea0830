"""Render a template for one customer: choose the locale, render each field in the sandbox, and
shape the result for its channel (HTML marked with its direction, a text part derived from HTML
when the template has none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from liquid.exceptions import LiquidError

from safar.model.messages import RenderedMessage
from safar.templates.errors import TemplateError
from safar.templates.html import html_to_text, mark_direction
from safar.templates.locales import Direction, choose_locale, direction, normalize_locale
from safar.templates.model import HTML_FIELDS, Template
from safar.templates.sandbox import compile_source, error_line


class RenderedParts(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered template: the fields its channel uses, in the chosen locale."""

    template_id: str
    channel: str
    locale: str
    direction: Direction
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def message(
        self,
        *,
        key: str,
        to: str,
        profile_id: str,
        channel: str | None = None,
        unsubscribe_url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RenderedMessage:
        """These parts addressed to ``to``, ready for a channel (``channel`` defaults to the
        template's)."""
        return RenderedMessage(
            key=key,
            channel=channel or self.channel,
            to=to,
            profile_id=profile_id,
            locale=self.locale,
            direction=self.direction,
            subject=self.subject,
            html=self.html,
            text=self.text,
            data=self.data,
            unsubscribe_url=unsubscribe_url,
            headers=dict(headers or {}),
        )


def render(
    template: Template,
    *,
    profile: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    journey: Mapping[str, Any] | None = None,
    locale: str | None = None,
    strict: bool = False,
) -> RenderedParts:
    """Render ``template`` for ``profile`` (keys ``id``, ``traits``, ``identifiers``).

    The locale is ``locale`` when given, else the profile's ``locale`` or ``language`` trait
    (``fa-IR`` → ``fa``), else the template's default; a locale the template lacks falls back to
    the default. ``strict`` makes undefined variables errors. Raises :class:`TemplateError`
    naming the template, locale and field when a field fails to render.
    """
    traits = profile.get("traits")
    chosen = choose_locale(
        template.locales,
        template.default_locale,
        explicit=locale,
        traits=traits if isinstance(traits, Mapping) else None,
    )
    variant = template.locales[chosen]
    context = _context(profile, event, journey, chosen)
    renderer = _Renderer(template.id, chosen, context, strict)
    fields = {
        name: renderer.field(name, source, html=name in HTML_FIELDS)
        for name, source in variant.fields.items()
    }
    data = renderer.value("data", variant.data) if variant.data is not None else {}
    html = fields.get("html")
    text = fields.get("text")
    if html is not None and text is None:
        text = html_to_text(html)
    subject = fields.get("subject")
    return RenderedParts(
        template_id=template.id,
        channel=template.channel,
        locale=chosen,
        direction=direction(chosen),
        # A subject is one header line: newlines in it would be a header injection.
        subject=" ".join(subject.split()) if subject is not None else None,
        html=mark_direction(html, chosen, direction(chosen)) if html is not None else None,
        text=text.strip() if text is not None else None,
        data=data if isinstance(data, dict) else {},
    )


def render_value(
    value: Any,
    *,
    profile: Mapping[str, Any],
    event: Mapping[str, Any] | None = None,
    journey: Mapping[str, Any] | None = None,
    locale: str | None = None,
    name: str = "value",
) -> Any:
    """``value`` with every string in it (at any depth) rendered as Liquid text, e.g. a journey
    webhook step's body and headers. Raises :class:`TemplateError` naming ``name`` and the path."""
    chosen = normalize_locale(locale) or "en"
    renderer = _Renderer(name, chosen, _context(profile, event, journey, chosen), False)
    return renderer.value("", value)


def _context(
    profile: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    journey: Mapping[str, Any] | None,
    locale: str,
) -> dict[str, object]:
    return {
        "profile": profile,
        "event": event if event is not None else {},
        "journey": journey if journey is not None else {},
        "locale": locale,
        "direction": direction(locale),
    }


class _Renderer:
    def __init__(self, template_id: str, locale: str, context: dict[str, object], strict: bool):
        self.template_id = template_id
        self.locale = locale
        self.context = context
        self.strict = strict

    def field(self, name: str, source: str, *, html: bool) -> str:
        try:
            return compile_source(source, html=html, strict=self.strict).render(**self.context)
        except LiquidError as exc:
            line = error_line(exc)
            raise TemplateError(
                f"{exc.message} (line {line} of the field)",
                template_id=self.template_id,
                locale=self.locale,
                field=name,
            ) from exc

    def value(self, path: str, value: Any) -> Any:
        if isinstance(value, str):
            return self.field(path or "value", value, html=False)
        if isinstance(value, Mapping):
            return {
                key: self.value(f"{path}.{key}" if path else str(key), item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(f"{path}[{index}]", item) for index, item in enumerate(value)]
        return value
