"""The Liquid environments templates are parsed and rendered in, and the checks run on them.

Templates are sandboxed: there is no loader that reads files and the ``include`` and ``render``
tags are refused when a template is parsed; loops, output size, local variables and context
depth are bounded, so a template cannot read the disk or run away with the worker. Context
values are plain JSON data (dicts, lists, strings, numbers), so no Python object is reachable.

Rendering is lenient by default: an undefined variable renders as nothing (the ``default``
filter supplies a fallback), because a missing trait should not block a message the author
wrote ``{{ profile.traits.first_name | default: "there" }}`` for. ``strict=True`` renders with
undefined variables as errors (unless given a ``default``): previews and tests use it. Unknown
variable roots and unknown filters are caught when templates are validated.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from liquid import BoundTemplate, Environment, StrictDefaultUndefined, Tag, TokenStream, Undefined
from liquid.ast import Node
from liquid.exceptions import LiquidError, LiquidSyntaxError

from safar.templates.filters import FILTERS

#: Names a template may read: ``profile`` (id, traits, identifiers), ``event`` (the event that
#: led here, Segment-shaped), ``journey`` (the instance's context), ``locale``, ``direction``.
ROOTS: Final = frozenset({"profile", "event", "journey", "locale", "direction"})


class _Disabled(Tag):
    """A tag that is refused at parse time: templates cannot read other templates or files."""

    block = False

    def parse(self, stream: TokenStream) -> Node:
        raise LiquidSyntaxError(
            f"the {self.name} tag is not available: templates are sandboxed and cannot read "
            "other files",
            token=stream.current,
        )


class _NoInclude(_Disabled):
    name = "include"


class _NoRender(_Disabled):
    name = "render"


class SandboxEnvironment(Environment):
    """A Liquid environment with Safar's filters, no file access and bounded resources."""

    loop_iteration_limit = 10_000
    output_stream_limit = 1_000_000
    local_namespace_limit = 1_000_000
    context_depth_limit = 30

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        self.add_tag(_NoInclude)
        self.add_tag(_NoRender)
        for name, function in FILTERS.items():
            self.add_filter(name, function)


# (html, strict) → environment. Values inserted into HTML are escaped; text is left alone.
_ENVIRONMENTS: Final = {
    (html, strict): SandboxEnvironment(
        autoescape=html, undefined=StrictDefaultUndefined if strict else Undefined
    )
    for html in (False, True)
    for strict in (False, True)
}


@lru_cache(maxsize=8192)
def compile_source(source: str, *, html: bool = False, strict: bool = False) -> BoundTemplate:
    """Parse ``source`` (cached); raises :class:`liquid.exceptions.LiquidError` when invalid."""
    return _ENVIRONMENTS[html, strict].from_string(source)


def liquid_problems(source: str, *, html: bool = False) -> list[tuple[int, str]]:
    """What is wrong with one Liquid string, as (1-based line within ``source``, message).

    A syntax error, a variable whose root is not one of :data:`ROOTS`, an unknown filter.
    """
    try:
        template = compile_source(source, html=html)
    except LiquidError as exc:
        return [(error_line(exc), f"Liquid syntax error: {exc.message}")]
    analysis = template.analyze(include_partials=False)
    problems: list[tuple[int, str]] = []
    known = ", ".join(sorted(ROOTS))
    for root, uses in analysis.globals.items():
        if root not in ROOTS:
            line, _ = uses[0].span.line_col(source)
            problems.append((line, f"unknown variable {root!r} (templates see {known})"))
    filters = _ENVIRONMENTS[html, False].filters
    for name, spans in analysis.filters.items():
        if name not in filters:
            line, _ = spans[0].line_col(source)
            problems.append((line, f"unknown filter {name!r}"))
    return sorted(problems)


def error_line(exc: LiquidError) -> int:
    """The 1-based line of ``exc`` in its template source (1 when Liquid does not say)."""
    context = exc.context()
    return context[0] if context else 1
