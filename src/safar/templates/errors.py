"""What goes wrong with templates: :class:`Problem` (found by validation) and
:class:`TemplateError` (raised by loading or rendering)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from safar.errors import ValidationError


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing wrong with a template file, and where: ``file``, 1-based ``line``, ``field``.

    ``field`` is a dotted path inside the file, e.g. ``locales.fa.html``; empty when the problem
    is the file itself (unreadable, not YAML).
    """

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class TemplateError(ValidationError):
    """A template cannot be loaded or rendered.

    A render error names the template id, the locale and the field (``template_id``,
    ``locale``, ``field``); a load error carries every :class:`Problem` found in ``problems``.
    The runtime records a render error as a failed send with rule ``template``.
    """

    def __init__(
        self,
        message: str,
        *,
        template_id: str | None = None,
        locale: str | None = None,
        field: str | None = None,
        problems: Sequence[Problem] = (),
    ) -> None:
        parts = [f"template {template_id!r}" if template_id else ""]
        parts += [f"locale {locale}" if locale else "", f"field {field}" if field else ""]
        location = ", ".join(part for part in parts if part) or None
        super().__init__(message, location)
        self.template_id = template_id
        self.locale = locale
        self.field = field
        self.problems = tuple(problems)
