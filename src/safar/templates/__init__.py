"""Message templates: one YAML file per template, one variant per locale, fields in Liquid.

A template file ``<dir>/<id>.yaml`` names its ``channel`` (email, sms, in_app, webhook,
console), its ``default_locale`` and, under ``locales``, a variant per language with the fields
its channel uses. :class:`TemplateCatalog` loads a directory and reports problems by file, line
and field; :func:`render` renders one template for one customer in their language, right to
left for Persian and Arabic. Templates are sandboxed (see :mod:`safar.templates.sandbox`). The
format is documented in ``docs/templates.md``.
"""

from safar.templates.catalog import TemplateCatalog, validate_directory
from safar.templates.errors import Problem, TemplateError
from safar.templates.html import html_to_text, mark_direction
from safar.templates.locales import choose_locale, direction, normalize_locale
from safar.templates.model import CHANNEL_FIELDS, Template, Variant
from safar.templates.render import RenderedParts, render, render_value
from safar.templates.sandbox import ROOTS, liquid_problems

__all__ = [
    "CHANNEL_FIELDS",
    "ROOTS",
    "Problem",
    "RenderedParts",
    "Template",
    "TemplateCatalog",
    "TemplateError",
    "Variant",
    "choose_locale",
    "direction",
    "html_to_text",
    "liquid_problems",
    "mark_direction",
    "normalize_locale",
    "render",
    "render_value",
    "validate_directory",
]
